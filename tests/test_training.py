"""training: the loss targets, label dropout, EMA, the loop's determinism and exact resume, checkpoints."""
import pytest
import torch

from course_lib import training
from course_lib.checkpoints import load_checkpoint
from course_lib.config import TrainConfig, UNetConfig
from course_lib.data import ImageDataset, load_digits
from course_lib.forward import q_sample, v_from_x0_eps
from course_lib.schedules import NoiseSchedule
from course_lib.training import EMA, diffusion_loss, drop_labels, train

TINY = UNetConfig(in_channels=1, base_channels=16, channel_mults=(1,), attention=False, num_classes=10)
SCHEDULE = NoiseSchedule.linear(50)


@pytest.fixture(scope="module")
def digits():
    full = load_digits("train")
    return ImageDataset(full.images[:128], full.labels[:128], full.class_names)


def _randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


class FixedOutput:
    """A fake model returning a known tensor and recording what it was called with."""

    def __init__(self, output):
        self.output, self.calls = output, []

    def __call__(self, x_t, t, y=None):
        self.calls.append((x_t, t, y))
        return self.output


# ---------------------------------------------------------------- the loss
@pytest.mark.parametrize("parameterization", ["eps", "x0", "v"])
def test_loss_is_the_mse_against_the_right_target(parameterization):
    x0, noise, output = _randn(3, 1, 4, 4, seed=0), _randn(3, 1, 4, 4, seed=1), _randn(3, 1, 4, 4, seed=2)
    t = torch.tensor([0, 20, 49])
    model = FixedOutput(output)
    loss = diffusion_loss(model, x0, SCHEDULE, t=t, noise=noise, parameterization=parameterization)
    target = {"eps": noise, "x0": x0, "v": v_from_x0_eps(x0, t, noise, SCHEDULE)}[parameterization]
    assert torch.allclose(loss, ((output - target) ** 2).mean())
    x_t, seen_t, seen_y = model.calls[0]
    assert torch.equal(x_t, q_sample(x0, t, noise, SCHEDULE)) and torch.equal(seen_t, t) and seen_y is None


def test_loss_passes_labels_and_draws_t_and_noise_from_the_generator():
    x0 = _randn(64, 1, 2, 2, seed=0)
    model = FixedOutput(torch.zeros_like(x0))
    y = torch.arange(64) % 10
    first = diffusion_loss(model, x0, SCHEDULE, y=y, generator=torch.Generator().manual_seed(5))
    second = diffusion_loss(model, x0, SCHEDULE, y=y, generator=torch.Generator().manual_seed(5))
    assert torch.equal(first, second)
    t = model.calls[0][1]
    assert t.dtype == torch.int64 and t.min() >= 0 and t.max() <= SCHEDULE.T - 1 and len(t.unique()) > 10
    assert torch.equal(model.calls[0][2], y)


# ---------------------------------------------------------------- label dropout
@pytest.mark.parametrize("parameterization", ["eps", "x0", "v"])
def test_min_snr_weights_are_the_clipped_snr_on_the_x0_error(parameterization):
    """Hang et al. 2023: each weight turns its target's squared error into min(SNR_t, gamma) ||x0 - x0_hat||^2."""
    from course_lib.forward import x0_from_eps, x0_from_v

    schedule = NoiseSchedule.cosine(1000)
    t = torch.tensor([0, 30, 300, 700, 999])
    x0, noise = _randn(5, 1, 4, 4, seed=0).double(), _randn(5, 1, 4, 4, seed=1).double()
    x_t = q_sample(x0, t, noise, schedule)
    output = _randn(5, 1, 4, 4, seed=2).double()
    x0_hat = {"eps": lambda: x0_from_eps(x_t, t, output, schedule), "x0": lambda: output,
              "v": lambda: x0_from_v(x_t, t, output, schedule)}[parameterization]()
    target = training.loss_target(x0, noise, t, schedule, parameterization)
    weighted = training.loss_weights(t, schedule, parameterization, "min_snr").double() \
        * ((output - target) ** 2).flatten(1).sum(1)
    clipped_snr = schedule.snr[t].clamp(max=training.MIN_SNR_GAMMA)
    assert torch.allclose(weighted, clipped_snr * ((x0 - x0_hat) ** 2).flatten(1).sum(1), rtol=1e-4)
    assert torch.equal(training.loss_weights(t, schedule, parameterization, "uniform"), torch.ones(5))


