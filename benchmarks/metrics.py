"""The yardsticks of the sample-quality metrics: real digits against things that are not digits.

    .venv/bin/python benchmarks/metrics.py

Every row is scored like a batch of generated samples (``course_lib.metrics.evaluate_samples``: KID and
the Fréchet distance against the held-out test split, nearest neighbours against the train split).
Real training digits are what a perfect generator of the training distribution would score (KID 0
within its standard error); the test digits scored against themselves show the reference's own 0;
noise sets the ceiling of failure. Targets: real digits are confident >= 0.9, noise far below, and
every corruption scores a KID far above the real digits'.
Uniform noise and shuffled pixels are the kinds of non-digits the classifier was taught to doubt;
Gaussian noise, blends of two digits and blurred digits are not, so they test it honestly.
"""
import sys
import time

import torch
import torch.nn.functional as F

from course_lib import classifiers, metrics
from course_lib.data import load_digits

N = 359  # the whole digits test split


def candidates(seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    test, train = load_digits("test").images, load_digits("train").images
    partner = torch.randperm(N, generator=generator)
    different = load_digits("test").labels != load_digits("test").labels[partner]
    return {
        "real test digits (the reference)": test,
        "real training digits": train[:N],
        "real training digits, n = 100": train[:100],
        "two test digits blended": ((test + test[partner]) / 2)[different],
        "test digits blurred 3x3": F.avg_pool2d(test, 3, stride=1, padding=1, count_include_pad=False),
        "test digits, pixels shuffled": test.flatten(1)[:, torch.randperm(64, generator=generator)].reshape(test.shape),
        "uniform noise in [-1, 1]": torch.rand(N, 1, 8, 8, generator=generator) * 2 - 1,
        "Gaussian noise N(0, 1), clamped": torch.randn(N, 1, 8, 8, generator=generator).clamp(-1, 1),
        "Gaussian noise N(0, 0.5^2)": 0.5 * torch.randn(N, 1, 8, 8, generator=generator),
    }


def main() -> int:
    start = time.perf_counter()
    classifier = classifiers.load_classifier()
    test_accuracy = classifiers.accuracy(classifier, load_digits("test"))
    print(f"digits classifier ({classifiers.CLASSIFIER_ASSET.name}): test accuracy {test_accuracy:.4f} on {N} test digits\n")
    header = (f"{'images':34s} {'n':>4s} {'confident':>9s} {'entropy':>8s} {'KID':>8s}   {'SE':>5s} {'FD':>9s} "
              f"{'NN mean':>8s} {'NN min':>7s}")
    print(header)
    print("-" * len(header))
    scores = {}
    for name, images in candidates().items():
        s = metrics.evaluate_samples(images, classifier)
        scores[name] = s
        print(f"{name:34s} {s['n']:4d} {s['confident_fraction']:9.3f} {s['class_entropy']:8.3f} "
              f"{s['kid']:8.1f} ± {s['kid_se']:5.1f} {s['frechet_distance']:9.2f} {s['nn_distance_mean']:8.3f} "
              f"{s['nn_distance_min']:7.3f}")
    real = scores["real test digits (the reference)"]["confident_fraction"]
    noise = max(scores[k]["confident_fraction"] for k in scores if "noise" in k)
    ok = real >= 0.9 and noise <= 0.1
    print(f"\nconfident fraction: real test {real:.3f} (target >= 0.9), noise at most {noise:.3f} "
          f"(target <= 0.1): {'OK' if ok else 'MISSED'}")
    print(f"entropy of a perfectly balanced histogram: log 10 = {torch.log(torch.tensor(10.0)).item():.3f}")
    print(f"({time.perf_counter() - start:.1f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
