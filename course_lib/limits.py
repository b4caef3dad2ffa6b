"""Size limits the command line checks before it starts work: a memory estimate against what a laptop bears.

A slip of the keyboard (``--n 1000000000``, ``--T 1000000000``, ``--image-size 100000``, ``procedural
--steps 1000000000``) should be refused within a second, with the estimate and the limit, instead of
swapping for minutes and dying of a MemoryError. The estimates are rough on purpose: measured factors times
the sizes that dominate (feature maps, the bottleneck's attention matrix, saved pictures), within about a
factor of two of the peak memory (tests/test_limits.py compares the training estimate with the tensors
autograd keeps; the shipped digits model sampling 4096 images peaked at 80 kB per image against 100 kB
estimated). Only memory is bounded: a run that fits ends within minutes or shows a progress bar with its
remaining time.

``--no-limits`` (anywhere on the command line) skips these checks, for a machine that has the memory.
The library's functions themselves have no limits; they do what they are asked.
"""
from __future__ import annotations

import math

MEMORY_LIMIT = 4 * 2**30      # bytes: half of a common 8 GB laptop, room left for the notebook server
NO_LIMITS = "--no-limits"
FLOAT_BYTES = 4
# Floats kept per image while training, per float of the U-Net's feature maps (summed over levels) and per
# entry of the bottleneck's attention matrix: measured with autograd's saved-tensor hooks (compare.py's
# training_memory) on several widths, depths and sizes, which gave 24-31 and 3.
TRAIN_FLOATS_PER_FEATURE, TRAIN_FLOATS_PER_ATTENTION = 32, 3
# Sampling keeps no graph: the peak is a few feature maps and the attention scores and weights (measured
# peak resident memory: about 7 per feature for the shipped digits model).
SAMPLE_FLOATS_PER_FEATURE, SAMPLE_FLOATS_PER_ATTENTION = 8, 2
# The weights, their gradients, AdamW's two moments and the EMA: five copies of every parameter.
TRAIN_COPIES_OF_PARAMETERS = 5
SCHEDULE_TABLE_BYTES = 16 * 8    # NoiseSchedule's float64 tables (and their temporaries), per timestep
STAT_RECORD_BYTES = 1000         # procedural: one statistics record (a dict of six floats) and its CSV line
PICTURE_COPIES_BYTES = 10        # procedural: a kept float32 image, the strip's float32 copy, its bytes and PNG
GRID_BYTES_PER_PIXEL = 10        # sample's PNG grid: the enlarged float32 pictures, the float32 grid, bytes, PNG
TIME_GRID_BYTES_PER_STEP = 100   # flow samplers: the solver's times as Python floats, and its plan


class TooLarge(ValueError):
    """A run whose estimated memory exceeds the limit; the message gives the estimate, the limit and the fix."""


def size_text(count: float) -> str:
    """Bytes as a short human figure: 512 MB, 3.2 GB, 75 TB."""
    for unit, scale in (("TB", 2**40), ("GB", 2**30), ("MB", 2**20)):
        if count >= scale:
            return f"{count / scale:.2g} {unit}" if count < 10 * scale else f"{count / scale:,.0f} {unit}"
    return f"{max(count, 0) / 2**10:.0f} kB"


def require_within(estimate: float, what: str, fix: str, limit: float | None = None) -> None:
    """TooLarge, naming ``what`` needs about ``estimate`` bytes, the limit (default MEMORY_LIMIT) and ``fix``,
    when estimate > limit."""
    limit = MEMORY_LIMIT if limit is None else limit
    if estimate > limit:
        raise TooLarge(f"{what} needs about {size_text(estimate)} of memory (estimate), above the limit of "
                       f"{size_text(limit)}: {fix}, or add {NO_LIMITS} if this machine has the memory")


def unet_sizes(unet, height: int, width: int) -> tuple[int, int]:
    """(floats in the U-Net's feature maps over all levels, entries of its attention matrices) for one H x W image,
    with the padding to a multiple of patch_size 2^(levels - 1) that ``unet.UNet`` applies and its patches folded
    into channels: the bottleneck's attention, and at each of ``attention_levels`` one after every residual block
    of both paths."""
    levels = len(unet.channel_mults)
    multiple = unet.patch_size * 2 ** (levels - 1)
    height, width = (-(-side // multiple) * multiple // unet.patch_size for side in (height, width))
    features = sum(unet.base_channels * mult * (height >> level) * (width >> level)
                   for level, mult in enumerate(unet.channel_mults))
    positions = [(height >> level) * (width >> level) for level in range(levels)]
    attention = (positions[-1] ** 2 if unet.attention else 0) + sum(
        2 * unet.num_res_blocks * positions[level] ** 2 for level in unet.attention_levels)
    return features, attention


def unet_parameters(unet) -> int:
    """The number of parameters of ``UNet(unet)``, counted on the meta device (no memory is allocated)."""
    from dataclasses import asdict

    import torch

    from .unet import UNet

    with torch.device("meta"):
        return sum(parameter.numel() for parameter in UNet(**asdict(unet)).parameters())


def training_bytes(config, image_shape) -> float:
    """Estimated peak memory of ``training.train(config, ...)`` on images of ``image_shape`` (C, H, W)."""
    features, attention = unet_sizes(config.unet, *image_shape[1:])
    per_image = TRAIN_FLOATS_PER_FEATURE * features + TRAIN_FLOATS_PER_ATTENTION * attention
    parameters = TRAIN_COPIES_OF_PARAMETERS * unet_parameters(config.unet)
    return FLOAT_BYTES * (config.batch_size * per_image + parameters) + SCHEDULE_TABLE_BYTES * config.T


def sampling_bytes(unet, image_shape, count: int, network_batches: int = 1) -> float:
    """Estimated peak memory of sampling ``count`` images of ``image_shape`` at once; ``network_batches`` = 2
    when classifier-free guidance runs the network on a conditional and an unconditional copy."""
    features, attention = unet_sizes(unet, *image_shape[1:])
    per_image = network_batches * (SAMPLE_FLOATS_PER_FEATURE * features + SAMPLE_FLOATS_PER_ATTENTION * attention)
    return FLOAT_BYTES * (count * (per_image + 4 * math.prod(image_shape)) + unet_parameters(unet))


def procedural_bytes(height: int, width: int, channels: int, steps: int, records_every: int, save_every: int) -> float:
    """Estimated peak memory of the procedural demo: noise, pattern, the kept images (and the strip made from
    them), one statistics record every ``records_every`` steps."""
    pixels = height * width * channels
    return (2 * FLOAT_BYTES * pixels + PICTURE_COPIES_BYTES * pixels * (steps // save_every + 1)
            + STAT_RECORD_BYTES * (steps // records_every + 1))


def picture_grid_bytes(count: int, image_shape, scale: int) -> float:
    """Estimated memory of an image grid of ``count`` pictures of ``image_shape``, each enlarged ``scale`` times."""
    return GRID_BYTES_PER_PIXEL * count * math.prod(image_shape) * scale ** 2
