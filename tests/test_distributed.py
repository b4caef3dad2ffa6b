"""Scaling out (issue 9): devices, mixed precision, torchrun + DistributedDataParallel, 32-64 px colour pictures.

The torchrun tests start real process groups (gloo, two CPU processes) with tiny nets and a few steps; each launch
costs a few seconds of start-up on this machine.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from course_lib import data, devices, distributed
from course_lib.checkpoints import read_checkpoint
from course_lib.__main__ import main
from course_lib.config import TrainConfig, UNetConfig, unet_layout
from course_lib.data import ImageDataset, iterate_batches, load_digits
from course_lib.flows import flow_loss
from course_lib.training import EMA, diffusion_loss, drop_labels, train
from course_lib.unet import UNet

TINY = ["--dataset", "digits", "--conditional", "--base-channels", "8", "--T", "50", "--batch-size", "16",
        "--seed", "0"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]   # = torchrun
# Started in every process: logs which rank renames a file over a checkpoint (the last act of the atomic writer),
# through an audit hook, and with EMA_DIR set saves each rank's final EMA weights, which only rank 0 writes otherwise.
WATCHER = """import os, sys
def _log(event, args):
    if event == "os.rename" and str(args[1]).endswith(".pt"):
        with open(os.environ["RENAME_LOG"], "a") as log:
            log.write(os.environ.get("RANK", "none") + "\\n")
sys.addaudithook(_log)
if "RANK" in os.environ and "EMA_DIR" in os.environ:
    import torch
    from course_lib import training
    _train = training.train
    def _recording(*args, **kwargs):
        result = _train(*args, **kwargs)
        torch.save(result.ema.shadow, os.path.join(os.environ["EMA_DIR"], "ema-rank" + os.environ["RANK"] + ".pt"))
        return result
    training.train = _recording
"""


def run(*argv) -> int:
    try:
        return main([str(a) for a in argv])
    except SystemExit as exit_:
        return exit_.code


def torchrun(tmp_path: Path, *argv, wait: bool = True, ema_dir: Path | None = None):
    """``torchrun --standalone --nproc_per_node 2 -m course_lib train ARGV``, logging checkpoint writes by rank
    (and saving every rank's final EMA into ema_dir)."""
    (tmp_path / "hook").mkdir(exist_ok=True)
    (tmp_path / "hook" / "sitecustomize.py").write_text(WATCHER)
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(tmp_path / "hook"),
                   "RENAME_LOG": str(tmp_path / "renames.log"), **({"EMA_DIR": str(ema_dir)} if ema_dir else {})}
    command = [*TORCHRUN, "-m", "course_lib", "train", *map(str, argv)]
    if not wait:
        return subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)


def relative_difference(weights: dict, reference: dict, initial: dict) -> float:
    """|| (weights - initial) - (reference - initial) || / || reference - initial ||: how far two steps differ."""
    def flat(state):
        return torch.cat([(state[k].double() - initial[k].double()).flatten() for k in initial])
    return ((flat(weights) - flat(reference)).norm() / flat(reference).norm()).item()


# ---------------------------------------------------------------- torchrun
def test_two_processes_take_the_step_of_one_process_with_the_same_global_batch(tmp_path):
    one, two = tmp_path / "one" / "model.pt", tmp_path / "two" / "model.pt"
    assert run("train", "--steps", 1, "--out", one, *TINY) == 0
    result = torchrun(tmp_path, "--steps", 1, "--out", two, *TINY)
    assert result.returncode == 0, result.stderr
    assert [p.name for p in two.parent.iterdir()] == ["model.pt"]           # one checkpoint, no temporaries left
    assert result.stdout.count("wrote") == 1                                 # rank 0 alone reports
    alone, together = read_checkpoint(one), read_checkpoint(two)
    # The same items, t, noise and dropped labels: the first loss (before any update) agrees to rounding.
    assert together["loss_history"][0] == pytest.approx(alone["loss_history"][0], rel=1e-6)
    # The averaged gradient is the single-process one, so the step agrees to a small fraction of its size; an
    # unsynchronised or wrongly sharded run flips the sign of Adam's first step (lr per weight) in many weights.
    # (Biases followed by a GroupNorm have a zero gradient up to rounding, so their sign is noise in both runs.)
    torch.manual_seed(0)
    initial = UNet(**asdict(alone["config"].unet)).state_dict()
    assert relative_difference(together["model"], alone["model"], initial) < 0.02
    assert relative_difference(together["ema"]["shadow"], alone["ema"]["shadow"], initial) < 0.02
    # A run may resume with another number of processes: the batches and draws go on as in one process.
    assert run("train", "--steps", 3, "--out", one, "--resume", *TINY) == 0
    assert run("train", "--steps", 3, "--out", two, "--resume", *TINY) == 0
    assert np.allclose(read_checkpoint(two)["loss_history"], read_checkpoint(one)["loss_history"], rtol=1e-5)


