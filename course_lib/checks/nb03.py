"""Exercises of notebook 03, the U-Net: time embedding, residual block, self-attention, the skip wiring."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .. import unet
from ._framework import Case, Exercise, Mistake, register, seeded_randn



# ---------------------------------------------------------------- sinusoidal time embedding
def _embedding_variant(sin_first=True, exponent_step=2, interleave=True, divide=True):
    """The embedding with one ingredient changed: each switch is a typical mistake."""
    def wrong(t, dim):
        exponents = torch.arange(dim // 2, dtype=torch.float32) * exponent_step / dim
        frequencies = 10000.0 ** exponents
        angles = t.float()[:, None] / frequencies if divide else t.float()[:, None] * frequencies
        first, second = (angles.sin(), angles.cos()) if sin_first else (angles.cos(), angles.sin())
        if interleave:
            return torch.stack([first, second], dim=-1).reshape(len(t), dim)
        return torch.cat([first, second], dim=1)
    return wrong


register(Exercise(
    id="03.sinusoidal_embedding",
    title="sinusoidal time embedding",
    reference=lambda t, dim: unet.sinusoidal_embedding(t, dim),
    cases=lambda: [Case((torch.tensor([0, 1, 10, 999]), 8), label="t=[0, 1, 10, 999], dim=8"),
                   Case((torch.arange(0, 1000, 97), 32), label="11 timesteps, dim=32"),
                   Case((torch.tensor([3]), 2), label="t=[3], dim=2")],
    mistakes=[
        Mistake("sin and cos swapped", _embedding_variant(sin_first=False),
                "Even columns hold the sine, odd columns the cosine: PE(t, 2i) = sin(...), PE(t, 2i+1) = cos(...). "
                "At t = 0 the row must read 0, 1, 0, 1, ..."),
        Mistake("exponent i/d", _embedding_variant(exponent_step=1),
                "The exponent is 2i/d for column pair i (i = 0 .. d/2 - 1): torch.arange(0, dim, 2) / dim, "
                "so the slowest frequency reaches nearly 1/10000."),
        Mistake("concatenated layout", _embedding_variant(interleave=False),
                "This course interleaves the pairs: column 2i is sin, column 2i+1 is cos of the same frequency. "
                "torch.stack([sin, cos], dim=-1).reshape(B, dim) interleaves; torch.cat puts all sines first."),
        Mistake("multiplied by the period", _embedding_variant(divide=False),
                "Divide t by 10000^(2i/d): the frequencies 1 / 10000^(2i/d) fall from 1 to nearly 1/10000."),
    ],
    hint="angles = t[:, None] / 10000 ** (torch.arange(0, dim, 2) / dim), shape (B, dim/2); put sin(angles) in the "
         "even columns and cos(angles) in the odd columns; return float32 (B, dim).",
    rtol=0.0,
    atol=1e-3,   # float32 angles near t = 1000 carry rounding of about 1e-4, whatever the formula's order
))


# ---------------------------------------------------------------- residual block
class _LayersOnly(unet.ResidualBlock):
    """A ResidualBlock that refuses to run itself: the exercise is to write its forward from its layers."""

    def forward(self, x, time_emb):
        raise RuntimeError("calling block(x, time_emb) runs the course's answer; use the layers block.norm1, "
                           "block.conv1, block.time_proj, block.norm2, block.dropout, block.conv2, block.skip")


def _block(in_channels: int, out_channels: int, time_dim: int, seed: int) -> _LayersOnly:
    with torch.random.fork_rng(devices=[]):   # seeded weights without touching the notebook's random state
        torch.manual_seed(seed)
        block = _LayersOnly(in_channels, out_channels, time_dim)
    # Make the time projection large enough that every mistake in FiLM shows clearly.
    with torch.no_grad():
        block.time_proj.weight.mul_(3)
    return block.eval()


def _residual_reference(x, time_emb, block):
    return unet.ResidualBlock.forward(block, x, time_emb)


def _residual_variant(one_plus=True, swap=False, residual=True, second_norm=True):
    def wrong(x, time_emb, block):
        h = block.conv1(F.silu(block.norm1(x)))
        scale, shift = block.time_proj(F.silu(time_emb))[:, :, None, None].chunk(2, dim=1)
        if swap:
            scale, shift = shift, scale
        h = block.norm2(h) if second_norm else h
        h = h * (1 + scale) + shift if one_plus else h * scale + shift
        h = block.conv2(block.dropout(F.silu(h)))
        return block.skip(x) + h if residual else h
    return wrong


register(Exercise(
    id="03.residual_block",
    title="residual block with time scale-shift (FiLM)",
    reference=_residual_reference,
    cases=lambda: [Case((seeded_randn(2, 4, 6, 6, seed=1), seeded_randn(2, 16, seed=2), _block(4, 8, 16, seed=3)),
                        label="4 -> 8 channels (1x1 skip conv), 6x6"),
                   Case((seeded_randn(3, 8, 4, 4, seed=4), seeded_randn(3, 16, seed=5), _block(8, 8, 16, seed=6)),
                        label="8 -> 8 channels (identity skip), 4x4")],
    mistakes=[
        Mistake("scale without 1 +", _residual_variant(one_plus=False),
                "Scale with (1 + scale), not scale: a freshly initialised projection gives scale near 0, and "
                "h * scale would wipe out the features; (1 + scale) starts near the identity."),
        Mistake("scale and shift swapped", _residual_variant(swap=True),
                "time_proj's output splits as scale, shift = out.chunk(2, dim=1): the first half scales, the second "
                "half shifts."),
        Mistake("no residual connection", _residual_variant(residual=False),
                "A residual block returns block.skip(x) + h: the skip path carries x through unchanged (or through a "
                "1x1 conv when the channel count changes)."),
        Mistake("FiLM without the second norm", _residual_variant(second_norm=False),
                "Normalise before modulating: h = block.norm2(h) * (1 + scale) + shift, so the time embedding sets "
                "the features' scale and offset instead of fighting whatever came out of conv1."),
    ],
    hint="h = conv1(silu(norm1(x))); scale, shift = time_proj(silu(time_emb))[:, :, None, None].chunk(2, dim=1); "
         "h = norm2(h) * (1 + scale) + shift; h = conv2(dropout(silu(h))); return skip(x) + h.",
    rtol=1e-4,
    atol=1e-5,
))


# ---------------------------------------------------------------- self-attention
def _attention_cases():
    return [Case((seeded_randn(2, 4, 3, 3, seed=10), seeded_randn(4, 4, seed=11), seeded_randn(4, 4, seed=12), seeded_randn(4, 4, seed=13)),
                 label="C=D=4 on a 3x3 map"),
            Case((seeded_randn(1, 6, 2, 4, seed=14), seeded_randn(3, 6, seed=15), seeded_randn(3, 6, seed=16), seeded_randn(6, 6, seed=17)),
                 label="C=6, D=3 on a 2x4 map")]


def _attention_variant(scale_of=math.sqrt, softmax_dim=-1, transpose_back=True):
    def wrong(x, w_q, w_k, w_v):
        batch, _, height, width = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        q, k, v = tokens @ w_q.T, tokens @ w_k.T, tokens @ w_v.T
        weights = torch.softmax(q @ k.transpose(1, 2) / scale_of(q.shape[-1]), dim=softmax_dim)
        out = weights @ v
        return (out.transpose(1, 2) if transpose_back else out).reshape(batch, -1, height, width)
    return wrong


register(Exercise(
    id="03.self_attention",
    title="self-attention over the positions of a feature map",
    reference=unet.self_attention,
    cases=_attention_cases,
    mistakes=[
        Mistake("no 1/sqrt(D) scale", _attention_variant(scale_of=lambda d: 1.0),
                "Divide the scores q k^T by sqrt(D), D = the query width (w_q.shape[0]): dot products of D-dim "
                "vectors grow like sqrt(D) and would saturate the softmax."),
        Mistake("scaled by 1/D", _attention_variant(scale_of=lambda d: float(d)),
                "The scale is 1/sqrt(D), not 1/D."),
        Mistake("softmax over the queries", _attention_variant(softmax_dim=1),
                "Each query position distributes its attention over the keys: softmax over the last axis "
                "(dim=-1), so that every row of the (N, N) weight matrix sums to 1."),
        Mistake("folded back without transposing", _attention_variant(transpose_back=False),
                "The result A v has shape (B, N, C_out), one row per position; transpose it to (B, C_out, N) before "
                "reshaping to (B, C_out, H, W), or the channels and positions get mixed up."),
    ],
    hint="tokens = x.flatten(2).transpose(1, 2) -> (B, N, C); q, k, v = tokens @ w_q.T, tokens @ w_k.T, tokens @ w_v.T; "
         "A = softmax(q @ k.transpose(1, 2) / sqrt(D), dim=-1); out = (A @ v).transpose(1, 2).reshape(B, -1, H, W).",
    rtol=1e-4,
    atol=1e-5,
))


# ---------------------------------------------------------------- up path: upsample and concatenate the skip
def _conv(in_channels: int, out_channels: int, seed: int) -> nn.Conv2d:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Conv2d(in_channels, out_channels, 3, padding=1)


def _up_variant(skip_first=False, tile=False, conv_first=False, use_conv=True, add=False):
    def wrong(h, skip, conv):
        if conv_first:
            h = F.interpolate(conv(h), scale_factor=2, mode="nearest")
        else:
            h = h.repeat(1, 1, 2, 2) if tile else F.interpolate(h, scale_factor=2, mode="nearest")
            h = conv(h) if use_conv else h
        if add:
            return h + skip
        return torch.cat([skip, h] if skip_first else [h, skip], dim=1)
    return wrong


register(Exercise(
    id="03.upsample_and_concat",
    title="up path: upsample, convolve, concatenate the skip",
    reference=unet.upsample_and_concat,
    # The first case keeps every channel count equal, so that even the mistaken sum returns a tensor.
    cases=lambda: [Case((seeded_randn(2, 4, 3, 3, seed=20), seeded_randn(2, 4, 6, 6, seed=21), _conv(4, 4, seed=22)),
                        label="h (2, 4, 3, 3), skip (2, 4, 6, 6), conv 4 -> 4"),
                   Case((seeded_randn(1, 6, 2, 4, seed=23), seeded_randn(1, 3, 4, 8, seed=24), _conv(6, 5, seed=25)),
                        label="h (1, 6, 2, 4), skip (1, 3, 4, 8), conv 6 -> 5")],
    mistakes=[
        Mistake("skip first", _up_variant(skip_first=True),
                "Order matters to the next block's weights: torch.cat([h, skip], dim=1), the upsampled decoder "
                "features first, then the skip."),
        Mistake("tiled with repeat", _up_variant(tile=True),
                "h.repeat(1, 1, 2, 2) tiles the whole map twice; nearest-neighbour upsampling copies each pixel into "
                "a 2x2 block: F.interpolate(h, scale_factor=2, mode='nearest')."),
        Mistake("conv before upsampling", _up_variant(conv_first=True),
                "Upsample first, then apply the 3x3 conv at the new resolution, so that it smooths the blocky "
                "copies the upsampling made."),
        Mistake("no conv", _up_variant(use_conv=False),
                "Apply conv to the upsampled features before concatenating: it changes the channel count and "
                "smooths the 2x2 blocks."),
        Mistake("added instead of concatenated", _up_variant(add=True),
                "A U-Net concatenates the skip on the channel axis (torch.cat(..., dim=1)): the output has "
                "C_out + C_skip channels and the next block learns how to mix them."),
    ],
    hint="h = conv(F.interpolate(h, scale_factor=2, mode='nearest')); return torch.cat([h, skip], dim=1).",
    rtol=1e-4,
    atol=1e-5,
))
