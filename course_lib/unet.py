"""The noise-prediction network eps_theta(x_t, t[, y]): a small U-Net, built from the pieces of notebook 03
(defined in ``blocks.py`` and importable from here, as notebook 03 does):

    (sinusoidal_embedding, TimeEmbedding, ResidualBlock, self_attention, AttentionBlock,
     upsample_and_concat: see blocks.py)
    UNet                   down path, bottleneck (with attention), up path with skips, optional class input

Conventions: images (B, C, H, W) float; timesteps t int64 (B,) 0-based (t in {0, ..., T-1}); class
labels y int64 (B,) in {0, ..., num_classes - 1}, or the null class ``num_classes`` meaning "no label"
(classifier-free guidance trains with some labels replaced by it; ``y=None`` means all null).
Sizes that are not a multiple of patch_size * 2^(levels - 1), such as 28 px with four levels, are padded by
edge replication on entry and cropped back on exit.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._validate import require_float_tensor, require_tensor
# The pieces, importable from here too: notebook 03 and its checks build the U-Net as unet.<piece>.
from .blocks import (MAX_PERIOD, AttentionBlock, ResidualBlock, TimeEmbedding, attention_weights, group_norm,
                     self_attention, sinusoidal_embedding, upsample_and_concat)
from .config import UNetConfig


def count_parameters(*modules: nn.Module | None) -> int:
    """Number of trainable numbers in the given modules (None counts 0)."""
    return sum(p.numel() for m in modules if m is not None for p in m.parameters() if p.requires_grad)


class UNet(nn.Module):
    """eps_theta(x, t, y): (B, in_channels, H, W) -> (B, out_channels, H, W), any H, W >= 1.

    Level l works at resolution H / (patch_size 2^l) with base_channels * channel_mults[l] channels:
        (patch_size p > 1: space-to-depth, each p x p patch of pixels becomes p^2 channels of one position)
        conv_in                                  in_channels p^2 -> base_channels
        down level l: num_res_blocks ResidualBlocks, keep the result as skip l, then a stride-2 conv
                      (not after the last level)
        (levels in attention_levels: an AttentionBlock after each of their ResidualBlocks, on both paths)
        bottleneck    ResidualBlock, AttentionBlock (if attention), ResidualBlock, at the lowest resolution
        up level l (from the lowest): upsample and a 3x3 conv (not at the lowest level), concatenate
                      skip l, num_res_blocks ResidualBlocks
        output        GroupNorm, SiLU, 3x3 conv -> out_channels p^2 (p > 1: depth-to-space back to H x W)
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
        attention_levels: levels (0-based) with self-attention too, e.g. those at 16x16 and 8x8 for
            32-64 px pictures (``config.unet_layout``); attention costs (H W)^2, so never at full resolution.
        patch_size: the side p of the pixel patches folded into channels on entry (``F.pixel_unshuffle``) and
            unfolded on exit (``F.pixel_shuffle``, Shi et al. 2016). Exact and invertible, it lets the network
            work at H / p from its first level: about p^2 times less compute per picture for the same widths.
            Every pixel is still predicted (p^2 outputs per position); the net just sees no finer grid than p.
    """

    def __init__(self, in_channels: int = 1, out_channels: int | None = None, base_channels: int = 32,
                 channel_mults: tuple[int, ...] = (1, 2), num_res_blocks: int = 1, attention: bool = True,
                 num_classes: int | None = None, time_embed_dim: int | None = None, dropout: float = 0.0,
                 skip_connections: bool = True, time_conditioning: bool = True,
                 attention_levels: tuple[int, ...] = (), patch_size: int = 1):
        super().__init__()
        UNetConfig(in_channels, out_channels, base_channels, tuple(channel_mults) if isinstance(channel_mults, list)
                   else channel_mults, num_res_blocks, attention, num_classes, time_embed_dim, dropout,
                   skip_connections, time_conditioning, tuple(attention_levels), patch_size)   # checks the arguments
        self.in_channels = in_channels
        self.out_channels = out_channels or in_channels
        self.num_classes = num_classes
        self.levels = len(channel_mults)
        self.skip_connections = skip_connections
        self.patch_size = patch_size
        time_dim = time_embed_dim or 4 * base_channels
        self.time_dim = time_dim

        self.time_embed = TimeEmbedding(base_channels, time_dim) if time_conditioning else None
        self.class_embed = nn.Embedding(num_classes + 1, time_dim) if num_classes is not None else None
        self.conv_in = nn.Conv2d(in_channels * patch_size ** 2, base_channels, 3, padding=1)

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

        def attention_blocks():    # empty for a level without attention: such nets' checkpoints keep their keys
            return nn.ModuleList(nn.ModuleList(AttentionBlock(width) for _ in range(num_res_blocks)
                                               if level in attention_levels) for level, width in enumerate(widths))
        self.down_attention, self.up_attention = attention_blocks(), attention_blocks()

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
        self.conv_out = nn.Conv2d(base_channels, self.out_channels * patch_size ** 2, 3, padding=1)

    # ------------------------------------------------------------ inputs
    def _check_inputs(self, x, t, y) -> tuple[torch.Tensor, torch.Tensor | None]:
        require_float_tensor(x, "x")
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must have shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        batch = x.shape[0]
        if isinstance(t, int) and not isinstance(t, bool):
            t = torch.tensor(t)
        require_tensor(t, "t")
        if t.dtype == torch.bool or t.is_complex():
            raise TypeError(f"t must hold timesteps (int64, or float for continuous time), got dtype {t.dtype}")
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
        """x (B, in_channels, H, W) float; t (B,) int64 (or one int for all), or float for continuous time (flow
        matching passes tau * 1000); y (B,) int64 or None -> (B, out_channels, H, W)."""
        t, y = self._check_inputs(x, t, y)
        emb = self.embed(t, y, x)
        height, width = x.shape[-2:]
        multiple = self.patch_size * 2 ** (self.levels - 1)
        pad_h, pad_w = -height % multiple, -width % multiple
        h = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), mode="replicate")

        h = self.conv_in(F.pixel_unshuffle(h, self.patch_size))
        skips = []
        for level, blocks in enumerate(self.down_blocks):
            h = _run_level(blocks, self.down_attention[level], h, emb)
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
            h = _run_level(self.up_blocks[level], self.up_attention[level], h, emb)

        h = F.pixel_shuffle(self.conv_out(F.silu(self.norm_out(h))), self.patch_size)
        return h[:, :, pad_h // 2: pad_h // 2 + height, pad_w // 2: pad_w // 2 + width]

    # ------------------------------------------------------------ inspection
    def parameter_breakdown(self) -> dict[str, int]:
        """Trainable parameters per part of the U, in the order data flows through them."""
        return {"time embedding": count_parameters(self.time_embed),
                "class embedding": count_parameters(self.class_embed),
                "input conv": count_parameters(self.conv_in),
                "down path": count_parameters(self.down_blocks, self.downsamples, self.down_attention),
                "bottleneck": count_parameters(self.mid),
                "up path": count_parameters(self.up_convs, self.up_blocks, self.up_attention),
                "output": count_parameters(self.norm_out, self.conv_out)}


def _run_level(blocks: nn.ModuleList, attention: nn.ModuleList, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    """A level's ResidualBlocks in turn, each followed by its AttentionBlock when the level has attention."""
    for i, block in enumerate(blocks):
        h = block(h, emb)
        h = attention[i](h) if len(attention) else h
    return h


def trace_shapes(model: UNet, x: torch.Tensor, t, y: torch.Tensor | None = None) -> list[tuple[str, tuple]]:
    """(name, output shape) of every block and resampling layer, in the order the forward pass runs them."""
    shapes, hooks = [], []
    named = [("conv_in", model.conv_in)]
    for level, blocks in enumerate(model.down_blocks):
        named += [(f"down[{level}].res[{i}]", b) for i, b in enumerate(blocks)]
        named += [(f"down[{level}].attn[{i}]", b) for i, b in enumerate(model.down_attention[level])]
        if level < model.levels - 1:
            named.append((f"downsample[{level}]", model.downsamples[level]))
    named += [(f"mid[{i}] {type(layer).__name__}", layer) for i, layer in enumerate(model.mid)]
    for level in reversed(range(model.levels)):
        if level < model.levels - 1:
            named.append((f"up_conv[{level}]", model.up_convs[level]))
        named += [(f"up[{level}].res[{i}]", b) for i, b in enumerate(model.up_blocks[level])]
        named += [(f"up[{level}].attn[{i}]", b) for i, b in enumerate(model.up_attention[level])]
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
