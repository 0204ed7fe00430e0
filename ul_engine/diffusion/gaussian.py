"""The variance-preserving Gaussian process in log-SNR λ: α² = sigmoid(λ), σ² = sigmoid(−λ).

Networks predict v; every conversion between v̂, x̂ and ε̂ lives here so nothing re-derives it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def alpha_sigma(logsnr: Tensor) -> tuple[Tensor, Tensor]:
    """(α, σ) for a log-SNR tensor; computed through sigmoid so both ends of the range are exact."""
    return torch.sigmoid(logsnr).sqrt(), torch.sigmoid(-logsnr).sqrt()


def alpha_sigma_scalar(logsnr: float) -> tuple[float, float]:
    return math.sqrt(1.0 / (1.0 + math.exp(-logsnr))), math.sqrt(1.0 / (1.0 + math.exp(logsnr)))


def broadcast(values: Tensor, like: Tensor) -> Tensor:
    """(B,) → (B, 1, 1, ...) matching `like`'s rank."""
    return values.reshape(values.shape[0], *([1] * (like.ndim - 1)))


def q_sample(x: Tensor, logsnr: Tensor, noise: Tensor) -> Tensor:
    """x_t = α·x + σ·ε for per-example log-SNR (B,)."""
    alpha, sigma = alpha_sigma(logsnr)
    return broadcast(alpha, x) * x + broadcast(sigma, x) * noise


def v_target(x: Tensor, noise: Tensor, logsnr: Tensor) -> Tensor:
    """v = α·ε − σ·x (Salimans & Ho 2022)."""
    alpha, sigma = alpha_sigma(logsnr)
    return broadcast(alpha, x) * noise - broadcast(sigma, x) * x


def x_from_v(z_t: Tensor, v_hat: Tensor, logsnr: Tensor) -> Tensor:
    """x̂ = α·z_t − σ·v̂."""
    alpha, sigma = alpha_sigma(logsnr)
    return broadcast(alpha, z_t) * z_t - broadcast(sigma, z_t) * v_hat


def eps_from_v(z_t: Tensor, v_hat: Tensor, logsnr: Tensor) -> Tensor:
    """ε̂ = σ·z_t + α·v̂."""
    alpha, sigma = alpha_sigma(logsnr)
    return broadcast(sigma, z_t) * z_t + broadcast(alpha, z_t) * v_hat


def v_from_x(z_t: Tensor, x_hat: Tensor, logsnr: Tensor) -> Tensor:
    """v̂ = (α·z_t − x̂)/σ: lets an exact clean-data denoiser stand in for a network in tests."""
    alpha, sigma = alpha_sigma(logsnr)
    return (broadcast(alpha, z_t) * z_t - x_hat) / broadcast(sigma, z_t)


def eps_from_x(z_t: Tensor, x_hat: Tensor, logsnr: Tensor) -> Tensor:
    alpha, sigma = alpha_sigma(logsnr)
    return (z_t - broadcast(alpha, z_t) * x_hat) / broadcast(sigma, z_t)


def kl_to_standard_normal(z_clean: Tensor, logsnr_end: float) -> Tensor:
    """KL[N(α₁·z, σ₁²I) ‖ N(0, I)] summed over all but the batch dim: the prior's t = 1 term (nats)."""
    return kl_to_standard_normal_per_dim(z_clean, logsnr_end).flatten(1).sum(dim=1)


def kl_to_standard_normal_per_dim(z_clean: Tensor, logsnr_end: float) -> Tensor:
    """The same KL per dimension (z_clean's shape), for sums over a subset (video frames that are generated)."""
    alpha_sq = 1.0 / (1.0 + math.exp(-logsnr_end))
    sigma_sq = 1.0 / (1.0 + math.exp(logsnr_end))
    return 0.5 * (alpha_sq * z_clean.float() ** 2 + sigma_sq - 1.0 - math.log(sigma_sq))
