"""Guidance against exact references: a 2-D Gaussian mixture whose components are the classes, so the
conditional eps (the component's), the unconditional eps (the mixture's) and the noisy classifier
log p(k | x_t) are all known in closed form."""
import pytest
import torch

from course_lib import guidance, sampling
from course_lib.schedules import NoiseSchedule
from course_lib.toy import GaussianMixture
from course_lib.unet import UNet

N_SAMPLES = 4000
CLASS = 1


@pytest.fixture
def schedule():
    return NoiseSchedule.linear(T=100, beta_start=1e-3, beta_end=0.2)    # abar_{T-1} ~ 2e-5: x_T is pure noise


@pytest.fixture
def mixture():
    means = torch.tensor([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]], dtype=torch.float64)
    covariances = torch.tensor([[[0.5, 0.2], [0.2, 0.3]], [[0.3, -0.1], [-0.1, 0.4]], [[0.4, 0.0], [0.0, 0.2]]],
                               dtype=torch.float64)
    return GaussianMixture(means, covariances, weights=torch.tensor([0.5, 0.3, 0.2]))


def conditional_model(mixture, schedule, calls=None):
    """The exact classifier-free net: model(x, t, y) is component y's eps, or the mixture's for y = K (null)."""
    classes = [mixture.component(k) for k in range(len(mixture.weights))] + [mixture]

    def model(x, t, y):
        if calls is not None:
            calls.append(x.shape[0])
        eps = torch.empty_like(x)
        for label, distribution in enumerate(classes):
            chosen = y == label
            if chosen.any():
                eps[chosen] = distribution.eps(x[chosen], t[chosen], schedule)
        return eps
    return model


