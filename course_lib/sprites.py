"""Procedural creature sprites: an offline colour dataset with labelled families (notebook 08).

The classic pixel-sprite recipe (as in Dave Bollinger's "pixel spaceships" and its many ports):

1. a **template** for the left half of a 16x16 grid says, per cell, "always empty", "always body"
   or "body with probability 1/2"; a random draw gives the left half of the body mask;
2. the half is **mirrored** onto the right half: creatures are left-right symmetric;
3. every empty cell that touches the body (4-neighbourhood) becomes the **outline**;
4. the body is coloured from a **palette** (a range of hues) and **shaded**: lit from the top-left,
   so brightness falls towards the bottom and towards the right, plus a little per-cell variation.
   The shading is not symmetric, so real sprites have a small, non-zero mirror error
   (``sprite_metrics.symmetry_error``) that a generator should match, not beat.

A family is one body shape (template) times one palette: 3 shapes x 2 palettes = 6 labelled classes,
balanced. Sprites are 16x16 cells upscaled (nearest neighbour) to 32x32 RGB on a white background,
returned like every dataset of the course: float32 (N, 3, 32, 32) in [-1, 1].
"""
from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

from ._validate import require_choice, require_int
from .data import SPLITS, ImageDataset, split_indices

GRID = 16                     # cells per side
SIZE = 32                     # pixels per side after upscaling
POOL = 6000                   # sprites in the fixed pool that load_sprites splits into train / test

# Left halves (16 rows x 8 columns; column 7 touches the mirror axis): "." empty, "o" body with probability
# 1/2, "#" always body. Row 0 and column 0 stay empty so that the outline fits inside the grid.
TEMPLATES = {
    "blob": ("........",
             "........",
             "........",
             ".....ooo",
             "....oo##",
             "...oo###",
             "..oo####",
             "..oo####",
             "..oo####",
             "..oo####",
             "...o####",
             "...oo###",
             "....oo##",
             ".....o.o",
             "....oo.o",
             "........"),
    "winged": ("........",
               "........",
               "........",
               "......o#",
               ".o....o#",
               ".oo..oo#",
               ".ooooo##",
               ".oooo###",
               "..ooo###",
               "...oo###",
               ".....o##",
               "......o#",
               ".....o.#",
               ".....o..",
               "........",
               "........"),
    "tall": ("........",
             ".....ooo",
             ".....o##",
             ".....o##",
             "......o#",
             "....oo##",
             "...o####",
             "...oo###",
             "...o.o##",
             ".....o##",
             ".....o##",
             ".....oo#",
             ".....o.o",
             ".....o.o",
             "....oo.o",
             "........"),
}
# Hue ranges in [0, 1) (HSV): warm = reds to yellows, cool = greens to blues.
PALETTES = {"warm": (0.00, 0.12), "cool": (0.45, 0.65)}
FAMILIES = tuple(f"{shape}-{palette}" for shape in TEMPLATES for palette in PALETTES)
CELL_CODES = {".": 0, "o": 1, "#": 2}


def template_codes() -> torch.Tensor:
    """The templates as int64 (shapes, 16, 8): 0 empty, 1 body with probability 1/2, 2 always body."""
    return torch.tensor([[[CELL_CODES[c] for c in row] for row in rows] for rows in TEMPLATES.values()])


# ---------------------------------------------------------------- the recipe, one step per function
def mirrored_mask(half: torch.Tensor) -> torch.Tensor:
    """Left half (..., H, W/2) -> full mask (..., H, W): the half, then its left-right mirror image.

    Column j of the result equals column W-1-j, so the mask is symmetric about the vertical axis.
    """
    return torch.cat([half, half.flip(-1)], dim=-1)


def outline_of(body: torch.Tensor) -> torch.Tensor:
    """Cells outside ``body`` (B, H, W) bool that touch it above, below, left or right: (B, H, W) bool."""
    cross = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])[None, None]
    touching = F.conv2d(body[:, None].float(), cross, padding=1)[:, 0] > 0
    return touching & ~body


def hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """HSV in [0, 1] (any broadcastable shapes) -> RGB in [0, 1] stacked on a new last axis (..., 3)."""
    h, s, v = torch.broadcast_tensors(h, s, v)
    k = (torch.tensor([5.0, 3.0, 1.0]) + 6 * h[..., None]) % 6       # the standard closed form of HSV -> RGB
    return v[..., None] - v[..., None] * s[..., None] * (torch.minimum(k, 4 - k).clamp(0, 1))


def body_masks(shapes: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random symmetric body masks (B, 16, 16) bool for template indices ``shapes`` (B,)."""
    codes = template_codes()[shapes]
    coin = torch.rand(codes.shape, generator=generator) < 0.5
    return mirrored_mask((codes == 2) | ((codes == 1) & coin))


def shading(n: int, generator: torch.Generator) -> torch.Tensor:
    """Brightness factors (n, 16, 16): lit from the top-left (darker down and to the right), +-0.05 per cell."""
    rows = torch.linspace(0, 1, GRID)[:, None]
    cols = torch.linspace(0, 1, GRID)[None, :]
    jitter = (torch.rand(n, GRID, GRID, generator=generator) - 0.5) * 0.1
    return (1.0 - 0.35 * rows - 0.2 * cols + jitter).clamp(0, 1)


def make_sprites(labels: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """One sprite per family label (N,) (index into FAMILIES): float32 (N, 3, 32, 32) in [-1, 1], seeded."""
    generator = torch.Generator().manual_seed(seed)
    n = labels.shape[0]
    shapes, palettes = labels // len(PALETTES), labels % len(PALETTES)
    body = body_masks(shapes, generator)
    outline = outline_of(body)
    hue_ranges = torch.tensor(list(PALETTES.values()))[palettes]                       # (N, 2)
    u = torch.rand(n, 3, generator=generator)
    hue = hue_ranges[:, 0] + u[:, 0] * (hue_ranges[:, 1] - hue_ranges[:, 0])
    saturation, value = 0.55 + 0.35 * u[:, 1], 0.8 + 0.2 * u[:, 2]
    brightness = value[:, None, None] * shading(n, generator)
    body_rgb = hsv_to_rgb(hue[:, None, None], saturation[:, None, None], brightness)   # (N, 16, 16, 3)
    outline_rgb = hsv_to_rgb(hue, saturation, torch.full_like(hue, 0.2))[:, None, None]
    cells = torch.ones(n, GRID, GRID, 3)                                                # white background
    cells = torch.where(body[..., None], body_rgb, cells)
    cells = torch.where(outline[..., None], outline_rgb.expand_as(cells), cells)
    pixels = cells.permute(0, 3, 1, 2).repeat_interleave(SIZE // GRID, 2).repeat_interleave(SIZE // GRID, 3)
    return pixels * 2 - 1


def load_sprites(split: str = "train", seed: int = 0) -> ImageDataset:
    """The fixed pool of 6,000 sprites (1,000 per family, made with ``seed``), split 80/20 like the digits.

    Returns an ImageDataset: images float32 (N, 3, 32, 32) in [-1, 1], labels int64 indexing FAMILIES.
    split: "train" (4,800), "test" (1,200) or "all".
    """
    require_choice(split, "split", SPLITS)
    require_int(seed, "seed", minimum=0)
    images, labels = _pool(seed)
    keep = split_indices(POOL, split, seed=seed)
    return ImageDataset(images[keep], labels[keep], FAMILIES)     # indexing copies: the cached pool stays intact


@lru_cache(maxsize=2)
def _pool(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    labels = torch.arange(POOL) % len(FAMILIES)
    return make_sprites(labels, seed), labels