def test_a_killed_two_process_run_resumes_rank_0_writes_and_the_loss_falls(tmp_path):
    out = tmp_path / "run" / "model.pt"
    steps = 36
    killed = torchrun(tmp_path, "--steps", 10_000, "--checkpoint-every", 3, "--out", out, *TINY, wait=False)
    try:
        deadline = time.monotonic() + 240
        while not out.exists() and time.monotonic() < deadline and killed.poll() is None:
            time.sleep(0.2)
    finally:     # what a cluster's pre-emption does: torchrun passes the signal on and ends both ranks mid-step
        killed.send_signal(signal.SIGTERM)
        killed.wait(timeout=60)
    interrupted_at = read_checkpoint(out)["step"]
    assert 3 <= interrupted_at < steps
    result = torchrun(tmp_path, "--steps", steps, "--max-seconds", 600, "--checkpoint-every", 3, "--out", out,
                      "--resume", *TINY, ema_dir=tmp_path)      # with a time budget too: ranks follow rank 0's clock
    assert result.returncode == 0, result.stderr
    assert [p.name for p in out.parent.iterdir()] == ["model.pt"]
    assert set((tmp_path / "renames.log").read_text().split()) == {"0"}     # every checkpoint came from rank 0
    resumed = read_checkpoint(out)
    every_rank = [torch.load(tmp_path / f"ema-rank{rank}.pt") for rank in (0, 1)]
    assert all(torch.equal(every_rank[0][k], every_rank[1][k]) for k in every_rank[0])     # the same EMA, bit for bit
    assert all(torch.equal(every_rank[0][k], resumed["ema"]["shadow"][k]) for k in every_rank[0])
    losses = resumed["loss_history"]
    assert resumed["step"] == steps and len(losses) == steps
    assert np.mean(losses[-6:]) < 0.6 * np.mean(losses[:6])
    # Resuming replays the batch order and restores the RNG, optimizer and EMA: the single-process run, to rounding.
    alone = tmp_path / "alone.pt"
    assert run("train", "--steps", steps, "--out", alone, *TINY) == 0
    reference = read_checkpoint(alone)
    assert np.allclose(losses, reference["loss_history"], rtol=1e-4)
    torch.manual_seed(0)
    initial = UNet(**asdict(reference["config"].unet)).state_dict()
    assert relative_difference(resumed["ema"]["shadow"], reference["ema"]["shadow"], initial) < 0.02


# ---------------------------------------------------------------- one process, unchanged
def test_a_single_process_run_is_algorithm_1_written_plainly(tmp_path):
    """train() without a process group gives bit for bit the plain loop it has always run (same seed, same bits)."""
    full = load_digits("train")
    digits = ImageDataset(full.images[:96], full.labels[:96], full.class_names)
    for objective in ("eps", "flow"):
        config = TrainConfig(unet=UNetConfig(base_channels=8, num_classes=10), steps=4, batch_size=16, T=50,
                             parameterization=objective)
        result = train(config, digits, progress=False)
        torch.manual_seed(config.seed)
        model = UNet(**asdict(config.unet))
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, foreach=True)
        ema, generator = EMA(model, config.ema_decay), torch.Generator().manual_seed(config.seed)
        schedule = config.make_schedule()
        for x0, y in iterate_batches(digits, config.batch_size, seed=config.seed, epochs=1):
            y = drop_labels(y, config.label_dropout, 10, generator)
            loss = (flow_loss(model, x0, y=y, generator=generator) if objective == "flow" else
                    diffusion_loss(model, x0, schedule, y=y, generator=generator, weighting=config.weighting))
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            ema.update(model)
            if ema.updates == config.steps:
                break
        assert all(torch.equal(value, ema.shadow[name]) for name, value in result.ema.shadow.items()), objective


