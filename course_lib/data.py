"""Datasets as tensors (N, C, H, W) in [-1, 1], the range the model sees.

The default is scikit-learn's 8x8 handwritten digits: it ships inside the scikit-learn package,
so the course works offline, and it is small enough to train on a laptop CPU in minutes.
Bigger data comes from files a user already has, never from a download:
MNIST / Fashion-MNIST IDX files (``mnist.load_mnist``, ``mnist.load_idx``) and folders of PNG/JPEG pictures
(``load_image_folder`` in memory, ``ImageFolder`` read lazily by DataLoader workers).

Every dataset is a ``torch.utils.data.Dataset`` whose ``__getitems__`` returns a whole batch
(images (B, C, H, W), labels (B,) or None); ``data_loader`` wraps one in a ``DataLoader`` with a seeded
``EpochShuffle`` sampler (``distributed.ShardSampler`` deals each process its share), and ``iterate_batches`` deals
its batches for as many epochs as wanted.
"""
from __future__ import annotations

import importlib.util
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from ._validate import require_choice, require_int

SPLITS = ("train", "test", "all")


NO_LABEL = -1     # the label of an item of an unlabelled dataset


@dataclass(frozen=True)
class ImageDataset(Dataset):
    """A dataset in memory. images: float32 (N, C, H, W) in [-1, 1]; labels: int64 (N,) or None;
    class_names: one per label value. Item i is (images[i], labels[i]) (label NO_LABEL when unlabelled)."""
    images: torch.Tensor
    labels: torch.Tensor | None
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.images.shape[1:])

    def __getitem__(self, i):
        return self.images[i], NO_LABEL if self.labels is None else self.labels[i]

    def __getitems__(self, indices):
        """A whole batch by one indexing: (images (B, C, H, W), labels (B,) or None)."""
        index = torch.as_tensor(indices, dtype=torch.int64)
        return self.images[index], None if self.labels is None else self.labels[index]


def split_indices(n: int, split: str, test_fraction: float = 0.2, seed: int = 0) -> torch.Tensor:
    """Indices of a fixed, seeded train/test split of n items (the same seed gives the same split)."""
    require_choice(split, "split", SPLITS)
    if split == "all":
        return torch.arange(n)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_test = int(round(n * test_fraction))
    return order[:n_test] if split == "test" else order[n_test:]


