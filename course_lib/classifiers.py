"""The small classifiers behind the sample-quality metrics (metrics.py, sprite_metrics.py), trained here, offline.

    DigitsClassifier             a small CNN for (N, 1, 8, 8) digits in [-1, 1]: (N, 64) features, (N, 10) logits
    non_digits                   images that are no digit (noise, shuffled pixels, blank paper): outliers to doubt
    shift_by_one_pixel           the augmentation of the 1,437 training digits
    train_with_outlier_exposure  Adam on cross-entropy + low confidence on outliers (Hendrycks et al. 2019), seeded;
                                 shared with the sprites' classifier
    train_classifier             the digits classifier, from the digits train split; accuracy on the test split
    save_classifier / load_classifier   the weights with their test accuracy, seed and command; cached loading
    classifier_command           ``--train-classifier``: train a metrics classifier (seeded) and save it

The digits classifier ships as ``assets/digits_classifier.pt``, made by::

    python -m course_lib.metrics --train-classifier

(seeded, single-threaded, a few seconds on a laptop CPU). When the file is missing,
``load_classifier`` trains it the same way and tries to save it there.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ._io import write_atomically
from .data import ImageDataset, iterate_batches, load_digits

CLASSIFIER_ASSET = Path(__file__).resolve().parent / "assets" / "digits_classifier.pt"
TRAIN_COMMAND = "python -m course_lib.metrics --train-classifier"
NUM_CLASSES = 10


class DigitsClassifier(nn.Module):
    """A small CNN for (N, 1, 8, 8) digits in [-1, 1]: two 3x3 convs, a 2x2 max-pool, a 64-unit feature layer.

    ``features(x)`` returns the (N, 64) penultimate activations used by the Fréchet distance;
    ``forward(x)`` the (N, 10) class logits.
    """

    feature_dim = 64

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.hidden = nn.Linear(32 * 4 * 4, self.feature_dim)
        self.head = nn.Linear(self.feature_dim, NUM_CLASSES)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv1(x))
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        return F.relu(self.hidden(h.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# ---------------------------------------------------------------- the classifier: training, saving, loading
def non_digits(digits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Images that are no digit, one per input digit (N, 1, 8, 8): the classifier must learn to doubt them.

    A third each: uniform noise in [-1, 1]; the digit's own pixels shuffled (same ink, no shape);
    a constant image (blank paper, grey or solid ink).
    """
    n = digits.shape[0]
    noise = torch.rand(digits.shape, generator=generator) * 2 - 1
    order = torch.argsort(torch.rand(n, 64, generator=generator), dim=1)
    shuffled = digits.flatten(1).gather(1, order).reshape(digits.shape)
    constant = (torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1).expand(digits.shape)
    kind = torch.randint(0, 3, (n, 1, 1, 1), generator=generator)
    return torch.where(kind == 0, noise, torch.where(kind == 1, shuffled, constant))