def gaussian(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def run(model, schedule, sampler="ddpm", steps=None):
    return sampling.sample(model, schedule, (N_SAMPLES, 2), sampler=sampler, steps=steps, seed=0, progress=False,
                           x_T=gaussian(N_SAMPLES, 2, seed=1)).images


# ---------------------------------------------------------------- toy additions
def test_log_responsibilities_are_bayes_rule(mixture, schedule):
    x = gaussian(16, 2)
    log_resp = mixture.log_responsibilities(x, 40, schedule)
    by_component = torch.stack([mixture.component(k).log_prob(x, 40, schedule) for k in range(3)], dim=1)
    expected = by_component + mixture.weights.log() - mixture.log_prob(x, 40, schedule)[:, None]
    assert torch.allclose(log_resp, expected, atol=1e-10)
    assert torch.allclose(log_resp.exp().sum(1), torch.ones(16, dtype=torch.float64))


def test_component_is_a_single_gaussian(mixture):
    single = mixture.component(2)
    assert torch.equal(single.means, mixture.means[2:3]) and torch.equal(single.covariances, mixture.covariances[2:3])
    with pytest.raises(ValueError, match="0..2"):
        mixture.component(3)


# ---------------------------------------------------------------- classifier-free guidance
def test_guided_eps_algebra():
    cond, uncond = gaussian(4, 3, seed=0), gaussian(4, 3, seed=1)
    assert torch.equal(guidance.guided_eps(cond, uncond, 0.0), uncond)
    assert torch.allclose(guidance.guided_eps(cond, uncond, 1.0), cond)
    linear = 2 * guidance.guided_eps(cond, uncond, 2.0) - guidance.guided_eps(cond, uncond, 3.0)
    assert torch.allclose(linear, guidance.guided_eps(cond, uncond, 1.0))


def test_cfg_model_makes_one_batched_call_matching_two_separate_calls(mixture, schedule):
    calls = []
    model = conditional_model(mixture, schedule, calls)
    x, t = gaussian(5, 2), torch.tensor([3, 50, 99, 0, 20])
    y = torch.tensor([0, 1, 2, 1, 0])
    guided = guidance.cfg_model(model, y, 2.5, null_class=3)(x, t)
    assert calls == [10]
    cond, uncond = model(x, t, y), model(x, t, torch.full((5,), 3))
    assert torch.allclose(guided, uncond + 2.5 * (cond - uncond), atol=1e-12)
    single_label = guidance.cfg_model(model, 1, 2.5, null_class=3)(x, 7)
    assert torch.allclose(single_label, guidance.cfg_model(model, torch.ones(5, dtype=torch.int64), 2.5, 3)(x, 7))


@pytest.mark.parametrize("sampler, steps", [("ddpm", None), ("ddim", 50)])
def test_cfg_at_scale_one_samples_the_class(mixture, schedule, sampler, steps):
    """w = 1 is the conditional model: the run equals sampling the component itself, whose statistics are
    those of N(mu_k, Sigma_k) up to the sampler's discretisation (about 0.01 in the mean and 0.05 in the
    covariance with T = 100 here; tolerances 0.05 and 0.08, standard errors ~0.01)."""
    samples = run(guidance.cfg_model(conditional_model(mixture, schedule), CLASS, 1.0, 3), schedule, sampler, steps)
    component = mixture.component(CLASS)
    direct = run(lambda x, t: component.eps(x, t, schedule), schedule, sampler, steps)
    assert torch.allclose(samples, direct, atol=1e-10)
    assert torch.allclose(samples.mean(0), component.means[0], atol=0.05)
    assert torch.allclose(torch.cov(samples.T), component.covariances[0], atol=0.08)


@pytest.mark.parametrize("sampler, steps", [("ddpm", None), ("ddim", 50)])
def test_cfg_above_one_concentrates_samples_monotonically(mixture, schedule, sampler, steps):
    model = conditional_model(mixture, schedule)
    confidence, spread = [], []
    for w in (0.0, 1.0, 2.0, 4.0):
        samples = run(guidance.cfg_model(model, CLASS, w, 3), schedule, sampler, steps)
        confidence.append(mixture.log_responsibilities(samples, 0, schedule)[:, CLASS].exp().mean().item())
        spread.append(torch.cov(samples.T).trace().item())
    assert confidence[0] < 0.4 < 0.99 < confidence[1] < confidence[2] < confidence[3]
    assert spread[0] > spread[1] > spread[2] > spread[3]


# ---------------------------------------------------------------- classifier guidance
@pytest.mark.parametrize("t", [0, 30, 70, 99])
def test_exact_classifier_guidance_at_scale_one_is_the_class_eps(mixture, schedule, t):
    """Bayes: grad log p(x_t | k) = grad log p(x_t) + grad log p(k | x_t), so the guided mixture eps is
    component k's eps, pointwise (float64 round-off)."""
    unconditional = lambda x, step: mixture.eps(x, step, schedule)
    classifier = lambda x, step: mixture.log_responsibilities(x, step, schedule)
    labels = torch.tensor([0, 1, 2, 1, 0, 2])
    x = 2 * gaussian(6, 2, seed=t)
    with torch.no_grad():        # as inside sample(): the gradient must still be computed
        guided = guidance.classifier_guided_model(unconditional, classifier, labels, 1.0, schedule)(x, t)
    expected = torch.stack([mixture.component(k).eps(x[i:i + 1], t, schedule)[0] for i, k in enumerate(labels.tolist())])
    assert torch.allclose(guided, expected, atol=1e-8)


def test_exact_classifier_guidance_samples_the_class(mixture, schedule):
    unconditional = lambda x, step: mixture.eps(x, step, schedule)
    classifier = lambda x, step: mixture.log_responsibilities(x, step, schedule)
    samples = run(guidance.classifier_guided_model(unconditional, classifier, CLASS, 1.0, schedule), schedule,
                  "ddim", 50)
    component = mixture.component(CLASS)
    assert torch.allclose(samples.mean(0), component.means[0], atol=0.05)
    assert torch.allclose(torch.cov(samples.T), component.covariances[0], atol=0.08)


def test_classifier_gradient_matches_autograd_of_the_chosen_class(mixture, schedule):
    x = gaussian(4, 2)
    labels = torch.tensor([2, 0, 1, 1])
    gradient = guidance.classifier_gradient(lambda z, step: mixture.log_responsibilities(z, step, schedule), x, 10,
                                            labels)
    for i, k in enumerate(labels.tolist()):
        point = x[i:i + 1].clone().requires_grad_(True)
        (expected,) = torch.autograd.grad(mixture.log_responsibilities(point, 10, schedule)[0, k], point)
        assert torch.allclose(gradient[i], expected[0], atol=1e-12)


# ---------------------------------------------------------------- inpainting
@pytest.fixture
def correlated():
    """N((0.5, -0.3), [[1, 0.8], [0.8, 1]]): given x_0 = 1, x_1 ~ N(-0.3 + 0.8 * 0.5, 1 - 0.64) = N(0.1, 0.36)."""
    return GaussianMixture(torch.tensor([[0.5, -0.3]], dtype=torch.float64),
                           torch.tensor([[[1.0, 0.8], [0.8, 1.0]]], dtype=torch.float64))


def inpaint_second_coordinate(correlated, schedule, **kwargs):
    known = torch.zeros(N_SAMPLES, 2, dtype=torch.float64)
    known[:, 0] = 1.0
    known[:, 1] = 123.0         # ignored: unknown region
    return guidance.inpaint(lambda x, t: correlated.eps(x, t, schedule), schedule, known, torch.tensor([[1, 0]]),
                            progress=False, **kwargs).images


@pytest.mark.parametrize("sampler, steps, eta", [("ddpm", None, 0.0), ("ddim", 50, 1.0)])
def test_inpainting_keeps_the_known_region_and_approaches_the_conditional_mean(correlated, schedule, sampler,
                                                                               steps, eta):
    """The replacement method is approximate: measured, plain replacement lands the mean at about -0.03 to
    -0.05 (true 0.1; unconditional -0.3), so the test asks only that it moves most of the way (error < 0.2).
    RePaint resampling (r = 10) brings it within 0.05 (standard error ~0.01)."""
    plain = inpaint_second_coordinate(correlated, schedule, sampler=sampler, steps=steps, eta=eta, seed=0)
    resampled = inpaint_second_coordinate(correlated, schedule, sampler=sampler, steps=steps, eta=eta, seed=0,
                                          resample=10)
    for samples in (plain, resampled):
        assert torch.all(samples[:, 0] == 1.0)
    plain_error, resampled_error = abs(plain[:, 1].mean().item() - 0.1), abs(resampled[:, 1].mean().item() - 0.1)
    assert plain_error < 0.2
    assert resampled_error < 0.05 and resampled_error < plain_error


def test_inpainting_is_deterministic_with_a_seed(correlated, schedule):
    first = inpaint_second_coordinate(correlated, schedule, sampler="ddim", steps=10, eta=1.0, seed=3, resample=2)
    second = inpaint_second_coordinate(correlated, schedule, sampler="ddim", steps=10, eta=1.0, seed=3, resample=2)
    other = inpaint_second_coordinate(correlated, schedule, sampler="ddim", steps=10, eta=1.0, seed=4, resample=2)
    assert torch.equal(first, second) and not torch.equal(first, other)


def test_inpainting_clip_x0_keeps_the_generated_region_in_range(schedule):
    """With DDIM's last step returning x0_hat, clamping x0_hat keeps every generated pixel in [-1, 1]."""
    def wild(x, t):
        return -5 * x
    known, mask = torch.zeros(8, 2), torch.tensor([[1, 0]])
    options = dict(sampler="ddim", steps=5, seed=0, progress=False)
    clipped = guidance.inpaint(wild, schedule, known, mask, clip_x0=True, **options).images
    unclipped = guidance.inpaint(wild, schedule, known, mask, **options).images
    assert clipped[:, 1].abs().max() <= 1.0 and unclipped[:, 1].abs().max() > 1.0
    assert torch.all(clipped[:, 0] == 0.0)


# ---------------------------------------------------------------- the course's U-Net
def test_guidance_and_inpainting_run_with_a_class_conditional_unet(schedule):
    torch.manual_seed(0)
    net = UNet(in_channels=1, base_channels=8, channel_mults=(1, 2), num_classes=10)
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([5, 50, 99])
    with torch.no_grad():
        guided = guidance.cfg_model(net, torch.tensor([1, 4, 9]), 3.0, null_class=net.num_classes)(x, t)
        cond, uncond = net(x, t, y=torch.tensor([1, 4, 9])), net(x, t)
    assert torch.allclose(guided, uncond + 3.0 * (cond - uncond), atol=1e-5)
    known, mask = torch.rand(3, 1, 8, 8) * 2 - 1, torch.zeros(1, 1, 8, 8)
    mask[..., :, :4] = 1
    filled = guidance.inpaint(guidance.cfg_model(net, 2, 2.0, 10), schedule, known, mask, steps=5, sampler="ddim",
                              seed=0, progress=False).images
    assert torch.equal(filled[..., :4], known[..., :4]) and torch.isfinite(filled).all()


# ---------------------------------------------------------------- bad inputs
def test_bad_inputs_raise_clear_errors(mixture, schedule):
    model = conditional_model(mixture, schedule)
    x = gaussian(3, 2)
    with pytest.raises(ValueError, match="finite number >= 0"):
        guidance.cfg_model(model, 1, -1.0, 3)
    with pytest.raises(ValueError, match="finite number >= 0"):
        guidance.cfg_model(model, 1, float("nan"), 3)
    with pytest.raises(TypeError, match="number"):
        guidance.cfg_model(model, 1, "7", 3)
    with pytest.raises(ValueError, match=r"0\.\.2"):
        guidance.cfg_model(model, 3, 1.0, 3)
    with pytest.raises(TypeError, match="integer class labels"):
        guidance.cfg_model(model, torch.tensor([1.0, 0.0, 1.0]), 1.0, 3)
    with pytest.raises(ValueError, match="holds 2 labels but x_t holds a batch of 3"):
        guidance.cfg_model(model, torch.tensor([1, 0]), 1.0, 3)(x, 5)
    with pytest.raises(TypeError, match="callable"):
        guidance.cfg_model("net", 1, 1.0, 3)
    with pytest.raises(TypeError, match="NoiseSchedule"):
        guidance.classifier_guided_model(model, model, 1, 1.0, schedule="linear")
    with pytest.raises(ValueError, match="out of range for a classifier with 3 classes"):
        guidance.classifier_gradient(lambda z, step: mixture.log_responsibilities(z, step, schedule), x, 5, 4)
    with pytest.raises(ValueError, match="log-probabilities of shape"):
        guidance.classifier_gradient(lambda z, step: z.sum(1), x, 5, 0)
    unconditional = lambda z, step: mixture.eps(z, step, schedule)
    with pytest.raises(ValueError, match="only 0 .* and 1"):
        guidance.inpaint(unconditional, schedule, x, torch.full((1, 2), 0.5))
    with pytest.raises(ValueError, match="broadcast"):
        guidance.inpaint(unconditional, schedule, x, torch.ones(3, 3))
    with pytest.raises(ValueError, match="resample must be >= 1"):
        guidance.inpaint(unconditional, schedule, x, torch.ones(1, 2), resample=0)
    with pytest.raises(ValueError, match="sampler"):
        guidance.inpaint(unconditional, schedule, x, torch.ones(1, 2), sampler="euler")
    with pytest.raises(ValueError, match="steps must be None"):
        guidance.inpaint(unconditional, schedule, x, torch.ones(1, 2), steps=10)
