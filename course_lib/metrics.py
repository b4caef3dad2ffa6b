"""Sample-quality metrics for 8x8 digits, measured with the course's own small classifier (classifiers.py).

FID needs an Inception network downloaded from the internet; this course works offline, so the
same ideas are measured with a small CNN trained here on the digits train split:

- confident fraction: share of samples the classifier assigns to one class with probability >= 0.9
  (a blurry or scrambled digit gets spread-out probabilities);
- class histogram and its entropy: are all ten digits generated, and equally often? (max log 10);
- KID, the kernel distance (Bińkowski et al. 2018): the unbiased squared MMD between the classifier's
  penultimate features of the samples and of the held-out test images, cubic polynomial kernel,
  with a jackknife standard error over disjoint subsets; unbiased, so 0 means "same distribution"
  at any n, which makes it the metric for small sample counts;
- Fréchet distance between Gaussians fitted to the same features (FID's formula): biased upwards
  by an amount that grows as n shrinks, so compare it only at equal n;
- nearest-neighbour distance: pixel L2 distance from each sample to its closest training image.
  Samples much closer to the training set than the real test images are copies (memorisation).

Distribution metrics compare with the **test** split, which neither the model nor the classifier saw.
Against the training set, "looks like the training images" would beat "is a digit": real test digits
would rank behind a model that reproduces its training set. Every number needs a yardstick, so
``real_data_reference(n)`` scores real digits the same way: n class-balanced training images against the
test split for KID and the Fréchet distance (a perfect generator of the training distribution scores like them),
n test images against the training set for the nearest-neighbour distances (how far a new digit lies).
Its spread over seeds is the noise of the yardstick. ``report`` prints samples beside it.

The digits classifier, its training and its file are classifiers.py's; ``main`` below is the command that made
the shipped one, ``python -m course_lib.metrics --train-classifier`` (the file records it).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._validate import require_float_tensor
from .classifiers import (CLASSIFIER_ASSET, NUM_CLASSES, TRAIN_COMMAND, classifier_command, load_classifier,
                          train_classifier)
from .data import load_digits

CONFIDENCE_THRESHOLD = 0.9
KID_SUBSETS = 10      # jackknife groups behind KID's standard error


# ---------------------------------------------------------------- the metrics, one formula each
def _check_digits(images, name: str = "samples") -> torch.Tensor:
    require_float_tensor(images, name)
    if images.ndim != 4 or tuple(images.shape[1:]) != (1, 8, 8):
        raise ValueError(f"{name} must have shape (N, 1, 8, 8) like the digits, got {tuple(images.shape)}")
    if images.shape[0] < 2:
        raise ValueError(f"{name} must hold at least 2 images (a covariance needs two), got {images.shape[0]}")
    # Samplers may overshoot [-1, 1] a little; the metrics see what a display would show.
    return images.detach().float().cpu().clamp(-1, 1)


@torch.no_grad()
def class_probabilities(images: torch.Tensor, classifier: nn.Module | None = None) -> torch.Tensor:
    """p(y | x) from the classifier: (N, 1, 8, 8) -> (N, 10), rows sum to 1."""
    classifier = classifier or load_classifier()
    return F.softmax(classifier(images), dim=1)


def confident_fraction(probs: torch.Tensor, threshold: float = CONFIDENCE_THRESHOLD) -> float:
    """Share of rows of probs (N, K) whose largest class probability is >= threshold."""
    return (probs.max(dim=1).values >= threshold).float().mean().item()


def class_histogram(probs: torch.Tensor) -> torch.Tensor:
    """Share of samples predicted as each class (argmax): probs (N, K) -> (K,), summing to 1."""
    counts = torch.bincount(probs.argmax(dim=1), minlength=probs.shape[1])
    return counts.double() / counts.sum()


def entropy(histogram: torch.Tensor) -> float:
    """H = -sum_k p_k log p_k in nats (0 log 0 = 0): log K for a uniform histogram over K classes, 0 for one class."""
    p = histogram.double()
    return -(p[p > 0] * p[p > 0].log()).sum().item()


def gaussian_frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """Fréchet (2-Wasserstein squared) distance between N(mu1, cov1) and N(mu2, cov2), D dimensions:

        d^2 = |mu1 - mu2|^2 + Tr(cov1 + cov2 - 2 (cov1 cov2)^(1/2))

    Tr((cov1 cov2)^(1/2)) = Tr((S cov2 S)^(1/2)) with S = cov1^(1/2): the matrix S cov2 S is symmetric,
    so both square roots come from symmetric eigen-decompositions (float64), with tiny negative
    eigenvalues from rounding clipped to zero.
    """
    mu1, mu2, cov1, cov2 = (np.asarray(a, dtype=np.float64) for a in (mu1, mu2, cov1, cov2))
    values, vectors = np.linalg.eigh(cov1)
    sqrt_cov1 = (vectors * np.sqrt(values.clip(min=0))) @ vectors.T
    cross = np.linalg.eigvalsh(sqrt_cov1 @ cov2 @ sqrt_cov1).clip(min=0)
    distance = np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2 * np.sum(np.sqrt(cross))
    return float(max(distance, 0.0))


def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted (mean, covariance) to two feature sets (N_a, D) and (N_b, D)."""
    moments = []
    for features in (features_a, features_b):
        f = features.detach().double().cpu().numpy()
        moments += [f.mean(axis=0), np.cov(f, rowvar=False)]
    return gaussian_frechet_distance(*moments)