def digits_file() -> Path:
    """scikit-learn's copy of the UCI handwritten digits, sklearn/datasets/data/digits.csv.gz: one digit per row,
    its 64 pixels (0..16, row by row) and then its label. ``sklearn.datasets.load_digits`` reads this file; it is
    found here without importing scikit-learn, whose import (with SciPy's) takes about 2 s in every kernel, test
    worker and training process that loads the digits."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("the digits ship with scikit-learn: pip install scikit-learn")
    return Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"


def load_digits(split: str = "train", seed: int = 0) -> ImageDataset:
    """scikit-learn's 1,797 digits, 8x8 grayscale with 17 grey levels, as (N, 1, 8, 8) in [-1, 1].

    split: "train" (80 %), "test" (20 %) or "all"; the split is fixed by ``seed``.
    """
    raw = np.loadtxt(digits_file(), delimiter=",")
    images = torch.as_tensor(raw[:, :-1].reshape(-1, 1, 8, 8), dtype=torch.float32) / 16.0 * 2 - 1
    labels = torch.as_tensor(raw[:, -1], dtype=torch.int64)
    keep = split_indices(len(labels), split, seed=seed)
    return ImageDataset(images[keep], labels[keep], tuple(str(d) for d in range(10)))


# ---------------------------------------------------------------- image folders
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
CHANNEL_MODES = {1: "L", 3: "RGB"}


def _image_files(directory: Path) -> list[Path]:
    # Hidden files are skipped: macOS leaves "._name.png" companions that are not pictures.
    return sorted(p for p in directory.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))


def max_picture_side(size: int) -> int:
    """The largest width or height a picture may declare when training at ``size`` pixels (a memory bound:
    padding to a square costs side**2 pixels)."""
    return max(6000, 16 * size)


def _check_header(path: Path, size: int) -> None:
    """ValueError naming ``path`` unless its header reads as a picture of a bounded size (nothing is decoded)."""
    try:
        with warnings.catch_warnings():    # Pillow's bomb warning: the size is judged below, in one line
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as picture:
                width, height = picture.size
    except (OSError, Image.DecompressionBombError) as error:
        raise ValueError(f"{path}: not a readable PNG/JPEG image ({error})") from None
    if max(width, height) > max_picture_side(size):
        raise ValueError(f"{path}: {width}x{height} pixels is too large to train at {size} pixels (at most "
                         f"{max_picture_side(size)} a side); shrink it first")


def _load_picture(path: Path, size: int, channels: int) -> torch.Tensor:
    """One picture as (C, size, size) in [-1, 1]: transparency composited on white, padded square, resized."""
    try:
        with Image.open(path) as picture:
            if picture.mode.startswith("I"):   # 16-bit grey PNG (0..65535): convert("RGBA") would clip it to white
                grey = np.asarray(picture, dtype=np.float64) / 257
                picture = Image.fromarray(grey.round().clip(0, 255).astype(np.uint8))
            picture = picture.convert("RGBA")
    except (OSError, Image.DecompressionBombError) as error:
        raise ValueError(f"{path}: not a readable PNG/JPEG image ({error})") from None
    white = Image.new("RGBA", picture.size, (255, 255, 255, 255))
    picture = Image.alpha_composite(white, picture).convert(CHANNEL_MODES[channels])
    # Pad to a square on white before resizing, so that the subject is not stretched.
    side = max(picture.size)
    square = Image.new(picture.mode, (side, side), 255 if channels == 1 else (255, 255, 255))
    square.paste(picture, ((side - picture.width) // 2, (side - picture.height) // 2))
    square = square.resize((size, size), Image.Resampling.LANCZOS)
    pixels = torch.from_numpy(np.asarray(square, dtype=np.uint8).copy()).to(torch.float32)
    pixels = pixels[None] if channels == 1 else pixels.permute(2, 0, 1)
    return pixels / 255.0 * 2 - 1


@dataclass(frozen=True)
class ImageFolder(Dataset):
    """Pictures on disk, each read and resized when it is asked for, so DataLoader workers load them in parallel.

    files: one path per item; labels: int64 (N,) or None; class_names; items are (channels, size, size) in [-1, 1].
    """
    files: tuple[Path, ...]
    labels: torch.Tensor | None
    class_names: tuple[str, ...]
    size: int
    channels: int

    def __len__(self) -> int:
        return len(self.files)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return self.channels, self.size, self.size

    def __getitem__(self, i):
        return _load_picture(self.files[i], self.size, self.channels), NO_LABEL if self.labels is None else self.labels[i]

    def __getitems__(self, indices):
        images = torch.stack([_load_picture(self.files[i], self.size, self.channels) for i in indices])
        return images, None if self.labels is None else self.labels[torch.as_tensor(indices, dtype=torch.int64)]


def image_folder(directory, size: int = 32, channels: int = 3, split: str = "all", seed: int = 0) -> ImageFolder:
    """The PNG/JPEG pictures in ``directory`` as a lazy ``ImageFolder`` of (channels, size, size) items in [-1, 1]
    (channels 3 = RGB, 1 = grey).

    Either the pictures sit directly in ``directory`` (labels None), or in one sub-folder per class
    (labels index the sorted sub-folder names, which become class_names). Transparent pixels are
    composited on white (sprites usually have a transparent background); each picture is padded to a
    square on white, then resized. split: "all", or a seeded "train"/"test" split as in ``split_indices``.
    """
    require_int(size, "size", minimum=1)
    require_choice(channels, "channels", tuple(CHANNEL_MODES))
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"no such directory: {directory}")
    loose = _image_files(directory)
    class_dirs = [d for d in sorted(directory.iterdir())
                  if d.is_dir() and not d.name.startswith(".") and _image_files(d)]   # not .ipynb_checkpoints
    if loose and class_dirs:
        raise ValueError(f"{directory}: holds pictures both directly ({loose[0].name}, ...) and in sub-folders "
                         f"({class_dirs[0].name}/, ...); expected one layout or the other")
    if not loose and not class_dirs:
        entries = [p.name for p in sorted(directory.iterdir())]
        found = f"found {len(entries)} other entries ({', '.join(entries[:3])}{', ...' if len(entries) > 3 else ''})" \
            if entries else "it is empty"
        raise ValueError(f"{directory}: no pictures found ({found}); expected files ending in "
                         f"{', '.join(IMAGE_EXTENSIONS)}, directly or in one sub-folder per class")
    if loose:
        files, labels, class_names = loose, None, ()
    else:
        files, label_list = [], []
        for index, class_dir in enumerate(class_dirs):
            class_files = _image_files(class_dir)
            files += class_files
            label_list += [index] * len(class_files)
        labels, class_names = torch.tensor(label_list, dtype=torch.int64), tuple(d.name for d in class_dirs)
    for file in files:   # every header before any work starts (workers would report it late and at length)
        _check_header(file, size)
    keep = split_indices(len(files), split, seed=seed)
    return ImageFolder(tuple(files[i] for i in keep.tolist()), None if labels is None else labels[keep],
                       class_names, size, channels)


def load_image_folder(directory, size: int = 32, channels: int = 3, split: str = "all",
                      seed: int = 0) -> ImageDataset:
    """``image_folder(...)`` read whole into memory: an ImageDataset of (N, channels, size, size) in [-1, 1]."""
    folder = image_folder(directory, size, channels, split, seed)
    images, labels = folder.__getitems__(range(len(folder)))
    return ImageDataset(images, labels, folder.class_names)


# ---------------------------------------------------------------- mini-batches
class EpochShuffle(Sampler):
    """Indices 0..n-1 in a fresh seeded order every epoch: epoch k is the k-th ``torch.randperm(n)`` drawn from one
    generator seeded with ``seed``, so the same seed gives the same batches."""

    def __init__(self, n: int, seed: int = 0):
        self.n, self.generator, self.skip = n, torch.Generator().manual_seed(seed), 0

    def __iter__(self):
        order, self.skip = torch.randperm(self.n, generator=self.generator)[self.skip:], 0
        return iter(order.tolist())

    def __len__(self) -> int:
        return self.n

    def fast_forward(self, epochs: int, items: int) -> None:
        """Skip whole epochs and then the first ``items`` indices of the next one, without loading any data."""
        for _ in range(epochs):
            torch.randperm(self.n, generator=self.generator)
        self.skip = items


def _as_batch(batch):
    """Our datasets' ``__getitems__`` already returns the batch: nothing left to collate."""
    return batch


