"""The noise-prediction network eps_theta(x_t, t[, y]): a small U-Net, built from the pieces of notebook 03.

    sinusoidal_embedding   t -> (B, dim) waves, interleaved: PE(t, 2i) = sin(t w_i), PE(t, 2i+1) = cos(t w_i)
    TimeEmbedding          sinusoid -> Linear -> SiLU -> Linear
    ResidualBlock          GroupNorm, SiLU, 3x3 conv, twice; the time embedding scales and shifts the
                           second normalised activation (FiLM): h = norm(h) * (1 + scale) + shift
    self_attention         single-head attention over the H*W positions of a feature map (attention_weights: A)
    AttentionBlock         GroupNorm -> self_attention -> 1x1 conv, added back to its input
    upsample_and_concat    the up path's wiring: nearest x2, 3x3 conv, then the skip appended on channels
    UNet                   down path, bottleneck (with attention), up path with skips, optional class input

Conventions: images (B, C, H, W) float; timesteps t int64 (B,) 0-based (t in {0, ..., T-1}); class
labels y int64 (B,) in {0, ..., num_classes - 1}, or the null class ``num_classes`` meaning "no label"
(classifier-free guidance trains with some labels replaced by it; ``y=None`` means all null).
Sizes that are not a multiple of 2^(levels - 1), such as 28 px with four levels, are padded by
edge replication on entry and cropped back on exit.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._validate import require_float_tensor, require_tensor
from .config import UNetConfig

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


def count_parameters(*modules: nn.Module | None) -> int:
    """Number of trainable numbers in the given modules (None counts 0)."""
    return sum(p.numel() for m in modules if m is not None for p in m.parameters() if p.requires_grad)


class UNet(nn.Module):
    """eps_theta(x, t, y): (B, in_channels, H, W) -> (B, out_channels, H, W), any H, W >= 1.

    Level l works at resolution H / 2^l with base_channels * channel_mults[l] channels:
        conv_in                                  in_channels -> base_channels
        down level l: num_res_blocks ResidualBlocks, keep the result as skip l, then a stride-2 conv
                      (not after the last level)
        bottleneck    ResidualBlock, AttentionBlock (if attention), ResidualBlock, at the lowest resolution
        up level l (from the lowest): upsample and a 3x3 conv (not at the lowest level), concatenate
                      skip l, num_res_blocks ResidualBlocks
        output        GroupNorm, SiLU, 3x3 conv -> out_channels
    The time embedding (plus the class embedding, when num_classes is set) reaches every ResidualBlock.

    Args:
        in_channels, out_channels: image channels (out_channels defaults to in_channels).
        base_channels: width of the first level (even: the sinusoid has base_channels columns).
        channel_mults: one multiplier per level; its length sets the depth of the U.
        num_res_blocks: ResidualBlocks per level on each path.
        attention: self-attention in the bottleneck.
        num_classes: None for an unconditional net; otherwise labels 0..num_classes-1 plus the null
            class num_classes (an extra embedding row), used when y is None.
        time_embed_dim: width of the time embedding (default 4 * base_channels).
        dropout: inside the residual blocks.
        skip_connections, time_conditioning: ablation switches (notebook 03): without skips the up
            path sees only the bottleneck; without time the blocks get no timestep information.
    """

    def __init__(self, in_channels: int = 1, out_channels: int | None = None, base_channels: int = 32,
                 channel_mults: tuple[int, ...] = (1, 2), num_res_blocks: int = 1, attention: bool = True,
                 num_classes: int | None = None, time_embed_dim: int | None = None, dropout: float = 0.0,
                 skip_connections: bool = True, time_conditioning: bool = True):
        super().__init__()
        UNetConfig(in_channels, out_channels, base_channels, tuple(channel_mults) if isinstance(channel_mults, list)
                   else channel_mults, num_res_blocks, attention, num_classes, time_embed_dim, dropout,
                   skip_connections, time_conditioning)       # checks the arguments
        self.in_channels = in_channels
        self.out_channels = out_channels or in_channels
        self.num_classes = num_classes
        self.levels = len(channel_mults)
        self.skip_connections = skip_connections
        time_dim = time_embed_dim or 4 * base_channels
        self.time_dim = time_dim

        self.time_embed = TimeEmbedding(base_channels, time_dim) if time_conditioning else None
        self.class_embed = nn.Embedding(num_classes + 1, time_dim) if num_classes is not None else None
        self.conv_in = nn.Conv2d(in_channels, base_channels, 3, padding=1)

        widths = [base_channels * m for m in channel_mults]
        self.down_blocks, self.downsamples = nn.ModuleList(), nn.ModuleList()
        channels = base_channels
        for level, width in enumerate(widths):
            blocks = [ResidualBlock(channels if i == 0 else width, width, time_dim, dropout)
                      for i in range(num_res_blocks)]
            self.down_blocks.append(nn.ModuleList(blocks))
            channels = width
            if level < self.levels - 1:
                self.downsamples.append(nn.Conv2d(width, width, 3, stride=2, padding=1))

        self.mid = nn.ModuleList([ResidualBlock(channels, channels, time_dim, dropout),
                                  AttentionBlock(channels) if attention else nn.Identity(),
                                  ResidualBlock(channels, channels, time_dim, dropout)])

        # up_convs[l] brings the features from level l + 1 up to level l's resolution and width.
        self.up_convs = nn.ModuleList(nn.Conv2d(widths[l + 1], widths[l], 3, padding=1)
                                      for l in range(self.levels - 1))
        self.up_blocks = nn.ModuleList()
        for width in widths:
            skip_width = width if skip_connections else 0
            blocks = [ResidualBlock(width + skip_width if i == 0 else width, width, time_dim, dropout)
                      for i in range(num_res_blocks)]
            self.up_blocks.append(nn.ModuleList(blocks))

        self.norm_out = group_norm(base_channels)
        self.conv_out = nn.Conv2d(base_channels, self.out_channels, 3, padding=1)

    # ------------------------------------------------------------ inputs
    def _check_inputs(self, x, t, y) -> tuple[torch.Tensor, torch.Tensor | None]:
        require_float_tensor(x, "x")
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must have shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        batch = x.shape[0]
        if isinstance(t, int) and not isinstance(t, bool):
            t = torch.tensor(t)
        require_tensor(t, "t")
        if t.is_floating_point() or t.dtype == torch.bool or t.is_complex():
            raise TypeError(f"t must hold integer timesteps (int64), got dtype {t.dtype}")
        if t.ndim == 0:
            t = t.expand(batch)
        if t.shape != (batch,):
            raise ValueError(f"t must have shape ({batch},), one timestep per image, got {tuple(t.shape)}")
        if (t < 0).any():
            raise ValueError(f"timesteps are 0-based and cannot be negative, got min {t.min().item()}")
        t = t.to(x.device)
        if y is None:
            return t, None if self.num_classes is None else torch.full((batch,), self.num_classes, device=x.device)
        if self.num_classes is None:
            raise ValueError("y was given to an unconditional UNet (num_classes=None); pass y=None or build "
                             "the net with num_classes")
        require_tensor(y, "y")
        if y.shape != (batch,) or y.is_floating_point():
            raise ValueError(f"y must be an int64 tensor of shape ({batch},), got shape {tuple(y.shape)} "
                             f"and dtype {y.dtype}")
        if y.min() < 0 or y.max() > self.num_classes:
            raise ValueError(f"labels must lie in 0..{self.num_classes} ({self.num_classes} = null class), "
                             f"got values from {y.min().item()} to {y.max().item()}")
        return t, y.to(x.device)

    def embed(self, t: torch.Tensor, y: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
        """The (B, time_dim) vector every ResidualBlock receives: time embedding + class embedding."""
        emb = self.time_embed(t) if self.time_embed is not None else like.new_zeros(like.shape[0], self.time_dim)
        return emb if y is None else emb + self.class_embed(y)

    # ------------------------------------------------------------ the U
    def forward(self, x: torch.Tensor, t, y: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, in_channels, H, W) float; t (B,) int64 (or one int for all); y (B,) int64 or None -> (B, out_channels, H, W)."""
        t, y = self._check_inputs(x, t, y)
        emb = self.embed(t, y, x)
        height, width = x.shape[-2:]
        multiple = 2 ** (self.levels - 1)
        pad_h, pad_w = -height % multiple, -width % multiple
        h = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), mode="replicate")

        h = self.conv_in(h)
        skips = []
        for level, blocks in enumerate(self.down_blocks):
            for block in blocks:
                h = block(h, emb)
            # Without skip connections, a zero-channel tensor keeps one code path: concatenating it adds nothing.
            skips.append(h if self.skip_connections else h[:, :0])
            if level < self.levels - 1:
                h = self.downsamples[level](h)

        for layer in self.mid:
            h = layer(h, emb) if isinstance(layer, ResidualBlock) else layer(h)

        for level in reversed(range(self.levels)):
            if level == self.levels - 1:
                h = torch.cat([h, skips[level]], dim=1)       # the bottom: same resolution, nothing to upsample
            else:
                h = upsample_and_concat(h, skips[level], self.up_convs[level])
            for block in self.up_blocks[level]:
                h = block(h, emb)

        h = self.conv_out(F.silu(self.norm_out(h)))
        return h[:, :, pad_h // 2: pad_h // 2 + height, pad_w // 2: pad_w // 2 + width]

    # ------------------------------------------------------------ inspection
    def parameter_breakdown(self) -> dict[str, int]:
        """Trainable parameters per part of the U, in the order data flows through them."""
        return {"time embedding": count_parameters(self.time_embed),
                "class embedding": count_parameters(self.class_embed),
                "input conv": count_parameters(self.conv_in),
                "down path": count_parameters(self.down_blocks, self.downsamples),
                "bottleneck": count_parameters(self.mid),
                "up path": count_parameters(self.up_convs, self.up_blocks),
                "output": count_parameters(self.norm_out, self.conv_out)}


def trace_shapes(model: UNet, x: torch.Tensor, t, y: torch.Tensor | None = None) -> list[tuple[str, tuple]]:
    """(name, output shape) of every block and resampling layer, in the order the forward pass runs them."""
    shapes, hooks = [], []
    named = [("conv_in", model.conv_in)]
    for level, blocks in enumerate(model.down_blocks):
        named += [(f"down[{level}].res[{i}]", b) for i, b in enumerate(blocks)]
        if level < model.levels - 1:
            named.append((f"downsample[{level}]", model.downsamples[level]))
    named += [(f"mid[{i}] {type(layer).__name__}", layer) for i, layer in enumerate(model.mid)]
    for level in reversed(range(model.levels)):
        if level < model.levels - 1:
            named.append((f"up_conv[{level}]", model.up_convs[level]))
        named += [(f"up[{level}].res[{i}]", b) for i, b in enumerate(model.up_blocks[level])]
    named.append(("conv_out", model.conv_out))
    for name, module in named:
        hooks.append(module.register_forward_hook(
            lambda module, inputs, output, name=name: shapes.append((name, tuple(output.shape)))))
    try:
        with torch.no_grad():
            model(x, t, y)
    finally:
        for hook in hooks:
            hook.remove()
    return shapes
