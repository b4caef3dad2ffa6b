"""Exercises of notebook 04, training: timesteps, the L_simple loss, the EMA update, one training step, label dropout."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import training, unet
from ..forward import q_sample
from ..schedules import NoiseSchedule
from ._framework import Case, Exercise, Mistake, register, seeded_generator, seeded_randn


# ---------------------------------------------------------------- t ~ U{0, ..., T-1}
register(Exercise(
    id="04.sample_timesteps",
    title="draw one timestep per image",
    reference=training.sample_timesteps,
    contract="an int64 tensor of shape (batch,), drawn with torch.randint(0, T, (batch,), generator=generator)",
    cases=lambda: [Case((8, 1000, seeded_generator(0)), label="batch 8, T=1000"),
                   Case((500, 5, seeded_generator(1)), label="batch 500, T=5"),
                   Case((3, 51, seeded_generator(2)), label="batch 3, T=51"),
                   Case((4, 1, seeded_generator(3)), label="batch 4, T=1: only t = 0")],
    alternatives=[lambda batch, T, generator: torch.randint(T, (batch,), generator=generator),
                  lambda batch, T, generator: torch.randint(low=0, high=T, size=(batch,), generator=generator,
                                                            dtype=torch.int64)],
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
        Mistake("global random stream", lambda batch, T, generator: torch.randint(0, T, (batch,)),
                "Draw from the `generator` you are given (generator=generator): the same seed must give the "
                "same timesteps, whatever else used torch's global random state."),
        Mistake("scaled uniform floats", lambda batch, T, generator:
                (torch.rand(batch, generator=generator) * T).long(),
                "(torch.rand(...) * T).long() is uniform too, but it is another random stream: the course's "
                "convention is torch.randint(0, T, (batch,), generator=generator), as the stub says."),
        Mistake("float timesteps", lambda batch, T, generator:
                torch.randint(0, T, (batch,), generator=generator).float(),
                "Timesteps are indices: return int64 (torch.randint's default), which can index schedule tensors."),
    ],
    hint="Return torch.randint(0, T, (batch,), generator=generator): int64, shape (batch,).",
))


# ---------------------------------------------------------------- L_simple
class _ToyModel(nn.Module):
    """A stand-in for a network with one learnable gain: the loss must carry gradient to it."""

    def __init__(self):
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(0.5))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.gain * x_t + 0.001 * t.to(x_t.dtype).reshape(-1, *([1] * (x_t.ndim - 1)))


def _reference_loss(model, x0, t, noise, schedule):
    return training.diffusion_loss(model, x0, schedule, t=t, noise=noise)


def _loss_cases():
    coarse = NoiseSchedule.linear(T=50, beta_start=0.01, beta_end=0.3)
    return [Case((_ToyModel(), seeded_randn(4, 1, 8, 8, seed=1), torch.tensor([0, 1, 500, 999]),
                  seeded_randn(4, 1, 8, 8, seed=2), NoiseSchedule.linear(1000)), label="4 digits, linear T=1000"),
            Case((_ToyModel(), seeded_randn(3, 3, 4, 4, seed=3), torch.tensor([49, 0, 1]), seeded_randn(3, 3, 4, 4, seed=4),
                  coarse), label="3 RGB images, coarse T=50, t=[49, 0, 1]"),
            Case((_ToyModel(), seeded_randn(2, 1, 4, 4, seed=5), torch.tensor([0, 50]), seeded_randn(2, 1, 4, 4, seed=6),
                  NoiseSchedule.cosine(51)), label="cosine T=51, t=[0, 50]")]


def _gradient_reaches_the_model(args, kwargs, loss):
    """The loss must be differentiable with respect to the model's parameters, with the reference's gradient."""
    model = args[0]
    if not loss.requires_grad:
        return ("the loss carries no gradient to the model's parameters (computed under torch.no_grad(), "
                "or .detach()ed), so training could not learn from it")
    (mine,) = torch.autograd.grad(loss, model.gain)
    (want,) = torch.autograd.grad(_reference_loss(*args), model.gain)
    if not torch.allclose(mine, want, rtol=1e-3, atol=1e-6):
        return f"the loss's gradient for the model's parameter is {mine.item():.4g}, expected {want.item():.4g}"
    return None


def _loss_with(target="eps", root=True, reduce="mean", shift=0):
    def wrong(model, x0, t, noise, schedule):
        abar = schedule.alpha_bars[t - shift].to(x0.dtype).reshape(-1, *([1] * (x0.ndim - 1)))
        x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * noise if root else abar * x0 + (1 - abar) * noise
        squared = (model(x_t, t) - (noise if target == "eps" else x0)) ** 2
        return squared.sum() if reduce == "sum" else squared.mean()
    return wrong


def _loss_no_grad(model, x0, t, noise, schedule):
    with torch.no_grad():
        return _reference_loss(model, x0, t, noise, schedule)


def _loss_mse(model, x0, t, noise, schedule):
    ab = schedule.alpha_bars[t].reshape(-1, *([1] * (x0.ndim - 1)))
    x_t = (ab.sqrt() * x0.double() + (1 - ab).sqrt() * noise.double()).float()
    return F.mse_loss(model(x_t, t), noise)


register(Exercise(
    id="04.diffusion_loss",
    title="the L_simple loss",
    reference=_reference_loss,
    contract="a float32 tensor of shape () (one number) that carries gradient to the model's parameters",
    cases=_loss_cases,
    after_call=_gradient_reaches_the_model,
    alternatives=[_loss_mse, lambda model, x0, t, noise, schedule:
                  torch.mean(torch.square(noise - model(q_sample(x0, t, noise, schedule), t)))],
    mistakes=[
        Mistake("target x0", _loss_with(target="x0"),
                "The network predicts the noise: compare model(x_t, t) with `noise`, not with x0."),
        Mistake("no square roots", _loss_with(root=False),
                "x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise: the coefficients are square roots, "
                "so that the variance stays 1 (use q_sample)."),
        Mistake("sum, not mean", _loss_with(reduce="sum"),
                "Average the squared errors over every element (F.mse_loss or .mean()): a sum grows with the "
                "batch and the image size, and so would the learning rate you need."),
        Mistake("alpha_bars[t - 1]", _loss_with(shift=1),
                "alpha_bars[t - 1] at t = 0 is alpha_bars[-1], the noisiest value (index -1 wraps around); "
                "x_t at 0-based step t uses alpha_bars[t] (q_sample does this for you)."),
        Mistake("detached or under no_grad", _loss_no_grad,
                "Return the loss as computed: no .detach(), no torch.no_grad() around it. The optimiser needs "
                "its gradient with respect to the model's weights, and loss.backward() needs the graph."),
        Mistake("model sees x0", lambda model, x0, t, noise, schedule: ((model(x0, t) - noise) ** 2).mean(),
                "Feed the network the noisy x_t = q_sample(x0, t, noise, schedule), not the clean x0: it must "
                "find the noise in what it sees."),
        Mistake("a Python float", lambda model, x0, t, noise, schedule: _reference_loss(model, x0, t, noise, schedule).item(),
                "Return the tensor, not loss.item(): a Python float has no gradient to train with."),
    ],
    hint="x_t = q_sample(x0, t, noise, schedule); return ((model(x_t, t) - noise) ** 2).mean().",
))


# ---------------------------------------------------------------- EMA
def ema_update(ema_params: list, params: list, decay: float) -> list:
    """theta_ema <- rho theta_ema + (1 - rho) theta (rho = decay), for each pair of tensors; returns new tensors."""
    return [decay * e + (1 - decay) * p for e, p in zip(ema_params, params)]


def _ema_cases():
    return [Case(([seeded_randn(3, 4, seed=1), seeded_randn(4, seed=2)], [seeded_randn(3, 4, seed=3), seeded_randn(4, seed=4)], 0.9),
                 label="two tensors, decay=0.9"),
            Case(([seeded_randn(2, 2, seed=5)], [seeded_randn(2, 2, seed=6)], 0.999), label="one tensor, decay=0.999"),
            Case(([seeded_randn(5, seed=7)], [seeded_randn(5, seed=8)], 0.0), label="decay=0: the model itself")]


register(Exercise(
    id="04.ema_update",
    title="one EMA update",
    reference=ema_update,
    contract="a new list of tensors, one per pair, each of the pair's shape and dtype",
    cases=_ema_cases,
    alternatives=[lambda ema, params, decay: [torch.lerp(p, e, decay) for e, p in zip(ema, params)],
                  lambda ema, params, decay: [e + (1 - decay) * (p - e) for e, p in zip(ema, params)]],
    mistakes=[
        Mistake("decay on the new weights", lambda ema, params, decay:
                [(1 - decay) * e + decay * p for e, p in zip(ema, params)],
                "decay weighs the old average: theta_ema <- decay * theta_ema + (1 - decay) * theta. With decay "
                "on the new weights the 'average' just follows the model."),
        Mistake("returns the model", lambda ema, params, decay: [p.clone() for p in params],
                "Mix the two: the average moves only a fraction (1 - decay) of the way towards the model."),
        Mistake("forgets 1 - decay", lambda ema, params, decay: [decay * e + p for e, p in zip(ema, params)],
                "The new weights enter with the factor (1 - decay): the two factors must add up to 1."),
        Mistake("in place", lambda ema, params, decay: [e.mul_(decay).add_((1 - decay) * p) for e, p in zip(ema, params)],
                "e.mul_(...) changes the caller's tensors (a training loop does that with torch.no_grad(), but "
                "this exercise returns new tensors): write decay * e + (1 - decay) * p."),
        Mistake("a generator", lambda ema, params, decay: (decay * e + (1 - decay) * p for e, p in zip(ema, params)),
                "(... for ...) in round brackets is a generator, not a list: use square brackets, "
                "[decay * e + (1 - decay) * p for e, p in zip(ema_params, params)]."),
    ],
    hint="Return [decay * e + (1 - decay) * p for e, p in zip(ema_params, params)].",
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
        # SGD, not the notebook's AdamW: Adam's first step is lr * sign(gradient), so a gradient entry near zero
        # flips with rounding and a correct answer computed in another order would move that weight the other way.
        cases.append(Case((model, ema, torch.optim.SGD(model.parameters(), lr=0.1),
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


def _step_with_library(model, ema, optimizer, x0, schedule, generator):
    """The same step through the library's pieces: sample_timesteps, then diffusion_loss, float(loss)."""
    t = training.sample_timesteps(x0.shape[0], schedule.T, generator)
    loss = training.diffusion_loss(model, x0, schedule, t=t, noise=torch.randn(x0.shape, generator=generator))
    optimizer.zero_grad(set_to_none=False)
    loss.backward()
    optimizer.step()
    ema.update(model)
    return float(loss)