def data_loader(dataset: Dataset, batch_size: int, seed: int = 0, drop_last: bool = True, num_workers: int = 0,
                sampler: Sampler | None = None, pin_memory: bool = False) -> DataLoader:
    """A DataLoader dealing (images, labels or None) batches of ``dataset`` in a seeded ``EpochShuffle`` order
    (or ``sampler``'s, e.g. ``distributed.ShardSampler``). num_workers > 0 loads batches in worker processes;
    pin_memory puts batches in page-locked memory, from which they copy to a CUDA GPU asynchronously."""
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler or EpochShuffle(len(dataset), seed),
                      drop_last=drop_last, num_workers=num_workers, collate_fn=_as_batch,
                      persistent_workers=num_workers > 0, pin_memory=pin_memory)


def iterate_batches(dataset: Dataset, batch_size: int, seed: int = 0, epochs: int | None = None,
                    drop_last: bool = True, start: int = 0, num_workers: int = 0, sampler: Sampler | None = None,
                    pin_memory: bool = False):
    """Yield (images, labels) mini-batches in a seeded random order, reshuffled every epoch (``data_loader``).

    labels is None for an unlabelled dataset. epochs=None repeats forever (a training loop counts
    steps, not epochs). drop_last keeps every batch the same size. The same seed gives the same batches.
    start: begin at that batch (a resumed run), without loading the batches before it.
    sampler: an ``EpochShuffle`` of its own (e.g. a rank's ``distributed.ShardSampler``) instead of the default.
    """
    require_int(batch_size, "batch_size", minimum=1)
    n = len(dataset)
    if n == 0:
        raise ValueError("the dataset holds no images: there is nothing to draw batches from")
    if drop_last and batch_size > n:
        raise ValueError(f"batch_size {batch_size} is larger than the dataset ({n} images) with drop_last=True")
    loader = data_loader(dataset, batch_size, seed, drop_last, num_workers, sampler, pin_memory)
    epoch, batch = divmod(start, len(loader))
    loader.sampler.fast_forward(epoch, batch * batch_size)
    while epochs is None or epoch < epochs:
        yield from loader
        epoch += 1
