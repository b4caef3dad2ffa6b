"""The pieces of the U-Net (notebook 03), each a formula or a small module:

    sinusoidal_embedding   t -> (B, dim) waves, interleaved: PE(t, 2i) = sin(t w_i), PE(t, 2i+1) = cos(t w_i)
    TimeEmbedding          sinusoid -> Linear -> SiLU -> Linear
    ResidualBlock          GroupNorm, SiLU, 3x3 conv, twice; the time embedding scales and shifts the
                           second normalised activation (FiLM): h = norm(h) * (1 + scale) + shift
    self_attention         single-head attention over the H*W positions of a feature map (attention_weights: A)
    AttentionBlock         GroupNorm -> self_attention -> 1x1 conv, added back to its input
    upsample_and_concat    the up path's wiring: nearest x2, 3x3 conv, then the skip appended on channels

Images are (B, C, H, W) float; time embeddings (B, time_dim). ``unet.py`` assembles them.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

MAX_PERIOD = 10000.0


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = MAX_PERIOD) -> torch.Tensor:
    """Transformer positional encoding of the timesteps (Vaswani et al. 2017, sec. 3.5), interleaved layout:

        PE(t, 2i) = sin(t / max_period^(2i/dim)),   PE(t, 2i+1) = cos(t / max_period^(2i/dim)),   i = 0 .. dim/2 - 1

    t: (B,) integer or float timesteps; dim: even. Returns float32 (B, dim) with values in [-1, 1].
    Column pairs (2i, 2i+1) share one frequency; frequencies fall geometrically from 1 to nearly 1/max_period,
    so nearby timesteps differ in the fast columns and distant ones in the slow columns too.
    """
    exponents = torch.arange(0, dim, 2, dtype=torch.float32, device=t.device) / dim     # 2i/dim
    angles = t.to(torch.float32)[:, None] / max_period ** exponents[None, :]             # (B, dim/2)
    return torch.stack([angles.sin(), angles.cos()], dim=-1).reshape(t.shape[0], dim)


class TimeEmbedding(nn.Module):
    """t (B,) -> (B, out_dim): the fixed sinusoid (sinusoid_dim columns), then a two-layer MLP the network learns."""

    def __init__(self, sinusoid_dim: int, out_dim: int):
        super().__init__()
        self.sinusoid_dim = sinusoid_dim
        self.mlp = nn.Sequential(nn.Linear(sinusoid_dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(sinusoidal_embedding(t, self.sinusoid_dim))


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 8 groups: batch statistics would tie the noise levels of a batch together."""
    return nn.GroupNorm(math.gcd(channels, 8), channels)


class ResidualBlock(nn.Module):
    """(B, in_channels, H, W) and a time embedding (B, time_dim) -> (B, out_channels, H, W).

        h = conv1(SiLU(norm1(x)))
        scale, shift = time_proj(SiLU(time_emb)), split in two halves of out_channels
        h = norm2(h) * (1 + scale) + shift          (FiLM; "1 +" keeps the block near identity when scale ~ 0)
        h = conv2(dropout(SiLU(h)))
        return skip(x) + h                          (skip: a 1x1 conv when the channel count changes)
    """

    def __init__(self, in_channels: int, out_channels: int, time_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time_proj = nn.Linear(time_dim, 2 * out_channels)
        self.norm2 = group_norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.time_proj(F.silu(time_emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


def attention_weights(x: torch.Tensor, w_q: torch.Tensor, w_k: torch.Tensor) -> torch.Tensor:
    """A = softmax(q k^T / sqrt(D)) over the keys, for the N = H*W positions of x (B, C, H, W): (B, N, N).

    w_q, w_k: (D, C). Row n says how much position n (the query) takes from every position (the keys); rows sum to 1.
    """
    tokens = x.flatten(2).transpose(1, 2)                        # (B, N, C): one row per position
    q, k = tokens @ w_q.T, tokens @ w_k.T
    return torch.softmax(q @ k.transpose(1, 2) / math.sqrt(q.shape[-1]), dim=-1)


def self_attention(x: torch.Tensor, w_q: torch.Tensor, w_k: torch.Tensor, w_v: torch.Tensor) -> torch.Tensor:
    """Single-head self-attention over the N = H*W positions of a feature map (Vaswani et al. 2017, eq. 1).

    x: (B, C, H, W); w_q, w_k: (D, C); w_v: (C_out, C). Each position is a token of C features:
        q = x w_q^T, k = x w_k^T, v = x w_v^T                  (B, N, D), (B, N, D), (B, N, C_out)
        A = softmax(q k^T / sqrt(D)) over the keys (last axis)   (B, N, N), every row sums to 1
        out = A v, folded back to (B, C_out, H, W)
    """
    batch, _, height, width = x.shape
    v = x.flatten(2).transpose(1, 2) @ w_v.T                     # (B, N, C_out)
    out = attention_weights(x, w_q, w_k) @ v                     # (B, N, C_out)
    return out.transpose(1, 2).reshape(batch, -1, height, width)


class AttentionBlock(nn.Module):
    """(B, C, H, W) -> (B, C, H, W): x + to_out(self_attention(norm(x))); every position sees every other."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = group_norm(channels)
        self.to_q = nn.Linear(channels, channels, bias=False)
        self.to_k = nn.Linear(channels, channels, bias=False)
        self.to_v = nn.Linear(channels, channels, bias=False)
        self.to_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self_attention(self.norm(x), self.to_q.weight, self.to_k.weight, self.to_v.weight)
        return x + self.to_out(h)


def upsample_and_concat(h: torch.Tensor, skip: torch.Tensor, conv: nn.Module) -> torch.Tensor:
    """One step up the U: h (B, C_h, H/2, W/2) and the down path's skip (B, C_s, H, W) -> (B, C_out + C_s, H, W).

        h = conv(nearest-neighbour upsampling of h by 2)    (conv: 3x3, C_h -> C_out channels)
        return concat([h, skip]) on the channel axis        (decoder features first, then the skip)
    """
    h = conv(F.interpolate(h, scale_factor=2, mode="nearest"))
    return torch.cat([h, skip], dim=1)