def polynomial_kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """k(a, b) = (a . b / D + 1)^3 for every pair of rows of a (M, D) and b (N, D): (M, N) (Bińkowski et al. 2018)."""
    return (a @ b.T / a.shape[1] + 1) ** 3


def mmd2_unbiased(k_aa: torch.Tensor, k_bb: torch.Tensor, k_ab: torch.Tensor) -> float:
    """Unbiased squared MMD from kernel matrices k_aa (M, M), k_bb (N, N), k_ab (M, N), M, N >= 2 (Gretton et al. 2012, eq. 3):

        MMD^2_u = sum_{i != j} k(a_i, a_j) / (M (M-1)) + sum_{i != j} k(b_i, b_j) / (N (N-1)) - 2 mean_{i,j} k(a_i, b_j)

    Leaving out the i = j terms makes its expectation exactly the population MMD^2: 0 for one
    distribution, so an estimate may come out slightly negative.
    """
    m, n = k_ab.shape
    return ((k_aa.sum() - k_aa.diagonal().sum()) / (m * (m - 1)) + (k_bb.sum() - k_bb.diagonal().sum()) / (n * (n - 1))
            - 2 * k_ab.mean()).item()


def kernel_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """KID's value alone: ``mmd2_unbiased`` with ``polynomial_kernel`` between (N_a, D) and (N_b, D) features, N >= 2."""
    a, b = features_a.double(), features_b.double()
    return mmd2_unbiased(polynomial_kernel(a, a), polynomial_kernel(b, b), polynomial_kernel(a, b))


def kid(features_a: torch.Tensor, features_b: torch.Tensor, subsets: int = KID_SUBSETS, seed: int = 0) -> tuple:
    """KID (Bińkowski et al. 2018): ``mmd2_unbiased`` with ``polynomial_kernel`` between (N_a, D) and (N_b, D)
    features, and its standard error: (value, standard error), in float64.

    The value uses every pair. The standard error is the delete-a-group jackknife over ``subsets`` disjoint
    groups (seeded): the rows of both sets are dealt into groups, the estimate is recomputed without each
    group in turn, and SE^2 = (g - 1) / g * sum_j (value_(-j) - mean)^2. Near 0 (two samples of one
    distribution) it errs on the large side, so "0 within its standard error" is a fair test of equality.
    """
    a, b = (features.detach().double().cpu() for features in (features_a, features_b))
    if min(a.shape[0], b.shape[0]) < 2 * subsets:
        raise ValueError(f"KID with {subsets} jackknife groups needs at least {2 * subsets} feature rows per set, "
                         f"got {a.shape[0]} and {b.shape[0]}")
    k_aa, k_bb, k_ab = polynomial_kernel(a, a), polynomial_kernel(b, b), polynomial_kernel(a, b)
    generator = torch.Generator().manual_seed(seed)
    group_a = torch.randperm(a.shape[0], generator=generator) % subsets
    group_b = torch.randperm(b.shape[0], generator=generator) % subsets
    left_out = torch.tensor([mmd2_unbiased(k_aa[keep_a][:, keep_a], k_bb[keep_b][:, keep_b], k_ab[keep_a][:, keep_b])
                             for keep_a, keep_b in ((group_a != j, group_b != j) for j in range(subsets))])
    spread = ((left_out - left_out.mean()) ** 2).sum().item()
    return mmd2_unbiased(k_aa, k_bb, k_ab), math.sqrt((subsets - 1) / subsets * spread)


