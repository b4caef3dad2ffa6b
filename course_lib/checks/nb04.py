"""Exercises of notebook 04, training: timesteps, the L_simple loss, the EMA update, one training step, label dropout."""
from __future__ import annotations

import torch

from .. import training, unet
from ..forward import q_sample
from ..schedules import NoiseSchedule
from ._framework import Case, Exercise, Mistake, register, seeded_generator, seeded_randn




# ---------------------------------------------------------------- t ~ U{0, ..., T-1}
register(Exercise(
    id="04.sample_timesteps",
    title="draw one timestep per image",
    reference=training.sample_timesteps,
    cases=lambda: [Case((8, 1000, seeded_generator(0)), label="batch 8, T=1000"),
                   Case((500, 5, seeded_generator(1)), label="batch 500, T=5"),
                   Case((3, 50, seeded_generator(2)), label="batch 3, T=50")],
    mistakes=[
        Mistake("1-based", lambda batch, T, generator: torch.randint(1, T + 1, (batch,), generator=generator),
                "Timesteps are 0-based in this course: t lies in 0..T-1, so torch.randint(0, T, ...) "
                "(randint's upper end is excluded)."),
        Mistake("never T-1", lambda batch, T, generator: torch.randint(0, T - 1, (batch,), generator=generator),
                "torch.randint excludes its upper end already: randint(0, T - 1) never draws the last, noisiest "
                "timestep T-1. Use randint(0, T, ...)."),
        Mistake("one t for the batch", lambda batch, T, generator:
                torch.randint(0, T, (1,), generator=generator).expand(batch).clone(),
                "Draw one independent t per image, shape (batch,): each image in the batch learns a different "
                "noise level, which keeps the gradient's estimate of the average over t unbiased and less noisy."),
    ],
    hint="Return torch.randint(0, T, (batch,), generator=generator): int64, shape (batch,).",
))