def shift_by_one_pixel(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The batch (N, 1, 8, 8) shifted by one random (dy, dx) in {-1, 0, 1}^2 on a background of -1 (blank paper),
    so that no ink wraps around the edge: a cheap augmentation of 1,437 training digits."""
    dy, dx = torch.randint(-1, 2, (2,), generator=generator).tolist()
    return F.pad(images, (1, 1, 1, 1), value=-1.0)[:, :, 1 + dy:9 + dy, 1 + dx:9 + dx]


def train_with_outlier_exposure(model: nn.Module, train: ImageDataset, outliers, seed: int, epochs: int,
                                batch_size: int, lr: float, augment=None) -> nn.Module:
    """Train a classifier (the digits' and the sprites') with Adam; returns it in eval mode.

    Loss per batch: cross-entropy on the (optionally ``augment``-ed) images plus, on as many
    ``outliers(images, generator)`` (images that belong to no class), cross-entropy to the uniform
    distribution, so that noise and blank images get low confidence instead of an arbitrary confident class
    ("outlier exposure", Hendrycks et al. 2019). Deterministic for a given seed on the CPU: weights from
    torch.manual_seed(seed) before the call, batches from ``iterate_batches(seed=seed)``, one thread
    (multi-threaded reductions may sum in another order).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        generator = torch.Generator().manual_seed(seed)
        for images, labels in iterate_batches(train, batch_size, seed=seed, epochs=epochs):
            inputs = augment(images, generator) if augment else images
            class_loss = F.cross_entropy(model(inputs), labels)
            outlier_loss = -F.log_softmax(model(outliers(images, generator)), dim=1).mean()
            optimizer.zero_grad()
            (class_loss + outlier_loss).backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def train_classifier(seed: int = 0, epochs: int = 30, batch_size: int = 64, lr: float = 2e-3):
    """Train a DigitsClassifier on the digits train split (``train_with_outlier_exposure`` with ``non_digits``,
    digits shifted by up to one pixel); returns (model in eval mode, test accuracy)."""
    torch.manual_seed(seed)
    model = train_with_outlier_exposure(DigitsClassifier(), load_digits("train"), non_digits, seed, epochs,
                                        batch_size, lr, augment=shift_by_one_pixel)
    return model, accuracy(model, load_digits("test"))


@torch.no_grad()
def accuracy(model: nn.Module, dataset: ImageDataset) -> float:
    """Fraction of the dataset's images whose predicted class equals the label."""
    return (model(dataset.images).argmax(1) == dataset.labels).float().mean().item()


def save_classifier(model: nn.Module, test_accuracy: float, seed: int, path=CLASSIFIER_ASSET,
                    command: str = TRAIN_COMMAND) -> None:
    """Write a classifier's weights with its test accuracy, seed and the command that made it, atomically."""
    payload = {"state_dict": model.state_dict(), "test_accuracy": test_accuracy, "seed": seed,
               "command": command, "torch_version": str(torch.__version__)}
    write_atomically(path, lambda temporary: torch.save(payload, temporary))


_loaded: dict[str, DigitsClassifier] = {}


def load_classifier(path=CLASSIFIER_ASSET, train_if_missing: bool = True) -> DigitsClassifier:
    """The trained digits classifier in eval mode (cached in memory after the first call).

    When ``path`` does not exist, the classifier is trained (seed 0, a few seconds) and saved there
    if the folder is writable.
    """
    path = Path(path)
    if str(path) in _loaded:
        return _loaded[str(path)]
    model = DigitsClassifier()
    if path.is_file():
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(checkpoint["state_dict"])
        model.eval()
    elif train_if_missing:
        model, test_accuracy = train_classifier(seed=0)
        try:
            save_classifier(model, test_accuracy, seed=0, path=path)
        except OSError:
            pass  # a read-only install still works: the model trained above is used for this session
    else:
        raise FileNotFoundError(f"no classifier at {path}; create it with `{TRAIN_COMMAND}`")
    _loaded[str(path)] = model
    return model


def classifier_command(argv, module: str, what: str, train, default_out: Path, command: str) -> int:
    """``python -m course_lib.<module> --train-classifier``: train a metrics classifier (seeded) and save it to --out.

    train(seed=...) -> (model, test accuracy); shared by the digits' and the sprites' classifiers."""
    parser = argparse.ArgumentParser(prog=f"python -m course_lib.{module}", description=f"The {what}.")
    parser.add_argument("--train-classifier", action="store_true", help="train it (seeded) and save it to --out")
    parser.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    parser.add_argument("--out", type=Path, default=default_out, help="default: %(default)s")
    args = parser.parse_args(argv)
    if not args.train_classifier:
        parser.print_help()
        return 0
    start = time.perf_counter()
    model, test_accuracy = train(seed=args.seed)
    save_classifier(model, test_accuracy, seed=args.seed, path=args.out, command=command)
    size_kb = args.out.stat().st_size / 1024
    print(f"trained in {time.perf_counter() - start:.1f} s; test accuracy {test_accuracy:.4f}; "
          f"wrote {args.out} ({size_kb:.0f} KB)")
    return 0