def test_a_shard_of_every_rank_makes_up_the_single_process_batch(monkeypatch):
    n, batch, world = 50, 8, 2
    alone = [indices for _, indices in zip(range(12), iter_batches_of(data.EpochShuffle(n, seed=3), batch))]
    shares = []
    for rank in range(world):
        monkeypatch.setattr(distributed, "rank", lambda rank=rank: rank)
        monkeypatch.setattr(distributed, "world_size", lambda: world)
        sampler = distributed.ShardSampler(n, batch, seed=3)
        assert len(sampler) == (n - n % batch) // world
        shares.append([indices for _, indices in zip(range(12), iter_batches_of(sampler, batch // world))])
    for k, global_batch in enumerate(alone):      # across epochs too: 6 batches per epoch, 12 batches
        assert sorted(shares[0][k] + shares[1][k]) == sorted(global_batch)
        assert shares[0][k] == global_batch[0::2] and shares[1][k] == global_batch[1::2]


def iter_batches_of(sampler, batch: int):
    """The index batches a DataLoader with drop_last deals from ``sampler``, epoch after epoch."""
    while True:
        order = list(sampler)
        for start in range(0, len(order) - len(order) % batch, batch):
            yield order[start:start + batch]


# ---------------------------------------------------------------- devices and precision
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_device_cuda_without_cuda_is_one_line_and_auto_picks_the_cpu(tmp_path, capsys):
    assert run("train", "--steps", 1, "--out", tmp_path / "m.pt", "--device", "cuda", *TINY) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "--device cuda" in error and "CUDA" in error
    assert "Traceback" not in error and list(tmp_path.iterdir()) == []
    if not torch.backends.mps.is_available():
        assert devices.pick_device("auto") == torch.device("cpu") == devices.pick_device()
        assert devices.default_precision("cpu") == "fp32"
    with pytest.raises(ValueError, match="device"):
        devices.pick_device("tpu")


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_and_fp16_keeps_its_loss_scale_for_resuming(tmp_path, precision):
    full = load_digits("train")
    digits = ImageDataset(full.images[:64], full.labels[:64], full.class_names)
    config = TrainConfig(unet=UNetConfig(base_channels=8, num_classes=10), steps=2, batch_size=16, T=50)
    result = train(config, digits, checkpoint=tmp_path / "m.pt", progress=False, precision=precision)
    assert all(np.isfinite(result.loss_history))
    fp32 = train(config, digits, progress=False)
    assert result.loss_history[0] != fp32.loss_history[0]            # the forward pass did run in low precision
    assert result.loss_history[0] == pytest.approx(fp32.loss_history[0], rel=0.05)
    scaler = read_checkpoint(tmp_path / "m.pt")["scaler"]
    assert (scaler is not None and scaler["scale"] > 1) == (precision == "fp16")
    with pytest.raises(ValueError, match="precision"):
        train(config, digits, progress=False, precision="fp8")


# ---------------------------------------------------------------- bigger colour pictures
def test_a_folder_of_32px_colour_pictures_trains_with_flips_and_samples_an_rgb_grid(tmp_path, capsys):
    folder = tmp_path / "pictures"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):            # a coloured square on white, somewhere off-centre: left and right differ
        pixels = np.full((32, 32, 3), 255, np.uint8)
        top, left = rng.integers(0, 16, size=2)
        pixels[top:top + 12, left:left + 12] = rng.integers(0, 256, size=3)
        Image.fromarray(pixels).save(folder / f"{i}.png")
    out, grid = tmp_path / "model.pt", tmp_path / "grid.png"
    assert run("train", "--dataset", f"folder:{folder}", "--image-size", 32, "--flip", "--steps", 2,
               "--batch-size", 4, "--base-channels", 8, "--T", 20, "--out", out) == 0
    config = read_checkpoint(out)["config"]
    assert config.flip and config.unet.in_channels == 3
    assert (config.unet.channel_mults, config.unet.attention_levels) == ((1, 2, 2), (1, 2))    # 16x16 and 8x8
    assert run("sample", "--checkpoint", out, "--n", 4, "--steps", 2, "--out", grid) == 0
    picture = np.asarray(Image.open(grid))
    assert Image.open(grid).mode == "RGB" and picture.shape[0] > 32
    assert np.abs(picture[..., 0].astype(int) - picture[..., 1]).max() > 0        # colour, not grey


def test_layouts_for_32_and_64_px_put_attention_at_16_and_8():
    for size, mults in ((32, (1, 2, 2)), (64, (1, 2, 2, 2))):
        layout = unet_layout(size)
        assert layout["channel_mults"] == mults
        sides = [size // 2 ** level for level in range(len(mults))]
        assert [sides[level] for level in layout["attention_levels"]] == [16, 8]
        net = UNet(in_channels=3, base_channels=8, **layout)
        assert net(torch.zeros(1, 3, size, size), torch.tensor([3])).shape == (1, 3, size, size)
    assert unet_layout(8) == {"channel_mults": (1, 2), "attention_levels": ()}     # the digits: as before