# ---------------------------------------------------------------- L_simple
def _toy_model(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A fixed stand-in for a network: depends on x_t and t, so every mistake changes the loss."""
    return 0.5 * x_t + 0.001 * t.to(x_t.dtype).reshape(-1, *([1] * (x_t.ndim - 1)))


def _reference_loss(model, x0, t, noise, schedule):
    return training.diffusion_loss(model, x0, schedule, t=t, noise=noise)


def _loss_cases():
    coarse = NoiseSchedule.linear(T=50, beta_start=0.01, beta_end=0.3)
    return [Case((_toy_model, seeded_randn(4, 1, 8, 8, seed=1), torch.tensor([0, 10, 500, 999]), seeded_randn(4, 1, 8, 8, seed=2),
                  NoiseSchedule.linear(1000)), label="4 digits, linear T=1000"),
            Case((_toy_model, seeded_randn(3, 3, 4, 4, seed=3), torch.tensor([49, 1, 20]), seeded_randn(3, 3, 4, 4, seed=4), coarse),
                 label="3 RGB images, coarse T=50")]


def _loss_with(target="eps", root=True, reduce="mean"):
    def wrong(model, x0, t, noise, schedule):
        abar = schedule.alpha_bars[t].to(x0.dtype).reshape(-1, *([1] * (x0.ndim - 1)))
        x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * noise if root else abar * x0 + (1 - abar) * noise
        squared = (model(x_t, t) - (noise if target == "eps" else x0)) ** 2
        return squared.sum() if reduce == "sum" else squared.mean()
    return wrong


register(Exercise(
    id="04.diffusion_loss",
    title="the L_simple loss",
    reference=_reference_loss,
    cases=_loss_cases,
    mistakes=[
        Mistake("target x0", _loss_with(target="x0"),
                "The network predicts the noise: compare model(x_t, t) with `noise`, not with x0."),
        Mistake("no square roots", _loss_with(root=False),
                "x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise: the coefficients are square roots, "
                "so that the variance stays 1 (use q_sample)."),
        Mistake("sum, not mean", _loss_with(reduce="sum"),
                "Average the squared errors over every element (F.mse_loss or .mean()): a sum grows with the "
                "batch and the image size, and so would the learning rate you need."),
    ],
    hint="x_t = q_sample(x0, t, noise, schedule); return ((model(x_t, t) - noise) ** 2).mean().",
))


# ---------------------------------------------------------------- EMA
def ema_update(ema_params: list, params: list, decay: float) -> list:
    """theta_ema <- rho theta_ema + (1 - rho) theta (rho = decay), for each pair of tensors; returns new tensors."""
    return [decay * e + (1 - decay) * p for e, p in zip(ema_params, params)]


def _ema_cases():
    return [Case(([seeded_randn(3, 4, seed=1), seeded_randn(4, seed=2)], [seeded_randn(3, 4, seed=3), seeded_randn(4, seed=4)], 0.9),
                 label="two tensors, beta=0.9"),
            Case(([seeded_randn(2, 2, seed=5)], [seeded_randn(2, 2, seed=6)], 0.999), label="one tensor, beta=0.999")]


register(Exercise(
    id="04.ema_update",
    title="one EMA update",
    reference=ema_update,
    cases=_ema_cases,
    mistakes=[
        Mistake("beta on the new weights", lambda ema, params, beta:
                [(1 - beta) * e + beta * p for e, p in zip(ema, params)],
                "beta weighs the old average: theta_ema <- beta * theta_ema + (1 - beta) * theta. With beta "
                "on the new weights the 'average' just follows the model."),
        Mistake("returns the model", lambda ema, params, beta: [p.clone() for p in params],
                "Mix the two: the average moves only a fraction (1 - beta) of the way towards the model."),
        Mistake("forgets 1 - beta", lambda ema, params, beta: [beta * e + p for e, p in zip(ema, params)],
                "The new weights enter with the factor (1 - beta): the two factors must add up to 1."),
    ],
    hint="Return [beta * e + (1 - beta) * p for e, p in zip(ema_params, params)].",
))


# ---------------------------------------------------------------- one training step (Alg. 1)
def training_step(model, ema, optimizer, x0, schedule, generator) -> float:
    """One DDPM training step (Ho et al. 2020, Alg. 1); model, optimizer and ema are updated in place.

    t = randint(0, T, (B,), generator), then noise = randn(x0.shape, generator); L_simple through the library's
    diffusion_loss; zero_grad, backward, step; ema.update(model). Returns the loss before the step as a float.
    """
    t = torch.randint(0, schedule.T, (x0.shape[0],), generator=generator)
    noise = torch.randn(x0.shape, generator=generator)
    loss = training.diffusion_loss(model, x0, schedule, t=t, noise=noise)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    ema.update(model)
    return loss.item()


def _step_cases():
    cases = []
    for seed, channels, schedule, label in [
            (0, 1, NoiseSchedule.cosine(1000), "a small U-Net, cosine T=1000"),
            (1, 1, NoiseSchedule.linear(T=50, beta_start=0.01, beta_end=0.3), "linear T=50"),
            (2, 3, NoiseSchedule.cosine(100), "RGB images, cosine T=100")]:
        torch.manual_seed(seed)
        model = unet.UNet(in_channels=channels, base_channels=8, channel_mults=(1,), attention=False)
        ema = training.EMA(model, beta=0.9)
        with torch.no_grad():       # the average lags the weights, as after earlier steps: an EMA mistake shows
            for parameter in model.parameters():
                parameter.add_(0.05 * seeded_randn(*parameter.shape, seed=seed + 30))
        cases.append(Case((model, ema, torch.optim.AdamW(model.parameters(), lr=1e-2),
                           seeded_randn(4, channels, 8, 8, seed=seed + 10).clamp(-1, 1), schedule,
                           seeded_generator(seed + 20)), label=label))
    return cases


def _step_with(order="t first", step=True, ema="after", target="noise", one_t=False):
    def wrong(model, ema_, optimizer, x0, schedule, generator):
        if order == "t first":
            t = torch.randint(0, schedule.T, (1 if one_t else x0.shape[0],), generator=generator).expand(x0.shape[0])
            noise = torch.randn(x0.shape, generator=generator)
        else:
            noise = torch.randn(x0.shape, generator=generator)
            t = torch.randint(0, schedule.T, (x0.shape[0],), generator=generator)
        prediction = model(q_sample(x0, t, noise, schedule), t)
        loss = ((prediction - (noise if target == "noise" else x0)) ** 2).mean()
        if ema == "before":
            ema_.update(model)
        optimizer.zero_grad()
        loss.backward()
        if step:
            optimizer.step()
        if ema == "after":
            ema_.update(model)
        return loss.item()
    return wrong


register(Exercise(
    id="04.training_step",
    title="one training step (DDPM Algorithm 1)",
    reference=training_step,
    cases=_step_cases,
    mistakes=[
        Mistake("no optimizer.step()", _step_with(step=False),
                "The gradients were computed but never used: call optimizer.step() after loss.backward(), or the "
                "weights do not move."),
        Mistake("no EMA update", _step_with(ema="none"),
                "The average must follow the model: call ema.update(model) after optimizer.step()."),
        Mistake("EMA before the optimizer step", _step_with(ema="before"),
                "Update the EMA after optimizer.step(): before it, the average absorbs the old weights and lags "
                "one step behind."),
        Mistake("noise drawn before t", _step_with(order="noise first"),
                "Draw t first, then the noise: the generator hands out its numbers in order, so swapping the two "
                "draws gives other timesteps and other noise than the check's (and the docstring's) recipe."),
        Mistake("x0 as the target", _step_with(target="x0"),
                "The network predicts the noise: the loss compares model(x_t, t) with `noise`, not with x0."),
        Mistake("one t for the batch", _step_with(one_t=True),
                "Draw one timestep per image, torch.randint(0, schedule.T, (B,), generator=generator), not one "
                "for the whole batch."),
    ],
    hint="t = torch.randint(0, schedule.T, (B,), generator=generator); noise = torch.randn(x0.shape, generator=generator); "
         "loss = ((model(forward.q_sample(x0, t, noise, schedule), t) - noise) ** 2).mean(); optimizer.zero_grad(); "
         "loss.backward(); optimizer.step(); ema.update(model); return loss.item().",
    updates=("model", "ema", "optimizer"),
    rtol=1e-4, atol=1e-6,
    time_limit=30.0,                    # a cold start builds the optimizer machinery first (seconds on a busy CPU)
))


# ---------------------------------------------------------------- label dropout
def _dropout_cases():
    return [Case((torch.arange(40) % 10, 0.3, 10, seeded_generator(0)), label="40 labels, p=0.3"),
            Case((torch.tensor([2, 0, 1, 2, 1, 0, 2]), 0.5, 3, seeded_generator(1)), label="3 classes, p=0.5"),
            Case((torch.arange(1000) % 10, 0.1, 10, seeded_generator(2)), label="1000 labels, p=0.1")]


def _dropout_with(keep_if_below=False, fill=None):
    def wrong(y, p, null_class, generator):
        u = torch.rand(y.shape, generator=generator)
        drop = u >= p if keep_if_below else u < p
        return torch.where(drop, torch.full_like(y, null_class if fill is None else fill), y)
    return wrong


register(Exercise(
    id="04.drop_labels",
    title="label dropout for classifier-free guidance",
    reference=training.drop_labels,
    cases=_dropout_cases,
    mistakes=[
        Mistake("drops with probability 1 - p", _dropout_with(keep_if_below=True),
                "Drop where torch.rand(...) < p: that happens with probability p. With >= p you drop 1 - p "
                "of the labels and the net rarely sees any label."),
        Mistake("replaces with 0", _dropout_with(fill=0),
                "0 is a real class (the digit 0). 'No label' is the extra null class, null_class = num_classes."),
        Mistake("drops the first labels", lambda y, p, null_class, generator:
                torch.where(torch.arange(len(y)) < round(p * len(y)), torch.full_like(y, null_class), y),
                "Choose the dropped labels at random (torch.rand(y.shape, generator=generator) < p), not the "
                "first p * B: batches are shuffled, but the null class must be independent of everything else."),
    ],
    hint="drop = torch.rand(y.shape, generator=generator) < p; return torch.where(drop, null_class, y) "
         "(torch.full_like(y, null_class) for the null labels).",
))
