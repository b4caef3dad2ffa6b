"""Datasets as tensors (N, C, H, W) in [-1, 1], the range the model sees.

The default is scikit-learn's 8x8 handwritten digits: it ships inside the scikit-learn package,
so the course works offline, and it is small enough to train on a laptop CPU in minutes.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ._validate import require_choice

SPLITS = ("train", "test", "all")


@dataclass(frozen=True)
class ImageDataset:
    """images: float32 (N, C, H, W) in [-1, 1]; labels: int64 (N,) or None; class_names: one per label value."""
    images: torch.Tensor
    labels: torch.Tensor | None
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return self.images.shape[0]


def split_indices(n: int, split: str, test_fraction: float = 0.2, seed: int = 0) -> torch.Tensor:
    """Indices of a fixed, seeded train/test split of n items (the same seed gives the same split)."""
    require_choice(split, "split", SPLITS)
    if split == "all":
        return torch.arange(n)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_test = int(round(n * test_fraction))
    return order[:n_test] if split == "test" else order[n_test:]


def load_digits(split: str = "train", seed: int = 0) -> ImageDataset:
    """scikit-learn's 1,797 digits, 8x8 grayscale with 17 grey levels, as (N, 1, 8, 8) in [-1, 1].

    split: "train" (80 %), "test" (20 %) or "all"; the split is fixed by ``seed``.
    """
    from sklearn.datasets import load_digits as sklearn_digits

    raw = sklearn_digits()
    images = torch.as_tensor(raw.images, dtype=torch.float32)[:, None] / 16.0 * 2 - 1
    labels = torch.as_tensor(raw.target, dtype=torch.int64)
    keep = split_indices(len(labels), split, seed=seed)
    return ImageDataset(images[keep], labels[keep], tuple(str(d) for d in range(10)))
