"""Datasets: digits offline, IDX files (raw and gzip) and picture folders written by the tests themselves."""
import gzip
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from course_lib import data, mnist


def write_idx(path, values: np.ndarray, compress: bool = False, dtype_code: int = 0x08) -> None:
    """Write an IDX file: magic 0x00 0x00 <dtype> <ndim>, big-endian int32 dimensions, then the bytes."""
    payload = bytes([0, 0, dtype_code, values.ndim]) + struct.pack(f">{values.ndim}I", *values.shape)
    payload += values.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)


def tiny_mnist(directory, split="train", n=5, compress=False):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    pixels[0] = 0
    pixels[1] = 255
    labels = np.arange(n) % 10
    prefix = "train" if split == "train" else "t10k"
    suffix = ".gz" if compress else ""
    write_idx(directory / f"{prefix}-images-idx3-ubyte{suffix}", pixels, compress)
    write_idx(directory / f"{prefix}-labels-idx1-ubyte{suffix}", labels, compress)
    return pixels, labels


# ---------------------------------------------------------------- digits
def test_digits_shapes_range_and_split():
    train, test, everything = data.load_digits("train"), data.load_digits("test"), data.load_digits("all")
    assert everything.images.shape == (1797, 1, 8, 8)
    assert len(train) + len(test) == 1797 and len(test) == round(0.2 * 1797)
    assert train.images.dtype == torch.float32 and train.labels.dtype == torch.int64
    assert train.images.min() == -1 and train.images.max() == 1
    assert set(test.labels.tolist()) == set(range(10))
    # train and test are disjoint: no test image appears among the training images (as an index set)
    train_idx, test_idx = data.split_indices(1797, "train"), data.split_indices(1797, "test")
    assert not set(train_idx.tolist()) & set(test_idx.tolist())


def test_digits_are_scikit_learns_read_without_importing_it():
    script = ("import sys; from course_lib import data; digits = data.load_digits('all'); "
              "print(digits.images.sum().item(), 'sklearn' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[1] == "False", "loading the digits imported scikit-learn"
    from sklearn.datasets import load_digits
    raw = load_digits()
    everything = data.load_digits("all")
    assert torch.equal(everything.images, torch.as_tensor(raw.images, dtype=torch.float32)[:, None] / 16 * 2 - 1)
    assert torch.equal(everything.labels, torch.as_tensor(raw.target))


def test_digits_split_is_deterministic_and_depends_on_seed():
    assert torch.equal(data.load_digits("test").images, data.load_digits("test").images)
    assert not torch.equal(data.load_digits("test", seed=0).labels, data.load_digits("test", seed=1).labels)


# ---------------------------------------------------------------- IDX
@pytest.mark.parametrize("compress", [False, True])
def test_mnist_from_idx_files(tmp_path, compress):
    pixels, labels = tiny_mnist(tmp_path, "test", compress=compress)
    dataset = mnist.load_mnist(tmp_path, split="test")
    assert dataset.images.shape == (5, 1, 28, 28) and dataset.images.dtype == torch.float32
    assert torch.all(dataset.images[0] == -1) and torch.all(dataset.images[1] == 1)
    assert torch.allclose(dataset.images[2, 0], torch.from_numpy(pixels[2]).float() / 255 * 2 - 1)
    assert dataset.labels.tolist() == labels.tolist()
    assert dataset.class_names == mnist.MNIST_CLASSES


def test_fashion_names_and_images_without_labels(tmp_path):
    tiny_mnist(tmp_path, "train")
    assert mnist.load_mnist(tmp_path, fashion=True).class_names[9] == "Ankle boot"
    alone = mnist.load_idx(tmp_path / "train-images-idx3-ubyte")
    assert alone.labels is None and alone.images.shape == (5, 1, 28, 28)


def test_read_idx_keeps_header_dimensions(tmp_path):
    values = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "cube", values)
    assert torch.equal(mnist.read_idx(tmp_path / "cube"), torch.from_numpy(values))