def test_weighted_loss_is_the_weighted_mean_of_per_example_errors():
    schedule = NoiseSchedule.cosine(1000)
    x0, noise, t = _randn(3, 1, 4, 4, seed=0), _randn(3, 1, 4, 4, seed=1), torch.tensor([1, 500, 999])
    model = FixedOutput(_randn(3, 1, 4, 4, seed=2))
    per_example = ((model.output - noise) ** 2).flatten(1).mean(1)
    expected = (training.loss_weights(t, schedule, "eps", "min_snr") * per_example).mean()
    assert torch.allclose(diffusion_loss(model, x0, schedule, t=t, noise=noise, weighting="min_snr"), expected)
    assert torch.allclose(diffusion_loss(model, x0, schedule, t=t, noise=noise), per_example.mean())


def test_drop_labels_replaces_a_fraction_p_by_the_null_class():
    y = torch.arange(20000) % 10
    dropped = drop_labels(y, 0.2, 10, torch.Generator().manual_seed(0))
    is_null = dropped == 10
    assert abs(is_null.float().mean().item() - 0.2) < 0.01
    assert torch.equal(dropped[~is_null], y[~is_null])
    assert torch.equal(y, torch.arange(20000) % 10)                      # input untouched
    assert torch.equal(drop_labels(y, 0.0, 10), y) and torch.all(drop_labels(y, 1.0, 10) == 10)


# ---------------------------------------------------------------- EMA
def test_ema_follows_its_formula():
    model = torch.nn.Linear(2, 1)
    ema = EMA(model, beta=0.9, warmup=False)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)
    assert torch.allclose(ema.shadow["weight"], 0.9 * start + 0.1)       # beta on the old average
    ema.update(model)
    assert torch.allclose(ema.shadow["weight"], 0.81 * start + 0.19)
    fresh = torch.nn.Linear(2, 1)
    ema.copy_to(fresh)
    assert torch.equal(fresh.weight, ema.shadow["weight"])


def test_ema_warmup_starts_with_a_small_decay_and_state_round_trips():
    model = torch.nn.Linear(2, 1)
    ema = EMA(model, beta=0.999)
    assert ema.decay() == pytest.approx(0.1)                             # (1 + 0) / (10 + 0)
    for _ in range(3):
        ema.update(model)
    assert ema.decay() == pytest.approx(4 / 13)
    copy = EMA(torch.nn.Linear(2, 1))
    copy.load_state_dict(ema.state_dict())
    assert copy.updates == 3 and torch.equal(copy.shadow["bias"], ema.shadow["bias"])


# ---------------------------------------------------------------- the loop
RUN_OPTIONS = ("checkpoint", "resume", "export", "dataset_name", "command", "progress", "device", "num_workers")


def _train(digits, **kwargs):
    settings = {**dict(unet=TINY, batch_size=32, lr=3e-3, seed=0, schedule="linear", T=50), **kwargs}
    run = {name: settings.pop(name) for name in RUN_OPTIONS if name in settings}
    return train(TrainConfig(**settings), digits, **{"progress": False, **run})


def test_loss_decreases_on_a_tiny_problem(digits):
    history = _train(digits, steps=150).loss_history
    assert len(history) == 150
    assert sum(history[-30:]) / 30 < 0.6 * sum(history[:10]) / 10


def test_same_seed_gives_bit_identical_weights(digits):
    first, second, other = _train(digits, steps=5), _train(digits, steps=5), _train(digits, steps=5, seed=1)
    for a, b in zip(first.model.parameters(), second.model.parameters()):
        assert torch.equal(a, b)
    assert first.loss_history == second.loss_history
    assert not torch.equal(first.model.conv_in.weight, other.model.conv_in.weight)