def nearest_neighbour_distances(images: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """For each image (N, C, H, W), the pixel L2 distance to its closest image in reference (M, C, H, W): (N,)."""
    distances = torch.cdist(images.flatten(1).double(), reference.flatten(1).double(),
                            compute_mode="donot_use_mm_for_euclid_dist")  # exact: a copy is at distance 0
    return distances.min(dim=1).values


# ---------------------------------------------------------------- evaluation against held-out data
@torch.no_grad()
def evaluate_samples(samples: torch.Tensor, classifier: nn.Module | None = None) -> dict:
    """Every metric for a batch of samples (N, 1, 8, 8) in [-1, 1], N >= 2 * KID_SUBSETS.

    Returns a dict: n, confident_fraction, class_histogram (list of 10 shares), class_entropy (nats;
    log 10 = 2.303 is perfectly balanced); kid and kid_se (KID and its standard error) and
    frechet_distance, all three between the samples' features and the **test** split's features;
    nn_distance_mean and nn_distance_min (pixel L2 distance from each sample to its nearest
    **training** image: a copy is at 0). Compare each with ``real_data_reference(n)``.
    """
    samples = _check_digits(samples)
    if samples.shape[0] < 2 * KID_SUBSETS:
        raise ValueError(f"samples must hold at least {2 * KID_SUBSETS} images (KID's standard error uses "
                         f"{KID_SUBSETS} groups of 2 or more), got {samples.shape[0]}")
    classifier = classifier or load_classifier()
    probs = class_probabilities(samples, classifier)
    histogram = class_histogram(probs)
    features, held_out = classifier.features(samples), classifier.features(load_digits("test").images)
    kid_value, kid_se = kid(features, held_out)
    nn_distances = nearest_neighbour_distances(samples, load_digits("train").images)
    return {"n": samples.shape[0],
            "confident_fraction": confident_fraction(probs),
            "class_histogram": histogram.tolist(),
            "class_entropy": entropy(histogram),
            "kid": kid_value, "kid_se": kid_se,
            "frechet_distance": frechet_distance(features, held_out),
            "nn_distance_mean": nn_distances.mean().item(),
            "nn_distance_min": nn_distances.min().item()}


def balanced_subset(labels: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of n items with the classes taking turns (0, 1, ..., 9, 0, 1, ...), each class's items in a
    seeded random order: the class counts of the course's conditional samples (labels = arange(n) % 10)."""
    per_class = math.ceil(n / NUM_CLASSES)
    order = torch.randperm(len(labels), generator=generator)
    columns = [order[labels[order] == k][:per_class] for k in range(NUM_CLASSES)]
    return torch.stack(columns, dim=1).flatten()[:n]


def real_data_reference(n: int, seed: int = 0, classifier: nn.Module | None = None) -> dict:
    """What real digits score on ``evaluate_samples``'s metrics at the same n: the yardstick of a perfect generator.

    KID and the Fréchet distance: n training images against the test split, as the samples are: a model
    that had learnt its training distribution exactly would score like them. The n images are
    class-balanced (``balanced_subset``), like the course's conditional samples: a random subset's
    uneven class counts would add their own distance (at n = 200, Fréchet 8.4 on average instead of 5.9).
    Confident fraction, class entropy and nearest-neighbour distances: min(n, 359) test images (a seeded
    random subset), which neither the model nor the classifier saw, against the training set: how far a
    new digit lies. The values move with ``seed`` (the subsets drawn); that spread is the resolution of
    any comparison. n must lie between 2 * KID_SUBSETS and 1260 (126 of each digit: the rarest in the train split).
    """
    train, test = load_digits("train"), load_digits("test").images
    largest = NUM_CLASSES * int(torch.bincount(train.labels).min())
    if not 2 * KID_SUBSETS <= n <= largest:
        raise ValueError(f"n must lie between {2 * KID_SUBSETS} and {largest} (class-balanced subsets of the digits "
                         f"train split), got {n}")
    generator = torch.Generator().manual_seed(seed)
    from_train = evaluate_samples(train.images[balanced_subset(train.labels, n, generator)], classifier)
    from_test = evaluate_samples(test[torch.randperm(len(test), generator=generator)[:n]], classifier)
    return {**from_test, "n": n, **{key: from_train[key] for key in ("kid", "kid_se", "frechet_distance")}}


REPORT_ROWS = (("confident_fraction", "confident fraction (p_max >= 0.9)", "higher is better"),
               ("class_entropy", "class entropy [nats]", f"log 10 = {math.log(10):.3f} is balanced"),
               ("kid", "KID vs test features (± SE)", "lower is better; 0 = same distribution"),
               ("frechet_distance", "Fréchet distance to test features", "lower is better (at equal n)"),
               ("nn_distance_mean", "mean distance to nearest train image", "much lower than real = copies"),
               ("nn_distance_min", "min distance to nearest train image", "0 = an exact copy"))


def report(samples: torch.Tensor, seed: int = 0) -> str:
    """A table of every metric for the samples beside the same metric for real digits (``real_data_reference``)."""
    ours = evaluate_samples(samples)
    real = real_data_reference(ours["n"], seed)
    lines = [f"{'metric':38s} {'samples':>14s} {'real':>14s}   (n = {ours['n']} samples, {real['n']} real)"]
    for key, label, meaning in REPORT_ROWS:
        if key == "kid":
            cells = [f"{r['kid']:.1f} ± {r['kid_se']:.1f}" for r in (ours, real)]
        else:
            cells = [f"{r[key]:14.3f}" for r in (ours, real)]
        lines.append(f"{label:38s} {cells[0]:>14s} {cells[1]:>14s}   {meaning}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m course_lib.metrics --train-classifier``: train the digits classifier and save it to --out."""
    return classifier_command(argv, "metrics", "digits classifier behind the sample-quality metrics",
                              train_classifier, CLASSIFIER_ASSET, TRAIN_COMMAND)


if __name__ == "__main__":
    raise SystemExit(main())
