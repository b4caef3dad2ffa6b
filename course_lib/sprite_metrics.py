"""Sample-quality metrics for the 32x32 colour sprites (notebook 08), each beside its real-data floor.

- symmetry error: mean |x - mirror(x)| in display units [0, 1]. Real sprites are symmetric in shape but
  shaded from the top-left, so their error is small and not zero; a generator should match it.
- palette distance: total-variation distance between colour histograms (each RGB channel cut into
  4 levels, 64 bins) of the samples and of the held-out sprites; 0 = the same colours in the same amounts.
- a sprite-family classifier trained by the course (``SpriteClassifier``) gives the confident fraction,
  the class histogram, its entropy (log 6 = 1.792 is balanced), the mode coverage (share of families that
  get at least a quarter of their fair share of samples) and the per-class spread (mean feature distance to
  the class centroid: small = every sample of a class looks alike, as after mode collapse);
- KID (Bińkowski et al. 2018): the unbiased squared MMD with the cubic polynomial kernel between the
  classifier's features of the samples and of the held-out sprites. Unlike the Fréchet distance it has no
  bias for small n, so its floor is about 0;
- nearest-neighbour distance to the training set (memorisation: much closer than fresh real sprites = copies).

The floor (``real_floor``) is the same metrics for fresh real sprites, made with another seed, which are in
neither the training nor the held-out split: what a perfect generator would score with n samples.

The classifier ships as ``assets/sprites_classifier.pt``, made by ``python -m course_lib.sprite_metrics
--train-classifier`` (seeded, single-threaded, under a minute).
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ._validate import require_float_tensor
from .classifiers import accuracy, classifier_command, train_with_outlier_exposure
from .metrics import class_histogram, confident_fraction, entropy, kernel_distance, nearest_neighbour_distances
from .sprites import FAMILIES, POOL, SIZE, load_sprites, make_sprites

CLASSIFIER_ASSET = Path(__file__).resolve().parent / "assets" / "sprites_classifier.pt"
TRAIN_COMMAND = "python -m course_lib.sprite_metrics --train-classifier"
FLOOR_SEED = 1           # fresh real sprites for the floor: not the pool (seed 0) the splits come from
COLOUR_LEVELS = 4


class SpriteClassifier(nn.Module):
    """A small CNN for (N, 3, 32, 32) sprites in [-1, 1]; ``features`` gives (N, 64), ``forward`` (N, 6) logits.

    The sprites are 16x16 cells drawn at 2x, so a 2x2 average pool loses nothing and quarters the work.
    """

    feature_dim = 64

    def __init__(self, num_classes: int = len(FAMILIES)):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 32, 3, padding=1)
        self.hidden = nn.Linear(32 * 4 * 4, self.feature_dim)
        self.head = nn.Linear(self.feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = F.avg_pool2d(x, 2)                                       # 32 -> 16
        h = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(h)))), 2)   # 16 -> 8
        h = F.max_pool2d(F.relu(self.conv3(h)), 2)                   # 8 -> 4
        return F.relu(self.hidden(h.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# ---------------------------------------------------------------- the classifier
def non_sprites(sprites: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One image that is no sprite per input (N, 3, 32, 32): uniform noise, the sprite's 2x2 cells shuffled
    (same colours, no shape) or a flat colour, a third each. The classifier learns to doubt them."""
    n = sprites.shape[0]
    noise = torch.rand(sprites.shape, generator=generator) * 2 - 1
    cells = F.avg_pool2d(sprites, 2).flatten(2)                                   # (N, 3, 256)
    order = torch.argsort(torch.rand(n, 1, cells.shape[2], generator=generator), dim=2).expand_as(cells)
    shuffled = F.interpolate(cells.gather(2, order).reshape(n, 3, SIZE // 2, SIZE // 2), scale_factor=2)
    flat = (torch.rand(n, 3, 1, 1, generator=generator) * 2 - 1).expand(sprites.shape)
    kind = torch.randint(0, 3, (n, 1, 1, 1), generator=generator)
    return torch.where(kind == 0, noise, torch.where(kind == 1, shuffled, flat))


def train_classifier(seed: int = 0, epochs: int = 6, batch_size: int = 64, lr: float = 2e-3):
    """Train a SpriteClassifier on the sprite train split (``classifiers.train_with_outlier_exposure`` with
    ``non_sprites``); returns (model in eval mode, test accuracy)."""
    torch.manual_seed(seed)
    model = train_with_outlier_exposure(SpriteClassifier(), load_sprites("train"), non_sprites, seed, epochs,
                                        batch_size, lr)
    return model, accuracy(model, load_sprites("test"))


_loaded: dict[str, SpriteClassifier] = {}


def load_classifier(path=CLASSIFIER_ASSET) -> SpriteClassifier:
    """The shipped sprite classifier in eval mode (cached after the first call)."""
    path = Path(path)
    if str(path) not in _loaded:
        if not path.is_file():
            raise FileNotFoundError(f"no sprite classifier at {path}; create it with `{TRAIN_COMMAND}`")
        model = SpriteClassifier()
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["state_dict"])
        _loaded[str(path)] = model.eval()
    return _loaded[str(path)]


# ---------------------------------------------------------------- the metrics, one formula each
def symmetry_error(images: torch.Tensor) -> float:
    """Mean over pixels of |x - x mirrored left-right|, images (N, C, H, W) in [-1, 1], in display units [0, 1]."""
    return ((images - images.flip(-1)).abs().mean() / 2).item()


def colour_histogram(images: torch.Tensor, levels: int = COLOUR_LEVELS) -> torch.Tensor:
    """Share of pixels in each of levels^3 RGB bins (each channel of [-1, 1] cut into ``levels`` equal parts)."""
    q = ((images.clamp(-1, 1) + 1) / 2 * levels).long().clamp(max=levels - 1)     # (N, 3, H, W) in 0..levels-1
    bins = (q[:, 0] * levels + q[:, 1]) * levels + q[:, 2]
    counts = torch.bincount(bins.flatten(), minlength=levels ** 3)
    return counts.double() / counts.sum()


def palette_distance(images_a: torch.Tensor, images_b: torch.Tensor) -> float:
    """Total-variation distance 1/2 sum |h_a - h_b| between two sets' colour histograms: 0 same, 1 disjoint."""
    return 0.5 * (colour_histogram(images_a) - colour_histogram(images_b)).abs().sum().item()


def mode_coverage(histogram: torch.Tensor, min_share: float = 0.25) -> float:
    """Fraction of the K classes that get at least ``min_share`` of their fair share 1/K of the samples."""
    return (histogram >= min_share / histogram.shape[0]).double().mean().item()


def per_class_spread(features: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over the classes present of the mean distance of their features (N, d) to the class centroid."""
    spreads = [(features[labels == k] - features[labels == k].mean(0)).norm(dim=1).mean() for k in labels.unique()]
    return torch.stack(spreads).mean().item()


# ---------------------------------------------------------------- evaluation
def _check_sprites(images, name: str = "samples") -> torch.Tensor:
    require_float_tensor(images, name)
    if images.ndim != 4 or tuple(images.shape[1:]) != (3, SIZE, SIZE):
        raise ValueError(f"{name} must have shape (N, 3, {SIZE}, {SIZE}) like the sprites, got {tuple(images.shape)}")
    if images.shape[0] < 2:
        raise ValueError(f"{name} must hold at least 2 images, got {images.shape[0]}")
    return images.detach().float().cpu().clamp(-1, 1)


@torch.no_grad()
def evaluate_sprites(samples: torch.Tensor, classifier: nn.Module | None = None) -> dict:
    """Every sprite metric for samples (N, 3, 32, 32) in [-1, 1]; KID and palette vs the held-out split,
    nearest neighbours vs the training split. Compare with ``real_floor(n)``."""
    samples = _check_sprites(samples)
    classifier = classifier or load_classifier()
    held_out, train = load_sprites("test").images, load_sprites("train").images
    logits = classifier(samples)
    probs, features = F.softmax(logits, dim=1), classifier.features(samples)
    histogram = class_histogram(probs)
    nn_distances = nearest_neighbour_distances(samples, train)
    return {"n": samples.shape[0],
            "confident_fraction": confident_fraction(probs),
            "class_histogram": histogram.tolist(),
            "class_entropy": entropy(histogram),
            "mode_coverage": mode_coverage(histogram),
            "per_class_spread": per_class_spread(features, probs.argmax(1)),
            "symmetry_error": symmetry_error(samples),
            "palette_distance": palette_distance(samples, held_out),
            "kid": kernel_distance(features, classifier.features(held_out)),
            "nn_distance_mean": nn_distances.mean().item(),
            "nn_distance_min": nn_distances.min().item()}


def fresh_sprites(n: int, seed: int = FLOOR_SEED) -> torch.Tensor:
    """n real sprites from a pool made with another seed (in no split), families balanced: (n, 3, 32, 32)."""
    if not 2 <= n <= POOL:
        raise ValueError(f"n must lie between 2 and {POOL}, got {n}")
    return make_sprites(torch.arange(n) % len(FAMILIES), seed)


def real_floor(n: int, classifier: nn.Module | None = None) -> dict:
    """``evaluate_sprites`` on n fresh real sprites: what a perfect generator scores with n samples."""
    return evaluate_sprites(fresh_sprites(n), classifier)


REPORT_ROWS = (("confident_fraction", "confident fraction (p_max >= 0.9)", "higher is better"),
               ("class_entropy", "class entropy [nats]", f"log 6 = {math.log(6):.3f} is balanced"),
               ("mode_coverage", "mode coverage", "1 = every family generated"),
               ("per_class_spread", "per-class spread (features)", "much lower than real = collapse"),
               ("symmetry_error", "symmetry error", "close to real"),
               ("palette_distance", "palette distance to held-out", "lower is better"),
               ("kid", "KID vs held-out", "lower is better; real ~ 0"),
               ("nn_distance_mean", "mean distance to nearest train sprite", "much lower than real = copies"))


def report(samples: torch.Tensor) -> str:
    """A table of every metric for the samples beside the same metric for as many fresh real sprites."""
    ours = evaluate_sprites(samples)
    real = real_floor(ours["n"])
    lines = [f"{'metric':38s} {'samples':>9s} {'real':>9s}   (n = {ours['n']})"]
    lines += [f"{label:38s} {ours[key]:9.4f} {real[key]:9.4f}   {meaning}" for key, label, meaning in REPORT_ROWS]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m course_lib.sprite_metrics --train-classifier``: train the classifier and save it."""
    return classifier_command(argv, "sprite_metrics", "sprite-family classifier behind the sprite metrics",
                              train_classifier, CLASSIFIER_ASSET, TRAIN_COMMAND)


if __name__ == "__main__":
    raise SystemExit(main())
