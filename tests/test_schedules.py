import math

import pytest
import torch

from course_lib.schedules import NoiseSchedule, cosine_betas, gather, linear_betas, timestep_tensor


def test_linear_betas_spans_both_ends_in_float64():
    betas = linear_betas(1000)
    assert betas.dtype == torch.float64 and betas.shape == (1000,)
    assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(0.02)
    assert torch.allclose(betas.diff(), torch.full((999,), (0.02 - 1e-4) / 999, dtype=torch.float64))


def test_cosine_betas_reproduce_the_cosine_alpha_bar():
    T, s = 1000, 0.008
    alpha_bars = NoiseSchedule.cosine(T).alpha_bars
    u = torch.arange(1, T + 1, dtype=torch.float64) / T
    f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    f0 = math.cos(s / (1 + s) * math.pi / 2) ** 2
    unclipped = slice(0, T - 1)  # the last beta is clipped at 0.999, so the last alpha_bar departs from f
    assert torch.allclose(alpha_bars[unclipped], (f / f0)[unclipped], rtol=1e-9)


def test_cosine_betas_are_clipped_at_max_beta():
    betas = cosine_betas(10)
    assert betas.max().item() == pytest.approx(0.999)
    assert cosine_betas(40, max_beta=0.5).max().item() == pytest.approx(0.5)


@pytest.mark.parametrize("schedule", [NoiseSchedule.linear(), NoiseSchedule.cosine()], ids=["linear", "cosine"])
def test_schedule_quantities(schedule):
    assert schedule.T == 1000
    assert torch.all(schedule.alpha_bars.diff() < 0), "alpha_bar must decrease"
    assert schedule.alpha_bars[-1] < 1e-4, "alpha_bar[T-1] must be close to 0 (x_T is pure noise)"
    assert schedule.alpha_bars_prev[0] == 1.0
    assert torch.equal(schedule.alpha_bars_prev[1:], schedule.alpha_bars[:-1])
    assert torch.allclose(schedule.alpha_bars[0], 1 - schedule.betas[0])
    expected_variance = schedule.betas * (1 - schedule.alpha_bars_prev) / (1 - schedule.alpha_bars)
    assert torch.allclose(schedule.posterior_variance, expected_variance)
    assert schedule.posterior_variance[0] == 0.0
    assert torch.all(schedule.posterior_variance[1:] <= schedule.betas[1:])
    assert torch.allclose(schedule.snr, schedule.alpha_bars / (1 - schedule.alpha_bars))
    for name in ("betas", "alphas", "alpha_bars", "alpha_bars_prev", "posterior_variance", "snr"):
        assert getattr(schedule, name).dtype == torch.float64


def test_from_name():
    assert torch.equal(NoiseSchedule.from_name("cosine", T=20).betas, cosine_betas(20))
    with pytest.raises(ValueError, match="expected one of"):
        NoiseSchedule.from_name("sigmoid")


@pytest.mark.parametrize("call, error, message", [
    (lambda: NoiseSchedule.linear(0), ValueError, "T must be >= 1"),
    (lambda: NoiseSchedule.linear(10.0), TypeError, "T must be an int"),
    (lambda: NoiseSchedule.linear(10, 0.1, 0.01), ValueError, "beta_start <= beta_end"),
    (lambda: NoiseSchedule.cosine(10, max_beta=1.5), ValueError, "max_beta"),
    (lambda: NoiseSchedule([0.1, 0.2]), TypeError, "torch.Tensor"),
    (lambda: NoiseSchedule(torch.ones(2, 2) * 0.1), ValueError, r"shape \(T,\)"),
    (lambda: NoiseSchedule(torch.tensor([0.1, 1.0])), ValueError, r"in \(0, 1\)"),
])
def test_bad_schedule_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_gather_broadcasts_per_batch_item():
    schedule = NoiseSchedule.linear(10)
    x = torch.zeros(3, 2, 4, 4)
    picked = gather(schedule.alpha_bars, torch.tensor([0, 4, 9]), x)
    assert picked.shape == (3, 1, 1, 1) and picked.dtype == torch.float32
    assert torch.allclose(picked.flatten(), schedule.alpha_bars[[0, 4, 9]].float())
    assert gather(schedule.alpha_bars, 3, x).shape == (1, 1, 1, 1)
    assert gather(schedule.alpha_bars, 3, x).item() == schedule.alpha_bars[3].float().item()
    assert gather(schedule.alpha_bars, 3, x.double()).dtype == torch.float64          # one cached cast per dtype


def test_timestep_tensor_gives_one_int64_timestep_per_batch_item():
    x = torch.zeros(3, 2)
    for t in (4, torch.tensor(4), torch.tensor([4])):
        steps = timestep_tensor(t, x)
        assert steps.dtype == torch.int64 and steps.tolist() == [4, 4, 4]
    assert timestep_tensor(torch.tensor([1, 2, 3], dtype=torch.int32), x).tolist() == [1, 2, 3]
