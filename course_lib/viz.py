"""Pictures: image grids, schedule plots and small widgets used across the notebooks."""
from __future__ import annotations

import numpy as np
import torch

from ._validate import require_tensor


def to_display(images: torch.Tensor) -> torch.Tensor:
    """Map model-range images [-1, 1] to display range [0, 1] (clamped)."""
    require_tensor(images, "images")
    return ((images.detach().float().cpu() + 1) / 2).clamp(0, 1)


def image_grid(images: torch.Tensor, ncols: int | None = None, pad: int = 1, scale: int = 1,
               pad_value: float = 1.0) -> np.ndarray:
    """Tile (N, C, H, W) images in [-1, 1] into one array in [0, 1] for imshow or a PNG file.

    Each image is enlarged ``scale`` times by nearest neighbour (every pixel becomes a sharp
    scale x scale square, no blur), then the tiles are laid out row by row, ``ncols`` per row (default: a
    square), with ``pad`` pixels of ``pad_value`` between them. Shape (rows*(scale H + pad) - pad,
    cols*(scale W + pad) - pad, C).
    """
    require_tensor(images, "images")
    if images.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
    if not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive int, got {scale!r}")
    n, c, h, w = images.shape
    h, w = h * scale, w * scale
    ncols = ncols or int(np.ceil(np.sqrt(n)))
    nrows = int(np.ceil(n / ncols))
    grid = np.full((nrows * (h + pad) - pad, ncols * (w + pad) - pad, c), pad_value, dtype=np.float32)
    pixels = to_display(images).permute(0, 2, 3, 1).numpy().repeat(scale, axis=1).repeat(scale, axis=2)
    for i in range(n):
        r, col = divmod(i, ncols)
        grid[r * (h + pad): r * (h + pad) + h, col * (w + pad): col * (w + pad) + w] = pixels[i]
    return grid


# Smallest on-screen size of one image in a grid drawn by show_images on a new figure: an 8x8 digit
# shown smaller than this is a blur of a few screen pixels per image pixel.
MIN_IMAGE_PIXELS = 48
MAX_FIGURE_INCHES = 16.0


def grid_figsize(grid_shape: tuple, image_side: int, dpi: float, title: bool = False) -> tuple[float, float]:
    """Figure size (inches) that shows a grid of (rows*H, cols*W) pixels with each image >= MIN_IMAGE_PIXELS
    on screen at ``dpi``; never wider or taller than MAX_FIGURE_INCHES (huge grids shrink to fit)."""
    height, width = grid_shape[:2]
    screen_per_pixel = max(MIN_IMAGE_PIXELS / image_side, 1.0)
    fit = min(1.0, MAX_FIGURE_INCHES * dpi / (screen_per_pixel * max(height, width)))
    scale = screen_per_pixel * fit / dpi
    return width * scale, height * scale + (0.3 if title else 0.0)


def show_images(images: torch.Tensor, ax=None, ncols: int | None = None, title: str | None = None):
    """Draw an image grid on ``ax``; grayscale images use the gray colormap.

    With ``ax=None`` a new figure is sized so that each image is at least MIN_IMAGE_PIXELS screen pixels
    wide at the current ``figure.dpi`` (48 px for an 8x8 digit: 6 screen pixels per pixel).
    """
    import matplotlib.pyplot as plt

    grid = image_grid(images, ncols)
    if ax is None:
        dpi = plt.rcParams["figure.dpi"]
        width, height = grid_figsize(grid.shape, min(images.shape[-2:]), dpi, title=bool(title))
        fig = plt.figure(figsize=(width, height))
        ax = fig.add_axes((0, 0, 1, 1 - (0.3 / height if title else 0.0)))
    ax.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def animate_images(frames: torch.Tensor, titles=None, ncols: int | None = None, interval: int = 120,
                   size: float = 3.0):
    """A matplotlib animation of image grids, one frame per leading index: frames (F, N, C, H, W) in [-1, 1].

    titles: one string per frame (e.g. the timestep). Show it in a notebook with
    ``IPython.display.HTML(animation.to_jshtml())``, which needs no ffmpeg.
    """
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation

    require_tensor(frames, "frames")
    if frames.ndim != 5 or frames.shape[0] == 0:
        raise ValueError(f"frames must have shape (F, N, C, H, W) with F >= 1, got {tuple(frames.shape)}")
    if titles is not None and len(titles) != frames.shape[0]:
        raise ValueError(f"titles must hold one string per frame ({frames.shape[0]}), got {len(titles)}")
    grids = [image_grid(frame, ncols) for frame in frames]
    fig, ax = plt.subplots(figsize=(size, size))
    picture = ax.imshow(grids[0][..., 0] if grids[0].shape[-1] == 1 else grids[0], cmap="gray", vmin=0, vmax=1,
                        interpolation="nearest")
    ax.set_axis_off()

    def draw(index):
        grid = grids[index]
        picture.set_data(grid[..., 0] if grid.shape[-1] == 1 else grid)
        if titles is not None:
            ax.set_title(titles[index])
        return (picture,)

    animation = FuncAnimation(fig, draw, frames=len(grids), interval=interval, blit=False)
    plt.close(fig)   # the animation is shown as HTML; a static copy of the first frame would be noise
    return animation


def animate_points(frames: torch.Tensor, titles=None, limit: float = 3.5, interval: int = 120, size: float = 3.5,
                   background: torch.Tensor | None = None):
    """A matplotlib animation of 2-D particles, one frame per leading index: frames (F, N, 2).

    background: optional (M, 2) points drawn faintly behind every frame (e.g. exact samples of the target).
    Axes span [-limit, limit]. Show it with ``IPython.display.HTML(animation.to_jshtml())``.
    """
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation

    require_tensor(frames, "frames")
    if frames.ndim != 3 or frames.shape[-1] != 2 or frames.shape[0] == 0:
        raise ValueError(f"frames must have shape (F, N, 2) with F >= 1, got {tuple(frames.shape)}")
    if titles is not None and len(titles) != frames.shape[0]:
        raise ValueError(f"titles must hold one string per frame ({frames.shape[0]}), got {len(titles)}")
    points = frames.detach().float().cpu().numpy()
    fig, ax = plt.subplots(figsize=(size, size))
    if background is not None:
        ax.scatter(*background.detach().float().cpu().numpy().T, s=2, color="lightgray")
    scatter = ax.scatter(*points[0].T, s=3)
    ax.set(xlim=(-limit, limit), ylim=(-limit, limit), aspect="equal")

    def draw(index):
        scatter.set_offsets(points[index])
        if titles is not None:
            ax.set_title(titles[index])
        return (scatter,)

    animation = FuncAnimation(fig, draw, frames=len(points), interval=interval, blit=False)
    plt.close(fig)
    return animation