def test_resume_equals_one_uninterrupted_run(digits, tmp_path):
    at_once = _train(digits, steps=12)
    path = tmp_path / "run.pt"
    _train(digits, steps=5, checkpoint=path)                  # stops at 5 (a longer run killed there looks alike)
    resumed = _train(digits, steps=12, checkpoint=path, resume=True)
    assert resumed.step == 12 and resumed.loss_history == at_once.loss_history
    for a, b in zip(at_once.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    for name in at_once.ema.shadow:
        assert torch.equal(at_once.ema.shadow[name], resumed.ema.shadow[name])


def test_resume_refuses_other_settings(digits, tmp_path):
    path = tmp_path / "run.pt"
    _train(digits, steps=2, checkpoint=path)
    with pytest.raises(ValueError, match="parameterization"):
        _train(digits, steps=4, checkpoint=path, resume=True, parameterization="v")


def test_cosine_learning_rate_falls_from_lr_to_zero_at_the_last_step():
    config = TrainConfig(steps=100, lr=2e-3, lr_schedule="cosine")
    rates = [training.learning_rate(config, n) for n in range(101)]
    assert rates[0] == pytest.approx(2e-3) and rates[50] == pytest.approx(1e-3) and rates[100] == pytest.approx(0.0)
    assert all(a > b for a, b in zip(rates, rates[1:]))
    assert training.learning_rate(TrainConfig(steps=100, lr=2e-3), 99) == 2e-3


def test_cosine_runs_step_with_the_scheduled_rate_and_resume_exactly(digits, tmp_path, monkeypatch):
    at_once = _train(digits, steps=12, lr_schedule="cosine")
    path = tmp_path / "run.pt"
    clock = iter(range(10**6))          # a clock that ticks one second per reading: the budget ends mid-run
    with monkeypatch.context() as patch:
        patch.setattr(training.time, "perf_counter", lambda: float(next(clock)))
        stopped = _train(digits, steps=12, max_seconds=8.0, checkpoint=path, lr_schedule="cosine")
    assert 0 < stopped.step < 12
    resumed = _train(digits, steps=12, checkpoint=path, resume=True, lr_schedule="cosine")
    assert resumed.loss_history == at_once.loss_history
    constant = _train(digits, steps=12)
    assert constant.loss_history[:2] == at_once.loss_history[:2] and constant.loss_history != at_once.loss_history
    with pytest.raises(ValueError, match="steps"):      # a new length would be a new schedule
        _train(digits, steps=20, checkpoint=path, resume=True, lr_schedule="cosine")


@pytest.mark.parametrize("settings, error, message", [
    (dict(parameterization="score"), ValueError, "unknown parameterization 'score'"),
    (dict(schedule="sigmoid"), ValueError, "unknown schedule 'sigmoid'"),
    (dict(label_dropout=1.5), ValueError, r"label_dropout must be a finite number in \[0.0, 1.0\], got 1.5"),
    (dict(lr=0.0), ValueError, "lr must be > 0"),
    (dict(ema_decay=1.0), ValueError, r"ema_decay must lie in \[0, 1\)"),
    (dict(batch_size=2.5), TypeError, "batch_size must be an int"),
    (dict(steps=0), ValueError, "steps must be >= 1"),
    (dict(max_seconds=-1.0), ValueError, "max_seconds must be > 0"),
    (dict(lr_schedule="linear"), ValueError, "unknown lr_schedule 'linear'"),
    (dict(steps=None, max_seconds=60.0, lr_schedule="cosine"), ValueError, "decays the learning rate to 0 .*: give steps"),
    (dict(seed=-1), ValueError, r"seed must lie in 0\.\.2\*\*64-1"),
    (dict(seed=2**64), ValueError, r"seed must lie in 0\.\.2\*\*64-1"),
    (dict(unet={"base_channels": 7}), ValueError, "base_channels must be even"),
    (dict(unet="tiny"), TypeError, "unet must be a UNetConfig"),
])
def test_train_config_checks_itself(settings, error, message):
    """The config is the edge: train and the formula functions it calls trust what it holds."""
    with pytest.raises(error, match=message):
        TrainConfig(**{"steps": 1, **settings})


def test_train_config_round_trips_through_a_dict():
    config = TrainConfig(unet=TINY, steps=7, lr=2e-3, schedule="linear", T=50)
    stored = config.to_dict()
    assert stored["unet"]["channel_mults"] == (1,) and TrainConfig.from_dict(stored) == config
    assert TrainConfig.from_dict({**stored, "unet": {**stored["unet"], "channel_mults": [1]}}) == config
    with pytest.raises(ValueError, match=r"unknown TrainConfig fields \['learning_rate'\]"):
        TrainConfig.from_dict({**stored, "learning_rate": 1.0})
    with pytest.raises(TypeError, match="config must be a TrainConfig"):
        train(stored, ImageDataset(torch.zeros(2, 1, 8, 8), None, ()))


def test_budget_and_labels_are_checked(digits):
    with pytest.raises(ValueError, match="budget"):
        _train(digits)
    unlabelled = ImageDataset(digits.images, None, ())
    with pytest.raises(ValueError, match="labelled"):
        _train(unlabelled, steps=1)
    assert _train(unlabelled, steps=2, unet=UNetConfig(base_channels=8, channel_mults=(1,))).step == 2
    assert _train(digits, max_seconds=0.5).step >= 1


class RecordingBar:
    """Stands in for tqdm.auto.tqdm and records what the bar showed when it was closed."""
    closed = []

    def __init__(self, iterable=None, total=None, initial=0, desc="", **kwargs):     # tqdm's order
        self.total, self.n, self.desc = total, initial, desc

    def update(self, n=1):
        self.n += n

    def set_postfix(self, *args, **kwargs):
        pass

    def set_description_str(self, desc):
        self.desc = desc

    def close(self):
        RecordingBar.closed.append({"n": self.n, "total": self.total, "desc": self.desc})


@pytest.mark.parametrize("steps", [None, 10 ** 6])
def test_a_run_stopped_by_its_time_budget_closes_its_bar_complete(digits, monkeypatch, steps):
    import tqdm.auto

    monkeypatch.setattr(tqdm.auto, "tqdm", RecordingBar)
    RecordingBar.closed.clear()
    result = _train(digits, steps=steps, max_seconds=0.3, progress=True)
    bar = RecordingBar.closed[-1]
    assert bar["n"] == bar["total"] == result.step, "a full bar: the run did what was asked"
    assert bar["desc"] == "training stopped after 0.3 s as asked"
    _train(digits, steps=3, max_seconds=60, progress=True)
    assert RecordingBar.closed[-1] == {"n": 3, "total": 3, "desc": "training"}, "a step budget keeps its wording"


# ---------------------------------------------------------------- checkpoints
def test_checkpoint_holds_everything_to_sample(digits, tmp_path):
    path, small = tmp_path / "run.pt", tmp_path / "small.pt"
    result = _train(digits, steps=3, checkpoint=path, export=small, dataset_name="digits")
    model, schedule, info = load_checkpoint(path)
    assert torch.equal(schedule.betas, SCHEDULE.betas)
    assert info["config"] == TrainConfig(unet=TINY, steps=3, batch_size=32, lr=3e-3, schedule="linear", T=50)
    assert info["step"] == 3
    assert info["dataset"] == {"name": "digits", "image_shape": [1, 8, 8], "class_names": list("0123456789")}
    assert info["loss_history"] == result.loss_history
    for name, value in model.state_dict().items():                      # the EMA weights, not the raw ones
        assert torch.equal(value, result.ema.shadow[name])
    assert not model.training
    exported, _, _ = load_checkpoint(small)
    assert small.stat().st_size < path.stat().st_size
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), exported.state_dict().values()))
    with pytest.raises(ValueError, match="cannot be resumed"):
        _train(digits, steps=5, checkpoint=small, resume=True)


