"""Exact references: problems where the ideal denoiser is known in closed form.

A Gaussian mixture stays a Gaussian mixture under the forward process, so its noised marginal
q_t(x), score, optimal noise prediction and E[x0 | x_t] are all exact. A finite data set is the
limit of a mixture with zero covariance: its optimal denoiser is a softmax-weighted average of
the data points, the network a perfect model trained on that set would become (it can only
memorise).
"""
from __future__ import annotations

import math

import torch

from ._validate import require_float_tensor, require_int
from .schedules import NoiseSchedule


def _alpha_bar(t, schedule: NoiseSchedule, batch: int) -> torch.Tensor:
    """abar_t as float64 of shape (B,), for t an int or a tensor of shape (B,)."""
    return schedule.alpha_bars[torch.as_tensor(t, dtype=torch.int64).cpu()].reshape(-1).expand(batch)


class GaussianMixture:
    """sum_k w_k N(mu_k, Sigma_k) in D dimensions.

    means: (K, D); covariances: (K, D, D) full, or (K,) / float isotropic standard deviations;
    weights: (K,) positive (normalised here), uniform when omitted. Computation is in float64.
    """

    def __init__(self, means: torch.Tensor, covariances, weights: torch.Tensor | None = None):
        require_float_tensor(means, "means", min_dims=2)
        if means.ndim != 2:
            raise ValueError(f"means must have shape (K, D), got {tuple(means.shape)}")
        K, D = means.shape
        self.means = means.detach().to(torch.float64)
        if isinstance(covariances, (int, float)):
            covariances = torch.full((K,), float(covariances))
        covariances = torch.as_tensor(covariances, dtype=torch.float64)
        if covariances.shape == (K,):
            if not torch.all(covariances > 0):
                raise ValueError("isotropic standard deviations must be positive")
            covariances = covariances[:, None, None] ** 2 * torch.eye(D, dtype=torch.float64)
        if covariances.shape != (K, D, D):
            raise ValueError(f"covariances must have shape ({K}, {D}, {D}) or ({K},), got {tuple(covariances.shape)}")
        self.covariances = covariances
        if weights is None:
            weights = torch.full((K,), 1.0 / K)
        weights = torch.as_tensor(weights, dtype=torch.float64)
        if weights.shape != (K,) or not torch.all(weights > 0):
            raise ValueError(f"weights must be {K} positive numbers, got shape {tuple(weights.shape)}")
        self.weights = weights / weights.sum()
        # Sigma_k = U_k diag(lambda_k) U_k^T. Noise keeps the eigenvectors (a^2 Sigma_k + s^2 I has eigenvalues
        # a^2 lambda + s^2), so every noise level is solved in this basis: B K D^2 work, no (B, K, D, D) tensor.
        self._eigenvalues, self._eigenvectors = torch.linalg.eigh(self.covariances)

    @classmethod
    def ring(cls, k: int = 8, radius: float = 2.0, std: float = 0.15) -> "GaussianMixture":
        """k equal, isotropic components evenly spaced on a circle: the course's 2-D toy data."""
        angles = torch.arange(k, dtype=torch.float64) * 2 * math.pi / k
        means = radius * torch.stack([angles.cos(), angles.sin()], dim=1)
        return cls(means, std)

    @classmethod
    def fit_per_class(cls, points: torch.Tensor, labels: torch.Tensor, ridge: float = 0.01) -> "GaussianMixture":
        """One component per class: its mean and covariance (plus ridge * I, so that it is invertible), weighted by
        the class's share. points: (N, D) or (N, ...) flattened; labels: int64 (N,)."""
        flat = points.flatten(1).to(torch.float64)
        classes = labels.unique()
        eye = torch.eye(flat.shape[1], dtype=torch.float64)
        means = torch.stack([flat[labels == k].mean(0) for k in classes])
        covariances = torch.stack([torch.cov(flat[labels == k].T) + ridge * eye for k in classes])
        weights = torch.stack([(labels == k).sum() for k in classes]).to(torch.float64)
        return cls(means, covariances, weights)

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n points of the clean data distribution, shape (n, D), float32."""
        require_int(n, "n", minimum=1)
        components = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, dtype=torch.float64, generator=generator)
        chol = torch.linalg.cholesky(self.covariances)[components]
        return (self.means[components] + (chol @ z[:, :, None])[:, :, 0]).float()

    def noised(self, scale: float, std: float) -> "GaussianMixture":
        """The distribution of scale * x0 + std * eps, x0 from this mixture: components N(scale mu_k, scale^2 Sigma_k + std^2 I).

        Every Gaussian noising is one: DDPM/VP at tau (sqrt(abar), sqrt(1 - abar)), VE (1, sigma), the straight
        flow path (1 - tau, tau). Its ``score(x)`` is then the exact score of that marginal.
        """
        eye = torch.eye(self.dim, dtype=torch.float64)
        return GaussianMixture(scale * self.means, scale ** 2 * self.covariances + std ** 2 * eye, self.weights)

    def _posterior_terms(self, x: torch.Tensor, alpha_bar: torch.Tensor):
        """Responsibilities r_k(x) (B, K), log w_k N(x; m_tk, Sigma_tk) (B, K), Sigma_tk^{-1}(x - m_tk) (B, K, D),
        and the same solved vector in each component's eigenbasis (B, K, D), for q_t = sum_k w_k N(m_tk, Sigma_tk),
        m_tk = sqrt(abar) mu_k, Sigma_tk = abar Sigma_k + (1 - abar) I, one abar per item (B,)."""
        a = alpha_bar[:, None, None]
        diff = x.to(torch.float64)[:, None, :] - a.sqrt() * self.means                    # (B, K, D)
        projected = torch.einsum("kde,bkd->bke", self._eigenvectors, diff)               # U_k^T (x - m_tk)
        variances = a * self._eigenvalues + (1 - a)                                     # eigenvalues of Sigma_tk
        solved_projected = projected / variances
        log_component = -0.5 * ((projected * solved_projected).sum(-1) + variances.log().sum(-1)
                                + self.dim * math.log(2 * math.pi))
        log_joint = log_component + self.weights.log()
        solved = torch.einsum("kde,bke->bkd", self._eigenvectors, solved_projected)
        return torch.softmax(log_joint, dim=1), log_joint, solved, solved_projected

    def log_prob(self, x: torch.Tensor, t=None, schedule: NoiseSchedule | None = None) -> torch.Tensor:
        """log q_t(x) of shape (B,); the clean data density when t is None. Differentiable in x."""
        alpha_bar = (torch.ones(x.shape[0], dtype=torch.float64) if t is None
                     else _alpha_bar(t, schedule, x.shape[0]))
        _, log_joint, _, _ = self._posterior_terms(x, alpha_bar)
        return torch.logsumexp(log_joint, dim=1)

    def score(self, x: torch.Tensor, t=None, schedule: NoiseSchedule | None = None) -> torch.Tensor:
        """grad_x log q_t(x) = -sum_k r_k(x) Sigma_tk^{-1} (x - m_tk); shape (B, D), x's dtype. t=None: the mixture's own score."""
        alpha_bar = (torch.ones(x.shape[0], dtype=torch.float64) if t is None
                     else _alpha_bar(t, schedule, x.shape[0]))
        resp, _, solved, _ = self._posterior_terms(x, alpha_bar)
        return -(resp[..., None] * solved).sum(1).to(x.dtype)

    def eps(self, x: torch.Tensor, t, schedule: NoiseSchedule) -> torch.Tensor:
        """The optimal noise prediction E[eps | x_t = x] = -sqrt(1 - abar_t) * score; shape (B, D)."""
        alpha_bar = _alpha_bar(t, schedule, x.shape[0])
        return (-(1 - alpha_bar).sqrt()[:, None] * self.score(x, t, schedule).double()).to(x.dtype)

    def x0_mean(self, x: torch.Tensor, t, schedule: NoiseSchedule) -> torch.Tensor:
        """E[x0 | x_t = x] = sum_k r_k(x) (mu_k + sqrt(abar) Sigma_k Sigma_tk^{-1} (x - m_tk)); shape (B, D)."""
        alpha_bar = _alpha_bar(t, schedule, x.shape[0])
        resp, _, _, solved_projected = self._posterior_terms(x, alpha_bar)
        covariance_times_solved = torch.einsum("kde,bke->bkd", self._eigenvectors, self._eigenvalues * solved_projected)
        per_component = self.means + alpha_bar.sqrt()[:, None, None] * covariance_times_solved
        return (resp[..., None] * per_component).sum(1).to(x.dtype)

    def log_responsibilities(self, x: torch.Tensor, t, schedule: NoiseSchedule) -> torch.Tensor:
        """log p(k | x_t = x) = log w_k N(x; m_tk, Sigma_tk) - log q_t(x); shape (B, K), float64.

        The exact noise-aware classifier when the components are the classes. Differentiable in x, so
        autograd gives grad_x log p(k | x_t), the term classifier guidance adds to the score.
        """
        _, log_joint, _, _ = self._posterior_terms(x, _alpha_bar(t, schedule, x.shape[0]))
        return torch.log_softmax(log_joint, dim=1)

    def component(self, k: int) -> "GaussianMixture":
        """Component k alone, N(mu_k, Sigma_k), as a one-component mixture: the class-conditional p(x | k)."""
        k = require_int(k, "k", minimum=0)
        if k >= len(self.weights):
            raise ValueError(f"k must lie in 0..{len(self.weights) - 1}, got {k}")
        return GaussianMixture(self.means[k:k + 1], self.covariances[k:k + 1])


def optimal_denoiser(x_t: torch.Tensor, t, data: torch.Tensor, schedule: NoiseSchedule) -> torch.Tensor:
    """E[x0 | x_t] when x0 is drawn uniformly from a finite data set.

    weights_i = softmax_i(-||x_t - sqrt(abar_t) y_i||^2 / (2 (1 - abar_t))), result = sum_i weights_i y_i.
    x_t: (B, ...); data: (N, ...) with the same trailing shape; t: int or (B,). Returns (B, ...) in x_t's dtype.
    """
    alpha_bar = _alpha_bar(t, schedule, x_t.shape[0])[:, None]
    flat_x = x_t.reshape(x_t.shape[0], -1).double()
    flat_data = data.reshape(data.shape[0], -1).double()
    scale = alpha_bar.sqrt()
    # ||x - s y||^2 expanded, so no (B, N, D) tensor is built for large data sets
    squared = ((flat_x ** 2).sum(1, keepdim=True) - 2 * scale * flat_x @ flat_data.T
               + scale ** 2 * (flat_data ** 2).sum(1)[None])
    weights = torch.softmax(-squared / (2 * (1 - alpha_bar)), dim=1)
    return (weights @ flat_data).reshape(x_t.shape).to(x_t.dtype)


def digits_mixture(ridge: float = 0.01) -> GaussianMixture:
    """A 64-D stand-in for the 8x8 digits whose score is exact: one Gaussian per digit class, fitted to all 1,797
    digits (pixels in [-1, 1]), ridge 0.01 (pixel std 0.1) added to each covariance. Samples look like blurry digits."""
    from .data import load_digits

    digits = load_digits("all")
    return GaussianMixture.fit_per_class(digits.images, digits.labels, ridge)