def _step_float64_loss(model, ema, optimizer, x0, schedule, generator):
    """q_sample written out with the float64 schedule values; the loss by F.mse_loss; returned with .item()."""
    t = torch.randint(0, schedule.T, (x0.shape[0],), generator=generator)
    noise = torch.randn(x0.shape, generator=generator)
    abar = schedule.alpha_bars[t].reshape(-1, 1, 1, 1)
    x_t = (abar.sqrt() * x0.double() + (1 - abar).sqrt() * noise.double()).float()
    loss = F.mse_loss(model(x_t, t), noise)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    ema.update(model)
    return loss.item()


def _step_returns_tensor(model, ema, optimizer, x0, schedule, generator):
    t = torch.randint(0, schedule.T, (x0.shape[0],), generator=generator)
    loss = training.diffusion_loss(model, x0, schedule, t=t, noise=torch.randn(x0.shape, generator=generator))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    ema.update(model)
    return loss


register(Exercise(
    id="04.training_step",
    title="one training step (DDPM Algorithm 1)",
    reference=training_step,
    contract="a Python float, the loss before the step (loss.item()); model, optimizer and ema are updated in place",
    cases=_step_cases,
    alternatives=[_step_with_library, _step_float64_loss],
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
        Mistake("returns the loss tensor", _step_returns_tensor,
                "Return loss.item(), a Python float: a tensor that still holds the graph keeps every "
                "activation of the step alive in a training loop's list of losses."),
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
            Case((torch.arange(1000) % 10, 0.1, 10, seeded_generator(2)), label="1000 labels, p=0.1"),
            Case((torch.arange(6) % 3, 1.0, 3, seeded_generator(3)), label="p=1: every label dropped"),
            Case((torch.arange(6) % 3, 0.0, 3, seeded_generator(4)), label="p=0: none dropped")]


def _dropout_in_place(y, p, null_class, generator):
    y[torch.rand(y.shape, generator=generator) < p] = null_class
    return y


def _dropout_by_index(y, p, null_class, generator):
    out = y.clone()
    for index, u in enumerate(torch.rand(y.shape, generator=generator).tolist()):
        if u < p:
            out[index] = null_class
    return out


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
    contract="a new int64 tensor of y's shape; drop where torch.rand(y.shape, generator=generator) < p",
    cases=_dropout_cases,
    alternatives=[lambda y, p, null_class, generator: y.masked_fill(torch.rand(y.shape, generator=generator) < p,
                                                                    null_class),
                  _dropout_by_index],
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
        Mistake("y changed in place", _dropout_in_place,
                "y[drop] = null_class overwrites the caller's labels (the batch is reused for the loss). Build a "
                "new tensor: torch.where(drop, torch.full_like(y, null_class), y), or y.clone() first."),
        Mistake("global random stream", lambda y, p, null_class, generator:
                torch.where(torch.rand(y.shape) < p, torch.full_like(y, null_class), y),
                "Draw from the `generator` you are given: torch.rand(y.shape, generator=generator) < p, so a seed "
                "gives the same dropped labels."),
        Mistake("float labels", lambda y, p, null_class, generator:
                torch.where(torch.rand(y.shape, generator=generator) < p, float(null_class), y.float()),
                "Labels are class indices: keep them int64 (torch.full_like(y, null_class) has y's dtype); the "
                "model's embedding table rejects float labels."),
    ],
    hint="drop = torch.rand(y.shape, generator=generator) < p; return torch.where(drop, null_class, y) "
         "(torch.full_like(y, null_class) for the null labels).",
))
