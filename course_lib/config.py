"""The two configurations of a training run, as dataclasses: the network's shape and how it is trained.

    UNetConfig    exactly ``unet.UNet``'s parameters; ``UNet(**asdict(config))`` builds the net
    TrainConfig   everything that decides the weights of a run (the U-Net, schedule, objective, optimiser,
                  budget, seed); a checkpoint stores it whole, and the command line builds it from its options

Both check themselves when they are made (``__post_init__``), so every way in — Python, the command line,
a checkpoint — gets the same checks and the same messages. Run options that do not change the weights
(paths, progress bars, the device) are arguments of ``training.train`` instead.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from functools import partial

from . import _validate as check
from .forward import PARAMETERIZATIONS

OBJECTIVES = PARAMETERIZATIONS + ("flow",)     # "flow": flow matching (flows.py); the schedule is then unused
from .schedules import SCHEDULE_NAMES, NoiseSchedule

LR_SCHEDULES = ("constant", "cosine")  # the learning rate over the run: fixed, or cosine-decayed to 0 at ``steps``
WEIGHTINGS = ("uniform", "min_snr")    # the loss's weight per timestep: L_simple, or min-SNR-gamma
MIN_SNR_GAMMA = 5.0                    # Hang et al. 2023's recommended clip of the signal-to-noise ratio


@dataclass(frozen=True)
class UNetConfig:
    """The U-Net's architecture (see ``unet.UNet`` for what each field does)."""
    in_channels: int = 1
    out_channels: int | None = None
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2)
    num_res_blocks: int = 1
    attention: bool = True
    num_classes: int | None = None
    time_embed_dim: int | None = None
    dropout: float = 0.0
    skip_connections: bool = True
    time_conditioning: bool = True
    attention_levels: tuple[int, ...] = ()
    patch_size: int = 1

    def __post_init__(self):
        check.require_int(self.in_channels, "in_channels", minimum=1)
        if self.out_channels is not None:
            check.require_int(self.out_channels, "out_channels", minimum=1)
        check.require_int(self.base_channels, "base_channels", minimum=2)
        if self.base_channels % 2:
            raise ValueError(f"base_channels must be even (it sets the sinusoid's width), got {self.base_channels}")
        mults = self.channel_mults
        if (isinstance(mults, (str, bytes)) or not hasattr(mults, "__len__") or not mults
                or not all(isinstance(m, int) and not isinstance(m, bool) and m >= 1 for m in mults)):
            raise ValueError(f"channel_mults must be a non-empty sequence of positive ints, got {mults!r}")
        object.__setattr__(self, "channel_mults", tuple(mults))      # lists (from a CLI or JSON) become tuples
        check.require_int(self.num_res_blocks, "num_res_blocks", minimum=1)
        if self.num_classes is not None:
            check.require_int(self.num_classes, "num_classes", minimum=1)
        if self.time_embed_dim is not None:
            check.require_int(self.time_embed_dim, "time_embed_dim", minimum=1)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")
        levels = self.attention_levels
        if (isinstance(levels, (str, bytes)) or not hasattr(levels, "__len__")
                or not all(isinstance(l, int) and not isinstance(l, bool) and 0 <= l < len(mults) for l in levels)):
            raise ValueError(f"attention_levels must be a sequence of level numbers in 0..{len(mults) - 1}, "
                             f"got {levels!r}")
        object.__setattr__(self, "attention_levels", tuple(levels))
        check.require_int(self.patch_size, "patch_size", minimum=1)