def test_idx_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        mnist.read_idx(tmp_path / "nowhere")
    (tmp_path / "png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20))
    with pytest.raises(ValueError, match="magic number"):
        mnist.read_idx(tmp_path / "png")
    write_idx(tmp_path / "floats", np.zeros((2, 2)), dtype_code=0x0D)
    with pytest.raises(ValueError, match="0x08"):
        mnist.read_idx(tmp_path / "floats")
    write_idx(tmp_path / "whole", np.zeros((3, 28, 28)))
    (tmp_path / "cut").write_bytes((tmp_path / "whole").read_bytes()[:-10])
    with pytest.raises(ValueError, match=r"promises dimensions \(3, 28, 28\)"):
        mnist.read_idx(tmp_path / "cut")
    (tmp_path / "cut.gz").write_bytes(gzip.compress((tmp_path / "whole").read_bytes())[:-8])
    with pytest.raises(ValueError, match="gzip"):
        mnist.read_idx(tmp_path / "cut.gz")
    (tmp_path / "short").write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(ValueError, match="truncated IDX header"):
        mnist.read_idx(tmp_path / "short")


def test_idx_count_and_rank_mismatch(tmp_path):
    write_idx(tmp_path / "images", np.zeros((4, 28, 28)))
    write_idx(tmp_path / "labels", np.zeros(3))
    with pytest.raises(ValueError, match="4 images but .* 3 labels"):
        mnist.load_idx(tmp_path / "images", tmp_path / "labels")
    with pytest.raises(ValueError, match=r"3 dimensions \(N, H, W\)"):
        mnist.load_idx(tmp_path / "labels")


def test_mnist_missing_files_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte"):
        mnist.load_mnist(tmp_path, split="test")
    with pytest.raises(FileNotFoundError, match="no such directory"):
        mnist.load_mnist(tmp_path / "absent")


# ---------------------------------------------------------------- picture folders
def save_sprite(path, colour, size=(12, 12), alpha=255, mode="RGBA"):
    Image.new("RGBA", size, colour + (alpha,)).convert(mode).save(path)


def test_flat_folder_composites_transparency_on_white(tmp_path):
    save_sprite(tmp_path / "a.png", (255, 0, 0))                 # opaque red
    save_sprite(tmp_path / "b.png", (0, 0, 0), alpha=0)          # fully transparent: must become white
    save_sprite(tmp_path / "c.jpg", (0, 0, 255), mode="RGB")     # JPEG, no alpha
    (tmp_path / "notes.txt").write_text("not a picture")
    (tmp_path / "._a.png").write_bytes(b"macOS metadata, not a PNG")
    dataset = data.load_image_folder(tmp_path, size=8)
    assert dataset.images.shape == (3, 3, 8, 8) and dataset.labels is None
    red, clear, blue = dataset.images
    assert torch.allclose(red[:, 4, 4], torch.tensor([1.0, -1.0, -1.0]))
    assert torch.all(clear == 1)
    assert blue[2].mean() > 0.9 and blue[0].mean() < -0.8      # JPEG is lossy: approximately blue


def test_non_square_pictures_are_padded_with_white_not_stretched(tmp_path):
    save_sprite(tmp_path / "wide.png", (0, 0, 0), size=(16, 8))
    grey = data.load_image_folder(tmp_path, size=16, channels=1).images[0, 0]
    assert grey.shape == (16, 16)
    assert torch.all(grey[0] == 1) and torch.all(grey[-1] == 1)   # white bands above and below
    assert torch.all(grey[8] == -1)                               # black subject in the middle


def test_class_subfolders_give_labels_and_split(tmp_path):
    for name, colour in (("cats", (10, 10, 10)), ("dogs", (200, 200, 200))):
        (tmp_path / name).mkdir()
        for i in range(5):
            save_sprite(tmp_path / name / f"{i}.png", colour)
    everything = data.load_image_folder(tmp_path, size=4, channels=1)
    assert everything.class_names == ("cats", "dogs")
    assert everything.labels.tolist() == [0] * 5 + [1] * 5
    train = data.load_image_folder(tmp_path, size=4, channels=1, split="train", seed=3)
    test = data.load_image_folder(tmp_path, size=4, channels=1, split="test", seed=3)
    assert len(train) == 8 and len(test) == 2
    assert torch.equal(test.labels, data.load_image_folder(tmp_path, size=4, channels=1, split="test", seed=3).labels)


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        data.load_image_folder(tmp_path / "missing")
    with pytest.raises(ValueError, match="no pictures found"):
        data.load_image_folder(tmp_path)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ValueError, match="broken.png"):
        data.load_image_folder(tmp_path)
    (tmp_path / "broken.png").unlink()
    save_sprite(tmp_path / "loose.png", (0, 0, 0))
    (tmp_path / "class").mkdir()
    save_sprite(tmp_path / "class" / "x.png", (0, 0, 0))
    with pytest.raises(ValueError, match="both directly"):
        data.load_image_folder(tmp_path)
    with pytest.raises(ValueError, match="channels"):
        data.load_image_folder(tmp_path / "class", channels=2)


# ---------------------------------------------------------------- batches
def test_iterate_batches_is_seeded_and_covers_each_epoch():
    dataset = data.ImageDataset(torch.arange(10.0).reshape(10, 1, 1, 1), torch.arange(10), ())
    first = [y.tolist() for _, y in data.iterate_batches(dataset, 3, seed=1, epochs=2)]
    again = [y.tolist() for _, y in data.iterate_batches(dataset, 3, seed=1, epochs=2)]
    other = [y.tolist() for _, y in data.iterate_batches(dataset, 3, seed=2, epochs=2)]
    assert first == again and first != other
    assert len(first) == 6 and all(len(batch) == 3 for batch in first)    # 10 // 3 per epoch, remainder dropped
    assert len(set(sum(first[:3], []))) == 9                               # no repeats within an epoch
    assert first[:3] != first[3:]                                          # reshuffled between epochs
    images, labels = next(data.iterate_batches(dataset, 4, seed=0))
    assert torch.equal(images.flatten().long(), labels)                    # images and labels stay paired
    everything = [y for _, y in data.iterate_batches(dataset, 4, seed=0, epochs=1, drop_last=False)]
    assert sorted(torch.cat(everything).tolist()) == list(range(10))


def test_iterate_batches_without_labels_and_bad_size():
    dataset = data.ImageDataset(torch.zeros(5, 1, 2, 2), None, ())
    assert next(data.iterate_batches(dataset, 2))[1] is None
    with pytest.raises(ValueError, match="larger than the dataset"):
        next(data.iterate_batches(dataset, 6))
