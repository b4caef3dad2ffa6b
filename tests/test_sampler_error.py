"""The sampler-error metric: sliced Wasserstein against exact samples, the sampling floor, slopes."""
import math

import pytest
import torch

from course_lib.sampler_error import excess_error, fit_slope, sampling_floor, sliced_wasserstein
from course_lib.toy import GaussianMixture


def _randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_identical_sets_are_at_distance_zero_and_order_does_not_matter():
    a = _randn(500, 3, seed=0)
    assert sliced_wasserstein(a, a) == 0.0
    assert sliced_wasserstein(a, a[torch.randperm(500)]) == pytest.approx(0.0, abs=1e-12)


def test_symmetric_seeded_and_a_shift_is_measured_exactly():
    a, b = _randn(400, 2, seed=1), _randn(400, 2, seed=2)
    assert sliced_wasserstein(a, b) == pytest.approx(sliced_wasserstein(b, a), rel=1e-12)
    assert sliced_wasserstein(a, b, seed=3) == sliced_wasserstein(a, b, seed=3)
    # in 1-D, W2 of a shifted copy is the shift
    line = _randn(300, 1, seed=4)
    assert sliced_wasserstein(line, line + 0.7) == pytest.approx(0.7, rel=1e-12)
    # in d dimensions a shift c gives SW2^2 = mean over directions of (theta . c)^2 -> |c|^2 / d
    cloud, shift = _randn(300, 8, seed=5), torch.full((8,), 0.5, dtype=torch.float64)
    assert sliced_wasserstein(cloud, cloud + shift, n_projections=4000) == pytest.approx(
        shift.norm().item() / math.sqrt(8), rel=0.05)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="same shape"):
        sliced_wasserstein(_randn(10, 2, seed=0), _randn(11, 2, seed=0))
    with pytest.raises(TypeError, match="floating-point"):
        sliced_wasserstein(torch.ones(10, 2, dtype=torch.int64), torch.ones(10, 2, dtype=torch.int64))


def test_floor_shrinks_like_one_over_root_n_and_separates_wrong_samples():
    ring = GaussianMixture.ring()
    small, large = sampling_floor(ring.sample, 250), sampling_floor(ring.sample, 4000)
    assert large == pytest.approx(small / 4, rel=0.35)
    generator = torch.Generator().manual_seed(1)
    wider = ring.sample(1000, generator) * 1.5
    assert sliced_wasserstein(wider, ring.sample(1000, generator)) > 3 * sampling_floor(ring.sample, 1000)


def test_excess_error_and_slope():
    assert excess_error(5.0, 3.0) == pytest.approx(4.0)
    assert excess_error(2.0, 3.0) == 0.0
    nfe = [4, 8, 16, 32]
    assert fit_slope(nfe, [3.0 * n ** -2 for n in nfe]) == pytest.approx(-2.0)
    assert fit_slope(nfe, [0.5 / n for n in nfe]) == pytest.approx(-1.0)
