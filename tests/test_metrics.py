"""Sample-quality metrics: the shipped classifier, the formulas against closed forms, real data against noise."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from course_lib import classifiers, metrics
from course_lib.data import load_digits


@pytest.fixture(scope="module")
def classifier():
    assert classifiers.CLASSIFIER_ASSET.is_file(), f"the classifier asset is missing; run `{classifiers.TRAIN_COMMAND}`"
    return classifiers.load_classifier(train_if_missing=False)


def noise(n, seed=0):
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_shipped_classifier_is_accurate_and_small(classifier):
    assert classifiers.accuracy(classifier, load_digits("test")) >= 0.9
    assert classifiers.CLASSIFIER_ASSET.stat().st_size < 400 * 1024
    stored = torch.load(classifiers.CLASSIFIER_ASSET, weights_only=True)
    assert stored["command"] == classifiers.TRAIN_COMMAND and stored["test_accuracy"] >= 0.9


def test_training_is_deterministic_for_a_seed():
    first, _ = classifiers.train_classifier(seed=5, epochs=1)
    again, _ = classifiers.train_classifier(seed=5, epochs=1)
    other, _ = classifiers.train_classifier(seed=6, epochs=1)
    pairs = list(zip(first.state_dict().values(), again.state_dict().values(), other.state_dict().values()))
    assert all(torch.equal(a, b) for a, b, _ in pairs)
    assert not all(torch.equal(a, c) for a, _, c in pairs)


def test_missing_asset_is_trained_and_cached(tmp_path):
    path = tmp_path / "classifier.pt"
    with pytest.raises(FileNotFoundError, match="--train-classifier"):
        classifiers.load_classifier(path, train_if_missing=False)
    model = classifiers.load_classifier(path)
    assert path.is_file() and classifiers.accuracy(model, load_digits("test")) >= 0.9
    assert classifiers.load_classifier(path) is model


# ---------------------------------------------------------------- formulas
def test_entropy_of_histograms():
    assert metrics.entropy(torch.full((10,), 0.1)) == pytest.approx(math.log(10))
    assert metrics.entropy(torch.tensor([0.0, 1.0, 0.0])) == 0.0
    assert metrics.entropy(torch.tensor([0.5, 0.5, 0.0])) == pytest.approx(math.log(2))


def test_histogram_and_confidence_from_probabilities():
    probs = torch.tensor([[0.95, 0.05, 0.0], [0.2, 0.7, 0.1], [0.0, 0.0, 1.0], [0.9, 0.1, 0.0]])
    assert metrics.class_histogram(probs).tolist() == [0.5, 0.25, 0.25]
    assert metrics.confident_fraction(probs) == 0.75


def test_frechet_distance_closed_form_for_diagonal_gaussians():
    # Commuting covariances: d^2 = |mu1 - mu2|^2 + sum_i (sigma1_i - sigma2_i)^2.
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    sd1, sd2 = np.array([1.0, 2.0, 0.5]), np.array([3.0, 1.0, 0.5])
    expected = 1 + 4 + (2 ** 2 + 1 ** 2)
    got = metrics.gaussian_frechet_distance(mu1, np.diag(sd1 ** 2), mu2, np.diag(sd2 ** 2))
    assert got == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_matches_scipy_sqrtm_for_full_covariances():
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    cov1, cov2 = a @ a.T + 0.1 * np.eye(5), b @ b.T + 0.1 * np.eye(5)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    covmean = linalg.sqrtm(cov1 @ cov2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(cov1 + cov2 - 2 * covmean)
    assert metrics.gaussian_frechet_distance(mu1, cov1, mu2, cov2) == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_of_feature_sets():
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(20000, 3, generator=generator)
    b = torch.randn(20000, 3, generator=generator) * torch.tensor([2.0, 1.0, 1.0]) + torch.tensor([1.0, 0.0, 0.0])
    assert metrics.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    ab, ba = metrics.frechet_distance(a, b), metrics.frechet_distance(b, a)
    assert ab == pytest.approx(ba, rel=1e-9) and ab > 0
    assert ab == pytest.approx(1 + (2 - 1) ** 2, rel=0.05)   # the closed form for the generating Gaussians


def test_nearest_neighbour_distance_is_zero_for_copies():
    train = load_digits("train").images
    assert torch.all(metrics.nearest_neighbour_distances(train[:50], train) == 0)
    shifted = train[:5] + 0.1
    assert torch.allclose(metrics.nearest_neighbour_distances(shifted, train[:5]), torch.full((5,), 0.8, dtype=torch.float64))


# ---------------------------------------------------------------- KID
def test_mmd2_unbiased_matches_the_pairwise_sums():
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 3, generator=generator, dtype=torch.float64), torch.randn(5, 3, generator=generator, dtype=torch.float64)
    k = lambda x, y: (x @ y / 3 + 1) ** 3
    within_a = sum(k(a[i], a[j]) for i in range(6) for j in range(6) if i != j) / 30
    within_b = sum(k(b[i], b[j]) for i in range(5) for j in range(5) if i != j) / 20
    across = sum(k(a[i], b[j]) for i in range(6) for j in range(5)) / 30
    kernels = [metrics.polynomial_kernel(x, y) for x, y in ((a, a), (b, b), (a, b))]
    assert metrics.mmd2_unbiased(*kernels) == pytest.approx((within_a + within_b - 2 * across).item(), rel=1e-12)
    value, se = metrics.kid(a.repeat(4, 1), b.repeat(4, 1), subsets=2)
    assert se >= 0 and value == pytest.approx(metrics.mmd2_unbiased(*[metrics.polynomial_kernel(x, y) for x, y in
                                                                      ((a.repeat(4, 1),) * 2, (b.repeat(4, 1),) * 2,
                                                                       (a.repeat(4, 1), b.repeat(4, 1)))]))


def test_kid_of_two_disjoint_real_subsets_is_zero_within_its_standard_error(classifier):
    features = classifier.features(load_digits("test").images).detach()
    for seed in range(3):
        order = torch.randperm(len(features), generator=torch.Generator().manual_seed(seed))
        value, se = metrics.kid(features[order[:179]], features[order[179:358]], seed=seed)
        assert abs(value) <= 2 * se, (seed, value, se)


def test_real_digits_beat_noise_blur_and_model_samples_on_kid(classifier):
    from course_lib.sampling import sample
    from course_lib.checkpoints import load_checkpoint

    test = load_digits("test").images[:200]
    real = metrics.real_data_reference(200)
    worse = {"uniform noise": noise(200), "blurred test digits": F.avg_pool2d(test, 3, stride=1, padding=1),
             "shuffled pixels": test.flatten(1)[:, torch.randperm(64)].reshape(test.shape)}
    model, schedule, _ = load_checkpoint()
    labels = torch.arange(200) % 10
    tie = {}
    for steps, group in ((1, worse), (50, tie)):      # one DDIM step leaves blurry averages; 50 give good digits
        for name, kwargs in (("conditional", {"y": labels}), ("unconditional", {})):
            group[f"shipped model, {name}, DDIM {steps}"] = sample(
                model, schedule, (200, 1, 8, 8), sampler="ddim", steps=steps, seed=0, clip_x0=True, progress=False,
                model_kwargs=kwargs).images
    for name, images in worse.items():
        scores = metrics.evaluate_samples(images, classifier)
        assert real["kid"] + 2 * real["kid_se"] < scores["kid"] - 2 * scores["kid_se"], name
        assert real["frechet_distance"] < scores["frechet_distance"], name
    for name, images in tie.items():    # a well-trained model may tie with real digits, but not beat them beyond noise
        scores = metrics.evaluate_samples(images, classifier)
        assert real["kid"] < scores["kid"] + 2 * (scores["kid_se"] + real["kid_se"]), name


# ---------------------------------------------------------------- evaluation
def test_noise_scores_worse_than_real_digits(classifier):
    real, random = metrics.real_data_reference(200), metrics.evaluate_samples(noise(200), classifier)
    assert real["n"] == random["n"] == 200
    assert real["confident_fraction"] >= 0.9 > 0.1 >= random["confident_fraction"]
    assert real["class_entropy"] > 2.0 > random["class_entropy"]
    assert random["frechet_distance"] > 10 * real["frechet_distance"]
    assert random["kid"] > 10 * (abs(real["kid"]) + real["kid_se"])
    assert random["nn_distance_mean"] > 2 * real["nn_distance_mean"]
    assert sum(real["class_histogram"]) == pytest.approx(1.0)


def test_distribution_metrics_compare_with_held_out_digits(classifier):
    train, test = load_digits("train").images, load_digits("test").images
    copies = metrics.evaluate_samples(train[:100], classifier)
    assert copies["nn_distance_mean"] == 0 and copies["nn_distance_min"] == 0, "memorisation: against the training set"
    assert metrics.real_data_reference(100)["nn_distance_min"] > 0
    held_out = metrics.evaluate_samples(test, classifier)
    assert held_out["frechet_distance"] < 1e-6 and held_out["kid"] < 0.01 * copies["kid_se"] + 1e-6, \
        "the whole test split against itself: the reference set is the test split"


def test_evaluation_is_deterministic_and_validates_input(classifier):
    assert metrics.real_data_reference(50, seed=1) == metrics.real_data_reference(50, seed=1)
    assert metrics.real_data_reference(50, seed=1) != metrics.real_data_reference(50, seed=2)
    with pytest.raises(ValueError, match=r"\(N, 1, 8, 8\)"):
        metrics.evaluate_samples(torch.zeros(4, 1, 28, 28))
    with pytest.raises(ValueError, match="at least 20"):
        metrics.evaluate_samples(torch.zeros(19, 1, 8, 8))
    with pytest.raises(ValueError, match="between 20 and 1260"):
        metrics.real_data_reference(2000)
    with pytest.raises(TypeError, match="floating-point"):
        metrics.evaluate_samples(torch.zeros(40, 1, 8, 8, dtype=torch.int64))


def test_report_lists_samples_beside_real(classifier):
    text = metrics.report(noise(30))
    assert "n = 30 samples, 30 real" in text and "Fréchet" in text and "KID" in text
    assert len(text.splitlines()) == 1 + len(metrics.REPORT_ROWS)


def test_balanced_subset_lets_the_classes_take_turns():
    labels = load_digits("train").labels
    picks = metrics.balanced_subset(labels, 25, torch.Generator().manual_seed(0))
    assert labels[picks].tolist() == list(range(10)) * 2 + list(range(5))
    assert len(set(picks.tolist())) == 25
    other = metrics.balanced_subset(labels, 25, torch.Generator().manual_seed(1))
    assert not torch.equal(picks, other)