def test_a_failed_save_leaves_the_old_checkpoint_intact(digits, tmp_path, monkeypatch):
    path = tmp_path / "run.pt"
    _train(digits, steps=2, checkpoint=path)
    before = path.read_bytes()

    def broken_save(obj, file, *args, **kwargs):
        with open(file, "wb") as handle:
            handle.write(b"half a checkp")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        _train(digits, steps=4, checkpoint=path, resume=True)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]            # no temporary file left behind


def test_missing_or_corrupt_checkpoint_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="corrupt.pt"):
        load_checkpoint(corrupt)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(1)}, foreign)
    with pytest.raises(ValueError, match="foreign.pt.*not a diffusion-course checkpoint"):
        load_checkpoint(foreign)


def test_the_shipped_v1_asset_loads_with_its_config_converted():
    """The asset was written before configs existed; reading it builds the TrainConfig of its command."""
    model, schedule, info = load_checkpoint()
    config = info["config"]
    assert config.unet == UNetConfig(in_channels=1, base_channels=32, channel_mults=(1, 2), num_classes=10)
    assert (config.steps, config.lr, config.seed, config.schedule, config.T) == (4000, 2e-3, 0, "cosine", 1000)
    assert config.label_dropout == 0.15 and config.parameterization == "eps" and info["step"] == 4000
    assert "--steps 4000 --lr 2e-3 --seed 0" in info["command"]
    assert model.num_classes == 10 and schedule.T == 1000
