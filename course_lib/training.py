"""Training a diffusion model: the L_simple loss, label dropout, EMA, the training loop.

    sample_timesteps   t ~ Uniform{0, ..., T-1}, one per batch item
    loss_target        what the network learns to output: eps, x0 or v
    loss_weights       per-timestep weights: 1 (L_simple) or min-SNR-gamma (Hang et al. 2023)
    diffusion_loss     E_{x0, eps, t} w_t || target - model(x_t, t) ||^2   (Ho et al. 2020, eq. 14, when w_t = 1)
    drop_labels        classifier-free guidance training: a label becomes the null class with probability p
    EMA                theta_ema <- beta theta_ema + (1 - beta) theta
    learning_rate      the learning rate of step n: constant, or cosine-decayed to 0 at the last step
    train              seeded AdamW loop with clipping, EMA, time or step budget, checkpoints, exact resume
    smooth             a running mean, for plotting a noisy loss history

The checkpoint files ``train`` writes and resumes from are checkpoints.py's; ``training.load_checkpoint``
stays reachable here, the name the notebooks use.

The shipped checkpoint ``assets/digits_conditional.pt`` was made by the course's own command, with the
defaults of its day (base width 32, uniform weighting) spelled out::

    python -m course_lib train --dataset digits --conditional --steps 4000 --lr 2e-3 --seed 0 \
        --base-channels 32 --weighting uniform \
        --out runs/digits_conditional.pt --export course_lib/assets/digits_conditional.pt

Today's defaults (``config.TrainConfig``: width 16, min-SNR weighting, lr 2e-3; the command line adds one
thread) come from benchmarks/train_to_quality.py: recognisable digits in about a minute on a laptop CPU.

Shapes: x0 and noise are (B, C, H, W) in [-1, 1]; t is int64 (B,), 0-based; y is int64 (B,) with the
null class ``num_classes`` meaning "no label".
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from . import devices, distributed
from ._validate import require_choice
from .checkpoints import CHECKPOINT_FORMAT, read_checkpoint, save_checkpoint
from .checkpoints import load_checkpoint  # noqa: F401  notebooks call training.load_checkpoint: keep that name
from .config import MIN_SNR_GAMMA, TrainConfig
from .data import ImageDataset, iterate_batches
from .distributed import share
from .flows import flow_loss
from .forward import q_sample, v_from_x0_eps
from .progress import progress_bar
from .schedules import NoiseSchedule
from .unet import UNet


# ---------------------------------------------------------------- the loss
def sample_timesteps(batch: int, T: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """t ~ Uniform{0, ..., T-1} (0-based: index t is the paper's step t+1), int64 of shape (batch,)."""
    return torch.randint(0, T, (batch,), generator=generator)


def loss_target(x0: torch.Tensor, noise: torch.Tensor, t, schedule: NoiseSchedule, parameterization: str = "eps"):
    """The regression target for x_t = q_sample(x0, t, noise): noise ("eps"), x0 ("x0") or
    v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0 ("v", Salimans & Ho 2022). Shapes (B, ...)."""
    if parameterization == "eps":
        return noise
    if parameterization == "x0":
        return x0
    return v_from_x0_eps(x0, t, noise, schedule)


def loss_weights(t, schedule: NoiseSchedule, parameterization: str = "eps", weighting: str = "uniform",
                 gamma: float = MIN_SNR_GAMMA) -> torch.Tensor:
    """The weight of each example's squared error, float32 (B,) for t (B,).

    "uniform": 1 (L_simple). "min_snr" (Hang et al. 2023, eq. 8 and Table 1): the x0-error weighted by
    min(SNR_t, gamma), expressed for the target the network predicts,

        predicting eps -> min(SNR_t, gamma) / SNR_t,   x0 -> min(SNR_t, gamma),   v -> min(SNR_t, gamma) / (SNR_t + 1)

    with SNR_t = abar_t / (1 - abar_t). Low-noise steps (huge SNR), whose tiny details pull the
    gradient away from the shape-forming steps, stop dominating; the rest keeps weight 1 for eps.
    """
    if weighting == "uniform":
        return torch.ones(t.shape)
    snr = schedule.snr[t]
    clipped = snr.clamp(max=gamma)
    weights = {"eps": clipped / snr, "x0": clipped, "v": clipped / (snr + 1)}[parameterization]
    return weights.float()


def diffusion_loss(model, x0: torch.Tensor, schedule: NoiseSchedule, t=None, noise=None, y=None,
                   parameterization: str = "eps", generator: torch.Generator | None = None,
                   weighting: str = "uniform") -> torch.Tensor:
    """L_simple (Ho et al. 2020, eq. 14): mean over every element of (target - model(x_t, t, y))^2,
    x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise, target = noise for "eps" (see ``loss_target``);
    with weighting="min_snr" each example's mean squared error is multiplied by ``loss_weights``.

    x0: (B, C, H, W); t: int64 (B,), drawn uniformly from 0..T-1 when None; noise: like x0, drawn from
    N(0, I) when None. Random draws use ``generator`` on the CPU (then move to x0's device), so a seed gives
    the same loss on every device. y: labels (B,) for a class-conditional model, passed as
    model(x_t, t, y=y); None calls model(x_t, t). Returns a scalar.
    """
    t = sample_timesteps(x0.shape[0], schedule.T, generator) if t is None else t
    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype) if noise is None else noise
    t, noise = t.to(x0.device), noise.to(x0.device)
    x_t = q_sample(x0, t, noise, schedule)
    output = model(x_t, t) if y is None else model(x_t, t, y=y)
    target = loss_target(x0, noise, t, schedule, parameterization)
    if weighting == "uniform":
        return F.mse_loss(output, target)
    per_example = ((output - target) ** 2).flatten(1).mean(dim=1)
    return (loss_weights(t.cpu(), schedule, parameterization, weighting).to(x0.device) * per_example).mean()