def unet_layout(image_size: int) -> dict:
    """The U-Net's channel_mults and attention_levels for square pictures of ``image_size`` pixels.

    Below 32 px (the digits' 8, MNIST's 28, autoencoder latents): two levels, attention in the bottleneck only.
    From 32 px: halve down to 8x8 or less (32: 32, 16, 8; 64: 64, 32, 16, 8), widths 1, 2, 2, ... times the base,
    and self-attention at every level of 16x16 or less (Ho et al. 2020, App. B: at 16x16; Nichol & Dhariwal 2021:
    at 16 and 8), where its (H W)^2 cost stays small.
    """
    if image_size < 32:
        return {"channel_mults": (1, 2), "attention_levels": ()}
    sides = [image_size]
    while sides[-1] > 8:
        sides.append(-(-sides[-1] // 2))
    return {"channel_mults": (1,) + (2,) * (len(sides) - 1),
            "attention_levels": tuple(level for level, side in enumerate(sides) if side <= 16)}


@dataclass(frozen=True)
class TrainConfig:
    """How a diffusion U-Net is trained (Ho et al. 2020, Alg. 1, with AdamW, clipping, EMA, label dropout).

    unet: the network. steps: total optimizer steps; max_seconds: time budget of one run (at least one of the
    two). batch_size, lr, lr_schedule ("constant", or "cosine": lr * (1 + cos(pi n / steps)) / 2 at step n,
    Loshchilov & Hutter 2017; needs steps), weight_decay (AdamW), grad_clip (gradient-norm clipping), ema_decay
    (EMA beta), label_dropout (probability that a label becomes the null class, class-conditional nets only),
    flip (mirror each training picture left-right with probability 1/2: more data for free when mirror images
    are as likely), parameterization ("eps", "x0" or "v": what the net outputs; "flow": flow matching's
    velocity eps - x0 with time tau * 1000, see flows.py), weighting ("min_snr" or "uniform": the loss's
    weight per timestep, ``training.loss_weights``; diffusion objectives only), schedule ("linear" or
    "cosine") and T, seed (weights, batches, t, noise and dropped labels), checkpoint_every (steps between checkpoints).

    The defaults are measured (benchmarks/train_to_quality.py): a U-Net of width 16, lr 2e-3 and min-SNR
    weighting reach recognisable digits in about a minute of CPU training, sooner than width 32 with
    lr 1e-3 and uniform weighting (the shipped asset's settings).
    """
    unet: UNetConfig = field(default_factory=partial(UNetConfig, base_channels=16))
    steps: int | None = None
    max_seconds: float | None = None
    batch_size: int = 64
    lr: float = 2e-3
    lr_schedule: str = "constant"
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    label_dropout: float = 0.15
    flip: bool = False
    parameterization: str = "eps"
    weighting: str = "min_snr"
    schedule: str = "cosine"
    T: int = 1000
    seed: int = 0
    checkpoint_every: int = 1000

    def __post_init__(self):
        if isinstance(self.unet, dict):
            object.__setattr__(self, "unet", UNetConfig(**self.unet))
        if not isinstance(self.unet, UNetConfig):
            raise TypeError(f"unet must be a UNetConfig, got {type(self.unet).__name__}")
        if self.steps is None and self.max_seconds is None:
            raise ValueError("give a budget: steps (a number of optimizer steps) and/or max_seconds")
        if self.steps is not None:
            check.require_int(self.steps, "steps", minimum=1)
        if self.max_seconds is not None and check.require_number(self.max_seconds, "max_seconds") <= 0:
            raise ValueError(f"max_seconds must be > 0, got {self.max_seconds}")
        check.require_int(self.batch_size, "batch_size", minimum=1)
        if check.require_number(self.lr, "lr") <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        check.require_choice(self.lr_schedule, "lr_schedule", LR_SCHEDULES)
        if self.lr_schedule == "cosine" and self.steps is None:
            raise ValueError("lr_schedule 'cosine' decays the learning rate to 0 at the last step: give steps")
        check.require_number(self.weight_decay, "weight_decay", low=0.0)
        if check.require_number(self.grad_clip, "grad_clip") <= 0:
            raise ValueError(f"grad_clip must be > 0, got {self.grad_clip}")
        if not 0.0 <= check.require_number(self.ema_decay, "ema_decay") < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")
        check.require_number(self.label_dropout, "label_dropout", 0.0, 1.0)
        if not isinstance(self.flip, bool):
            raise TypeError(f"flip must be True or False, got {type(self.flip).__name__}")
        check.require_choice(self.parameterization, "parameterization", OBJECTIVES)
        check.require_choice(self.weighting, "weighting", WEIGHTINGS)
        check.require_choice(self.schedule, "schedule", SCHEDULE_NAMES)
        check.require_int(self.T, "T", minimum=1)
        if not 0 <= check.require_int(self.seed, "seed") < 2**64:
            raise ValueError(f"seed must lie in 0..2**64-1 (what torch.Generator takes), got {self.seed}")
        check.require_int(self.checkpoint_every, "checkpoint_every", minimum=1)

    def make_schedule(self):
        """The run's NoiseSchedule: ``NoiseSchedule.from_name(schedule, T)``."""
        return NoiseSchedule.from_name(self.schedule, self.T)

    def to_dict(self) -> dict:
        """Plain Python values (the U-Net as a nested dict), as stored in checkpoints."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """The inverse of ``to_dict``; unknown keys are refused with their names."""
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {sorted(unknown)}")
        return cls(**values)


def default(config_class, name: str):
    """The default value of a config field (the command line shows these in --help)."""
    spec = config_class.__dataclass_fields__[name]
    return spec.default_factory() if callable(spec.default_factory) else spec.default
