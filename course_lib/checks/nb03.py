"""Exercises of notebook 03, the U-Net: time embedding, residual block, self-attention, the skip wiring."""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from .. import unet
from ._framework import Case, Exercise, Mistake, register, seeded_generator, seeded_randn



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


def _embedding_loop(t, dim):
    out = torch.empty(len(t), dim)
    for row, step in enumerate(t.tolist()):
        for i in range(dim // 2):
            angle = step / 10000 ** (2 * i / dim)
            out[row, 2 * i], out[row, 2 * i + 1] = math.sin(angle), math.cos(angle)
    return out


def _embedding_exp_log(t, dim):
    frequencies = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    angles = t.double()[:, None] * frequencies
    out = torch.zeros(len(t), dim, dtype=torch.float64)
    out[:, 0::2], out[:, 1::2] = angles.sin(), angles.cos()
    return out.float()


register(Exercise(
    id="03.sinusoidal_embedding",
    title="sinusoidal time embedding",
    reference=lambda t, dim: unet.sinusoidal_embedding(t, dim),
    contract="a float32 tensor of shape (B, dim)",
    alternatives=[_embedding_loop, _embedding_exp_log],
    cases=lambda: [Case((torch.tensor([0, 1, 10, 999]), 8), label="t=[0, 1, 10, 999], dim=8"),
                   Case((torch.tensor([999, 0, 1, 500, 7]), 6), label="5 timesteps, dim=6"),
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
        Mistake("float64 result", lambda t, dim: unet.sinusoidal_embedding(t, dim).double(),
                "Return float32 (t.float(), or .float() at the end): the embedding feeds float32 layers, and a "
                "float64 tensor would make them fail."),
        Mistake("transposed", lambda t, dim: unet.sinusoidal_embedding(t, dim).T.contiguous(),
                "One row per timestep: the result has shape (B, dim), angles = t[:, None] / frequencies[None, :]."),
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


class _FixedDropout(nn.Module):
    """A deterministic stand-in for dropout: a fixed gain per channel, so a misplaced dropout changes the output."""

    def __init__(self, channels: int, generator: torch.Generator):
        super().__init__()
        self.register_buffer("gain", 0.5 + torch.rand(channels, generator=generator))

    def forward(self, h):
        return h * self.gain[None, :, None, None]


def _block(in_channels: int, out_channels: int, time_dim: int, seed: int) -> _LayersOnly:
    """A block with random weights everywhere, norms included: a skipped or misplaced part always shows."""
    with torch.random.fork_rng(devices=[]):   # seeded weights without touching the notebook's random state
        torch.manual_seed(seed)
        block = _LayersOnly(in_channels, out_channels, time_dim)
    generator = seeded_generator(seed)
    with torch.no_grad():
        block.time_proj.weight.mul_(3)        # large enough that every mistake in FiLM shows clearly
        for norm in (block.norm1, block.norm2):
            norm.weight.copy_(0.5 + torch.rand(norm.weight.shape, generator=generator))
            norm.bias.copy_(0.5 * torch.randn(norm.bias.shape, generator=generator))
    block.dropout = _FixedDropout(out_channels, generator)
    return block.eval()


def _residual_reference(x, time_emb, block):
    return unet.ResidualBlock.forward(block, x, time_emb)


def _residual_variant(one_plus=True, swap=False, residual=True, second_norm=True, first_norm=True,
                      dropout_at="middle", time_silu=True):
    def wrong(x, time_emb, block):
        h = block.conv1(F.silu(block.norm1(x) if first_norm else x))
        scale, shift = block.time_proj(F.silu(time_emb) if time_silu else time_emb)[:, :, None, None].chunk(2, dim=1)
        if swap:
            scale, shift = shift, scale
        h = block.norm2(h) if second_norm else h
        h = h * (1 + scale) + shift if one_plus else h * scale + shift
        h = block.conv2(block.dropout(F.silu(h)) if dropout_at == "middle" else F.silu(h))
        h = block.dropout(h) if dropout_at == "end" else h
        return block.skip(x) + h if residual else h
    return wrong


def _residual_addcmul(x, time_emb, block):
    h = block.conv1(block.norm1(x) * torch.sigmoid(block.norm1(x)))
    film = block.time_proj(F.silu(time_emb))
    channels = film.shape[1] // 2
    scale, shift = film[:, :channels, None, None], film[:, channels:, None, None]
    h = torch.addcmul(shift, block.norm2(h), 1 + scale)
    return block.skip(x) + block.conv2(block.dropout(F.silu(h)))


def _residual_float64_inside(x, time_emb, block):
    wide = copy.deepcopy(block).double()
    return _residual_reference(x.double(), time_emb.double(), wide).float()


register(Exercise(
    id="03.residual_block",
    title="residual block with time scale-shift (FiLM)",
    reference=_residual_reference,
    contract="a float32 tensor of shape (B, C_out, H, W)",
    cases=lambda: [Case((seeded_randn(2, 16, 6, 6, seed=1), seeded_randn(2, 16, seed=2), _block(16, 32, 16, seed=3)),
                        label="16 -> 32 channels (1x1 skip conv), 6x6"),
                   Case((seeded_randn(3, 32, 4, 4, seed=4), seeded_randn(3, 16, seed=5), _block(32, 32, 16, seed=6)),
                        label="32 -> 32 channels (identity skip), 4x4")],
    alternatives=[_residual_addcmul, _residual_float64_inside],
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
        Mistake("no first norm", _residual_variant(first_norm=False),
                "Start with block.norm1: h = conv1(silu(norm1(x))). Normalising first keeps the activations' scale "
                "fixed whatever the input's."),
        Mistake("dropout after conv2", _residual_variant(dropout_at="end"),
                "Dropout goes between the activation and the second conv: conv2(dropout(silu(h))), so the conv "
                "learns from features with some of them dropped."),
        Mistake("no dropout", _residual_variant(dropout_at="none"),
                "Keep block.dropout in the chain, conv2(dropout(silu(h))): it does nothing in eval mode but "
                "regularises during training."),
        Mistake("no SiLU on the time embedding", _residual_variant(time_silu=False),
                "Apply SiLU to the time embedding before the projection: time_proj(F.silu(time_emb))."),
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


def _attention_variant(scale_of=math.sqrt, softmax_dim=-1, transpose_back=True, normalise=True,
                       transpose_tokens=True):
    def wrong(x, w_q, w_k, w_v):
        batch, _, height, width = x.shape
        tokens = x.flatten(2).transpose(1, 2) if transpose_tokens else x.flatten(2).reshape(batch, -1, x.shape[1])
        q, k, v = tokens @ w_q.T, tokens @ w_k.T, tokens @ w_v.T
        scores = q @ k.transpose(1, 2) / scale_of(q.shape[-1])
        weights = torch.softmax(scores, dim=softmax_dim) if normalise else scores
        out = weights @ v
        return (out.transpose(1, 2) if transpose_back else out).reshape(batch, -1, height, width)
    return wrong


def _attention_sdpa(x, w_q, w_k, w_v):
    batch, _, height, width = x.shape
    tokens = x.flatten(2).transpose(1, 2)
    out = F.scaled_dot_product_attention(tokens @ w_q.T, tokens @ w_k.T, tokens @ w_v.T)
    return out.transpose(1, 2).reshape(batch, -1, height, width)


def _attention_einsum(x, w_q, w_k, w_v):
    batch, _, height, width = x.shape
    flat = x.reshape(batch, x.shape[1], -1)                                   # (B, C, N)
    q, k, v = (torch.einsum("dc,bcn->bnd", w, flat) for w in (w_q, w_k, w_v))
    weights = (torch.einsum("bnd,bmd->bnm", q, k) / q.shape[-1] ** 0.5).softmax(dim=-1)
    return torch.einsum("bnm,bmd->bdn", weights, v).reshape(batch, -1, height, width)


register(Exercise(
    id="03.self_attention",
    title="self-attention over the positions of a feature map",
    reference=unet.self_attention,
    contract="a tensor of shape (B, C_out, H, W) in x's dtype, C_out = w_v.shape[0]",
    cases=_attention_cases,
    alternatives=[_attention_sdpa, _attention_einsum],
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
        Mistake("no softmax", _attention_variant(normalise=False),
                "Turn the scores into weights with a softmax over the keys: without it the rows do not sum to 1 "
                "and the output is not an average of the values."),
        Mistake("tokens not transposed", _attention_variant(transpose_tokens=False),
                "x.flatten(2) has shape (B, C, N): one column per position. Transpose it to (B, N, C) so that each "
                "row is one position before multiplying by w_q.T."),
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
    contract="a tensor of shape (B, C_out + C_s, H, W), the convolved features first, then the skip",
    alternatives=[lambda h, skip, conv: torch.cat([conv(h.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)),
                                                   skip], dim=1),
                  lambda h, skip, conv: torch.cat([conv(F.interpolate(h, size=skip.shape[-2:])), skip], 1)],
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
