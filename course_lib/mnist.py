"""MNIST and Fashion-MNIST from the IDX files a user already has (nothing is downloaded).

    read_idx     one IDX file (unsigned bytes) as a uint8 tensor
    load_idx     an images file (N, H, W) and an optional labels file as an ImageDataset (N, 1, H, W) in [-1, 1]
    load_mnist   the standard four files of (Fashion-)MNIST in a directory
"""
from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from ._validate import require_choice
from .data import ImageDataset
from .limits import NO_LIMITS, size_text

# The IDX format (LeCun's MNIST page): a 4-byte magic number 0x00 0x00 <dtype code> <number of dims>,
# then one big-endian int32 per dimension, then the values in row-major order.
IDX_UNSIGNED_BYTE = 0x08
GZIP_MAGIC = b"\x1f\x8b"
MAX_IDX_BYTES = 2**28      # 256 MB of values: 5 x MNIST's training images; their float32 copy takes 4 x as much
MNIST_CLASSES = tuple(str(d) for d in range(10))
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
MNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
               "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _require_file(path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    return path


def read_idx(path, max_bytes: int | None = MAX_IDX_BYTES) -> torch.Tensor:
    """Read one IDX file of unsigned bytes (raw or gzip-compressed, detected from its first bytes).

    Returns a uint8 tensor with the dimensions stored in the header, e.g. (N, 28, 28) for images
    and (N,) for labels. Raises ValueError when the header or the length is not what IDX requires, or when
    the header declares more than ``max_bytes`` values (None: no limit); the file is read as a stream and the
    header checked first, so a small compressed file that would unpack to gigabytes is refused unread.
    """
    path = _require_file(path)
    with open(path, "rb") as file:
        compressed = file.read(2) == GZIP_MAGIC
    try:
        with (gzip.open if compressed else open)(path, "rb") as file:
            magic = file.read(4)
            if len(magic) < 4 or magic[0] != 0 or magic[1] != 0:
                raise ValueError(f"{path}: not an IDX file; expected a magic number starting with bytes 0x00 "
                                 f"0x00, got {magic.hex(' ') or 'an empty file'}")
            dtype_code, ndim = magic[2], magic[3]
            if dtype_code != IDX_UNSIGNED_BYTE:
                raise ValueError(f"{path}: expected IDX data type 0x08 (unsigned byte), got 0x{dtype_code:02x}")
            sizes = file.read(4 * ndim)
            if ndim == 0 or len(sizes) < 4 * ndim:
                raise ValueError(f"{path}: truncated IDX header; expected {ndim} dimension sizes after the magic "
                                 f"number")
            dims = struct.unpack(f">{ndim}I", sizes)
            expected = math.prod(dims)
            if max_bytes is not None and expected > max_bytes:
                raise ValueError(f"{path}: the IDX header declares dimensions {dims}, {size_text(expected)} of "
                                 f"pixels, above the limit of {size_text(max_bytes)} (MNIST's training images "
                                 f"take 45 MB); for a larger file add {NO_LIMITS} (or read_idx(max_bytes=None))")
            data = file.read(expected + 1)      # one byte more than promised reveals a file that is too long
    except (OSError, EOFError, zlib.error) as error:
        problem = "looks gzip-compressed but cannot be decompressed" if compressed else "cannot be read"
        raise ValueError(f"{path}: {problem} ({error})") from None
    if len(data) != expected:
        more = "more than " if len(data) > expected else ""
        raise ValueError(f"{path}: IDX header promises dimensions {dims} ({expected} bytes of values), but the "
                         f"file holds {more}{len(data)}")
    values = np.frombuffer(data, dtype=np.uint8).reshape(dims)
    return torch.from_numpy(values.copy())


def load_idx(images_path, labels_path=None, class_names: tuple[str, ...] | None = None,
             max_bytes: int | None = MAX_IDX_BYTES) -> ImageDataset:
    """An images IDX file (N, H, W) and an optional labels IDX file (N,) as (N, 1, H, W) in [-1, 1].

    class_names default to the label values as strings ("0", "1", ...). max_bytes: see ``read_idx``.
    """
    pixels = read_idx(images_path, max_bytes)
    if pixels.ndim != 3:
        raise ValueError(f"{images_path}: expected an images file with 3 dimensions (N, H, W), "
                         f"got dimensions {tuple(pixels.shape)}")
    if len(pixels) == 0:
        raise ValueError(f"{images_path}: the file holds no images (N = 0)")
    images = pixels.to(torch.float32)[:, None] / 255.0 * 2 - 1
    if labels_path is None:
        return ImageDataset(images, None, tuple(class_names or ()))
    labels = read_idx(labels_path, max_bytes)
    if labels.ndim != 1:
        raise ValueError(f"{labels_path}: expected a labels file with 1 dimension (N,), "
                         f"got dimensions {tuple(labels.shape)}")
    if len(labels) != len(images):
        raise ValueError(f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels")
    labels = labels.to(torch.int64)
    names = class_names or tuple(str(v) for v in range(int(labels.max()) + 1))
    if int(labels.max()) >= len(names):
        raise ValueError(f"{labels_path}: label {int(labels.max())} has no class name "
                         f"(got {len(names)} class names)")
    return ImageDataset(images, labels, tuple(names))


def load_mnist(directory, split: str = "train", fashion: bool = False,
               max_bytes: int | None = MAX_IDX_BYTES) -> ImageDataset:
    """MNIST or Fashion-MNIST from the four standard files a user already has in ``directory``.

    Looks for e.g. ``train-images-idx3-ubyte`` or ``train-images-idx3-ubyte.gz`` (split "train")
    and ``t10k-...`` (split "test"). Nothing is downloaded. Returns (N, 1, 28, 28) in [-1, 1].
    max_bytes: see ``read_idx``.
    """
    require_choice(split, "split", tuple(MNIST_FILES))
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"no such directory: {directory}")
    found = []
    for stem in MNIST_FILES[split]:
        candidates = [directory / stem, directory / f"{stem}.gz"]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise FileNotFoundError(f"no file {candidates[0]} or {candidates[1]}")
        found.append(path)
    return load_idx(*found, class_names=FASHION_MNIST_CLASSES if fashion else MNIST_CLASSES, max_bytes=max_bytes)