# ---------------------------------------------------------------- classifier-free guidance training
def drop_labels(y: torch.Tensor, p: float, null_class: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace each label (B,) by ``null_class`` independently with probability p (Ho & Salimans 2022).

    One network then learns both eps(x_t, t, y) and the unconditional eps(x_t, t, null), the two
    predictions classifier-free guidance mixes. Returns a new tensor; y is left untouched.
    """
    drop = torch.rand(y.shape, generator=generator).to(y.device) < p
    return torch.where(drop, torch.full_like(y, null_class), y)


# ---------------------------------------------------------------- EMA
class EMA:
    """An exponential moving average of a model's parameters: theta_ema <- beta theta_ema + (1 - beta) theta.

    Sampling with the averaged weights smooths out the last optimizer steps' noise. With ``warmup`` the
    decay starts small, beta_n = min(beta, (1 + n) / (10 + n)) after n updates, so that the average does
    not remember the random initialisation for thousands of steps. Buffers are copied, not averaged.
    """

    def __init__(self, model: nn.Module, beta: float = 0.999, warmup: bool = True):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"beta must lie in [0, 1), got {beta}")
        self.beta, self.warmup, self.updates = beta, warmup, 0
        self.shadow = {name: value.detach().clone() for name, value in model.state_dict().items()}

    def decay(self) -> float:
        """The beta of the next update."""
        return min(self.beta, (1 + self.updates) / (10 + self.updates)) if self.warmup else self.beta

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        beta = self.decay()
        state = model.state_dict()
        floats = [name for name, value in state.items() if value.is_floating_point()]
        averages = [self.shadow[name] for name in floats]
        # One multi-tensor call per operation instead of one call per tensor: a small net has ~100 tensors.
        torch._foreach_mul_(averages, beta)
        torch._foreach_add_(averages, [state[name] for name in floats], alpha=1 - beta)
        for name, value in state.items():
            if not value.is_floating_point():
                self.shadow[name].copy_(value)
        self.updates += 1

    def copy_to(self, model: nn.Module) -> nn.Module:
        """Load the averaged weights into ``model`` (for sampling); returns it."""
        model.load_state_dict(self.shadow)
        return model

    def state_dict(self) -> dict:
        return {"beta": self.beta, "warmup": self.warmup, "updates": self.updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        self.beta, self.warmup, self.updates = state["beta"], state["warmup"], state["updates"]
        self.shadow = {name: value.clone() for name, value in state["shadow"].items()}


# ---------------------------------------------------------------- the training loop
@dataclass
class TrainResult:
    """model: the raw weights after the last step; ema: their average (use ``ema.copy_to`` to sample)."""
    model: UNet
    ema: EMA
    step: int
    loss_history: list = field(default_factory=list)
    seconds: float = 0.0


def learning_rate(config: TrainConfig, step: int) -> float:
    """The learning rate of the optimizer step after ``step`` steps (0-based): config.lr, or with
    lr_schedule "cosine" lr * (1 + cos(pi step / steps)) / 2 (Loshchilov & Hutter 2017, eq. 5 with one cycle
    and eta_min = 0), which ends the run with small steps that settle the weights."""
    if config.lr_schedule == "constant":
        return config.lr
    return config.lr * (1 + math.cos(math.pi * step / config.steps)) / 2


# Fields that may change when a run is resumed: the budget and how often it is saved (steps stay fixed under a
# cosine learning rate, whose curve they set).
RESUMABLE_CHANGES = ("steps", "max_seconds", "checkpoint_every")


def train(config: TrainConfig, dataset: ImageDataset, checkpoint=None, resume: bool = False, export=None,
          dataset_name: str = "custom", command: str | None = None, progress: bool = True, device="cpu",
          num_workers: int = 0, latent: dict | None = None, precision: str = "fp32") -> TrainResult:
    """Train ``UNet(config.unet)`` on ``dataset`` with L_simple until config.steps (total) or config.max_seconds
    (this run).

    Each step (Ho et al. 2020, Alg. 1): a mini-batch x0, labels dropped to the null class with probability
    label_dropout (class-conditional nets only), t ~ U{0..T-1}, noise ~ N(0, I), one AdamW step (at
    ``learning_rate(config, step)``) on diffusion_loss (weighted by ``weighting``: "min_snr" or "uniform", see
    ``loss_weights``) with the gradient norm clipped at grad_clip, then an EMA update.

    Seeded: the initial weights, the batch order, t, noise and dropped labels all come from config.seed, so
    the same call gives bit-identical weights. ``checkpoint`` (a path) is written every checkpoint_every
    steps and at the end, holding the config whole; with resume=True training continues from it (same
    config up to the budget), and k steps + resume to N gives the same weights as N steps at once: the
    checkpoint holds the optimizer, EMA and RNG states, and the batch order is replayed from the seed.
    ``export`` (a path) also gets, at the end, a copy holding only the EMA weights: a small file to ship or
    to sample from, which cannot be resumed. dataset_name and command are recorded in the checkpoint.
    dataset: any of ``data``'s datasets (in memory, or an ``ImageFolder`` read by ``num_workers`` processes).
    latent: for latent diffusion (the dataset holds scaled autoencoder latents), the autoencoder's payload
    (``autoencoder.payload_of``), stored in every checkpoint so that sampling can decode.
    device: where the arithmetic runs (``devices.pick_device``); precision: "fp32", or "bf16" / "fp16" for the
    forward pass under autocast (fp16 with a GradScaler). Random numbers are drawn on the CPU either way.
    In a torchrun process group (``distributed.process_group``) every process trains its share of each global
    batch of config.batch_size under DistributedDataParallel; rank 0 alone shows progress and writes files.
    Returns a TrainResult; its loss_history covers every step since step 0 (each the global batch's loss).
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if resume and checkpoint is None:
        raise ValueError("resume=True needs the checkpoint path to resume from")
    conditional = config.unet.num_classes is not None
    if dataset.image_shape[0] != config.unet.in_channels:
        raise ValueError(f"the dataset's pictures have {dataset.image_shape[0]} channels, but config.unet takes "
                         f"in_channels={config.unet.in_channels}")
    if conditional and dataset.labels is None:
        raise ValueError("a class-conditional UNet (num_classes set) needs a labelled dataset; this one has no labels")
    require_choice(precision, "precision", devices.PRECISIONS)
    world, device = distributed.world_size(), torch.device(device)
    if config.batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} must divide evenly among the {world} processes")
    schedule = config.make_schedule()
    torch.manual_seed(config.seed)       # the weight initialisation and any dropout inside the net
    model = UNet(**asdict(config.unet)).to(device)
    network = distributed.wrap(model, device)       # what the loss calls: DDP under torchrun, else the model
    scaler = devices.grad_scaler(device, precision)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, foreach=True)
    ema = EMA(model, config.ema_decay)
    generator = torch.Generator().manual_seed(config.seed)      # t, noise and label dropout
    step, history, seconds = 0, [], 0.0
    if resume:
        state = read_checkpoint(checkpoint, device)
        if state.get("optimizer") is None:
            raise ValueError(f"{checkpoint}: holds EMA weights only (an export) and cannot be resumed")
        for key, value in config.to_dict().items():
            stored = getattr(state["config"], key)
            fixed = key not in RESUMABLE_CHANGES or (key == "steps" and config.lr_schedule == "cosine")
            if fixed and stored != getattr(config, key):
                raise ValueError(f"{checkpoint}: was trained with {key}={stored!r}, cannot resume with "
                                 f"{getattr(config, key)!r}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        ema.load_state_dict(state["ema"])
        if state.get("scaler") and scaler.is_enabled():
            scaler.load_state_dict(state["scaler"])
        generator.set_state(state["rng"]["generator"])
        torch.set_rng_state(state["rng"]["torch"])
        step, history, seconds = state["step"], list(state["loss_history"]), state["seconds"]

    batches = iterate_batches(dataset, config.batch_size // world, seed=config.seed, start=step,
                              num_workers=num_workers, pin_memory=device.type == "cuda",
                              sampler=distributed.ShardSampler(len(dataset), config.batch_size, config.seed))

    def save(path, ema_only: bool = False) -> None:
        save_checkpoint(path, {
            "format": CHECKPOINT_FORMAT, "config": config.to_dict(),
            "model": None if ema_only else model.state_dict(), "ema": ema.state_dict(),
            "optimizer": None if ema_only else optimizer.state_dict(),
            "scaler": None if ema_only or not scaler.is_enabled() else scaler.state_dict(),
            "rng": None if ema_only else {"generator": generator.get_state(), "torch": torch.get_rng_state()},
            "step": step, "seconds": seconds, "loss_history": history, "command": command, "latent": latent,
            "dataset": {"name": dataset_name, "image_shape": list(dataset.image_shape),
                        "class_names": list(dataset.class_names)}})

    start, run_start_seconds = time.perf_counter(), seconds
    main = distributed.is_main()
    bar = progress_bar(total=config.steps, initial=step, desc="training", unit="step", disable=not (progress and main))
    model.train()
    batch, flow = config.batch_size, config.parameterization == "flow"
    while ((config.steps is None or step < config.steps) and (config.max_seconds is None or distributed.value_of_rank0(
            time.perf_counter() - start) < config.max_seconds)):
        x0, y = next(batches)       # this process's rows of the global batch (all of them in a single process)
        # Random numbers are drawn for the whole global batch and each process keeps its rows (``share``), so an
        # item gets the same flip, dropped label, t and noise whatever the number of processes.
        if config.flip:
            flipped = share(torch.rand(batch, generator=generator) < 0.5)
            x0 = torch.where(flipped[:, None, None, None], x0.flip(-1), x0)
        x0 = x0.to(device, non_blocking=True)
        if conditional:     # drop_labels, with the coins of the global batch
            dropped = share(torch.rand(batch, generator=generator) < config.label_dropout)
            y = torch.where(dropped, torch.full_like(y, model.num_classes), y).to(device)
        else:
            y = None
        times = share(torch.rand(batch, generator=generator, dtype=torch.float64) if flow      # tau in [0, 1)
                      else sample_timesteps(batch, schedule.T, generator))                       # t in 0..T-1
        noise = share(torch.randn((batch, *x0.shape[1:]), generator=generator, dtype=x0.dtype))
        with devices.autocast(device, precision):
            loss = (flow_loss(network, x0, times, noise, y=y) if flow else
                    diffusion_loss(network, x0, schedule, times, noise, y=y, weighting=config.weighting,
                                   parameterization=config.parameterization))
        optimizer.zero_grad(set_to_none=True)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)          # clip the true gradient, not the fp16 loss scale's multiple of it
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        ema.update(model)
        step += 1
        history.append(distributed.mean_over_ranks(loss.item()))
        seconds = run_start_seconds + time.perf_counter() - start
        bar.update()
        bar.set_postfix(loss=f"{history[-1]:.4f}", refresh=False)
        if checkpoint is not None and main and step % config.checkpoint_every == 0:
            save(checkpoint)
    if config.steps is None or step < config.steps:   # the time budget ended the run: a success, not a half-full bar
        bar.total = bar.n
        bar.set_description_str(f"training stopped after {config.max_seconds:g} s as asked")
    bar.close()
    if checkpoint is not None and main:
        save(checkpoint)
    if export is not None and main:
        save(export, ema_only=True)
    return TrainResult(model, ema, step, history, seconds)


def smooth(values, window: int = 50) -> list:
    """Running mean over the last ``window`` values, for plotting a noisy loss history."""
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out
