"""A small time-conditioned MLP for the 2-D toys, denoising score matching, and a seeded training loop.

    TimeMLP            (x (B, d), time (B,)) -> (B, d); time in [0, 1000] like the U-Net's timesteps
    time_from_sigma    a noise level σ ∈ [σ_min, σ_max] as a time in [0, 1000] (log-uniform)
    dsm_loss           denoising score matching (Vincent 2011; Song & Ermon 2019, eq. 5) with weight σ²
    score_fn           the trained net as a score function s(x, σ) = −net(x, t(σ)) / σ
    fit                Adam on a loss closure for a number of steps, seeded, with a progress bar

With the weight λ(σ) = σ², DSM's ‖σ s_θ(x + σz, σ) + z‖² is ‖z − ε̂‖² for ε̂ = −σ s_θ: denoising score matching
*is* the ε-prediction loss L_simple of DDPM, on VE noise levels (Song & Ermon 2019; Ho et al. 2020, sec. 3.2).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .progress import progress_bar
from .unet import sinusoidal_embedding


class TimeMLP(nn.Module):
    """An MLP on [x, sinusoidal embedding of time]: ``depth`` hidden layers of ``hidden`` SiLU units, output of x's size."""

    def __init__(self, dim: int = 2, hidden: int = 128, depth: int = 3, time_dim: int = 32):
        super().__init__()
        self.time_dim = time_dim
        layers, width = [], dim + time_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        self.net = nn.Sequential(*layers, nn.Linear(width, dim))

    def forward(self, x: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        embedding = sinusoidal_embedding(time, self.time_dim).to(x.dtype)
        return self.net(torch.cat([x, embedding], dim=1))


def time_from_sigma(sigma: torch.Tensor, sigma_min: float, sigma_max: float) -> torch.Tensor:
    """1000 · (log σ − log σ_min) / (log σ_max − log σ_min): noise levels spread evenly over the net's time input."""
    return 1000 * (sigma.log() - math.log(sigma_min)) / (math.log(sigma_max) - math.log(sigma_min))


def dsm_loss(model, x0: torch.Tensor, sigma_min: float, sigma_max: float,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """E_{σ, x0, z} ‖net(x0 + σ z, t(σ)) − z‖², σ log-uniform in [σ_min, σ_max] (Song & Ermon 2019, eq. 5-6 with
    λ(σ) = σ², the net predicting ε̂ = −σ s_θ). x0: (B, d). Returns a scalar."""
    u = torch.rand(x0.shape[0], generator=generator, dtype=torch.float64)
    sigma = torch.exp(math.log(sigma_min) + u * (math.log(sigma_max) - math.log(sigma_min)))
    z = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    noisy = x0 + sigma.to(x0.dtype)[:, None] * z
    return ((model(noisy, time_from_sigma(sigma, sigma_min, sigma_max).to(x0.dtype)) - z) ** 2).mean()


def score_fn(model, sigma_min: float, sigma_max: float):
    """s(x, σ) = −net(x, t(σ)) / σ for a net trained with ``dsm_loss``; σ a float shared by the batch."""
    @torch.no_grad()
    def score(x: torch.Tensor, sigma: float) -> torch.Tensor:
        levels = torch.full((x.shape[0],), sigma, dtype=torch.float64)
        return -model(x, time_from_sigma(levels, sigma_min, sigma_max).to(x.dtype)) / sigma
    return score


def fit(model: nn.Module, loss_fn, steps: int, lr: float = 2e-3, seed: int = 0, progress: bool = True) -> list[float]:
    """``steps`` Adam steps on loss_fn(generator) (a closure drawing its batch from the seeded generator), with the
    learning rate decayed to zero by a cosine. Returns the loss history; model is left in eval mode.
    Seed the weights when building the model (torch.manual_seed before TimeMLP(...)) for a reproducible run."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    history = []
    model.train()
    for _ in progress_bar(range(steps), desc="training", unit="step", disable=not progress):
        loss = loss_fn(generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        history.append(loss.item())
    model.eval()
    return history
