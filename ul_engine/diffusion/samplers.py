"""Samplers as plain functions stepping on a log-SNR grid: ancestral, DDIM and DPM-Solver++(2M).

`denoise(z_t, logsnr) -> x̂` is the only thing a sampler knows about a model, so the same code samples
the base model (ending at λ = 5, returning the noisy z0 it models) and the pixel decoder (returning
the final prediction x̂). Noise comes from per-sample generators, so sample i depends on its seed
alone, not on the batch it was drawn in.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ul_engine.core.samplers import SAMPLERS
from ul_engine.diffusion.gaussian import alpha_sigma_scalar, eps_from_x
from ul_engine.diffusion.precision import sampling_autocast

Denoiser = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class StepInfo:
    """What a callback sees after each step: the state and the current clean prediction."""

    index: int
    total: int
    logsnr: float
    z: Tensor
    x_hat: Tensor


Callback = Callable[[StepInfo], bool | None]  # return True to cancel


class SamplingCancelled(Exception):
    """A callback asked to stop; carries the last state."""


class PerSampleNoise:
    """Gaussian noise drawn from one generator per sample (seeds[i] → sample i), on any device."""

    def __init__(self, seeds: Sequence[int], device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.generators = [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds]

    def randn(self, shape_per_sample: Sequence[int]) -> Tensor:
        draws = [torch.randn(tuple(shape_per_sample), generator=g) for g in self.generators]
        return torch.stack(draws).to(self.device)


def sample(
    denoise: Denoiser,
    logsnrs: Tensor,
    noise: PerSampleNoise,
    shape_per_sample: Sequence[int],
    *,
    sampler: str = "ancestral",
    final: str = "state",
    z_init: Tensor | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """Run `sampler` over the increasing log-SNR grid `logsnrs` (λ_1 < … < λ_end).

    final="state": return z at λ_end (for the base model: a z0 sample, Algorithm 2).
    final="prediction": the last step returns x̂ instead of a noisy state (the decoder's image).
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler '{sampler}'; choose from {', '.join(SAMPLERS)}")
    grid = [float(v) for v in logsnrs.tolist()]
    if any(b <= a for a, b in itertools.pairwise(grid)):
        raise ValueError("the log-SNR grid must increase (noisy → clean)")
    z = z_init if z_init is not None else noise.randn(shape_per_sample)
    batch = z.shape[0]
    steps = len(grid) - 1
    prev_x_hat: Tensor | None = None
    prev_h: float | None = None
    x_hat = z
    for i in range(steps):
        lam_c, lam_n = grid[i], grid[i + 1]
        with sampling_autocast(z.device):
            x_hat = denoise(z, torch.full((batch,), lam_c, device=z.device, dtype=torch.float32)).float()
        last = i == steps - 1
        if last and final == "prediction":
            if callback is not None:
                callback(StepInfo(i, steps, lam_c, z, x_hat))
            return x_hat
        if sampler == "ancestral":
            z = _ancestral_step(z, x_hat, lam_c, lam_n, noise)
        elif sampler == "ddim":
            z = _ddim_step(z, x_hat, lam_c, lam_n)
        else:
            z, prev_h = _dpmpp2m_step(z, x_hat, prev_x_hat, prev_h, lam_c, lam_n)
            prev_x_hat = x_hat
        if callback is not None and callback(StepInfo(i, steps, lam_n, z, x_hat)):
            raise SamplingCancelled(f"cancelled at step {i + 1} of {steps}")
    return z


def _ancestral_step(z: Tensor, x_hat: Tensor, lam_c: float, lam_n: float, noise: PerSampleNoise) -> Tensor:
    """Exact posterior q(z_n | z_c, x = x̂): mean r·(α_n/α_c)·z_c + (1 − r)·α_n·x̂, var (1 − r)·σ_n²."""
    a_c, _ = alpha_sigma_scalar(lam_c)
    a_n, s_n = alpha_sigma_scalar(lam_n)
    r = torch.exp(torch.tensor(lam_c - lam_n, dtype=torch.float64)).item()
    mean = r * (a_n / a_c) * z + (1.0 - r) * a_n * x_hat
    std = ((1.0 - r) ** 0.5) * s_n
    return mean + std * noise.randn(z.shape[1:])


def _ddim_step(z: Tensor, x_hat: Tensor, lam_c: float, lam_n: float) -> Tensor:
    """Deterministic: z_n = α_n·x̂ + σ_n·ε̂."""
    a_n, s_n = alpha_sigma_scalar(lam_n)
    eps_hat = eps_from_x(z, x_hat, torch.full((z.shape[0],), lam_c, device=z.device))
    return a_n * x_hat + s_n * eps_hat


def _dpmpp2m_step(
    z: Tensor, x_hat: Tensor, prev_x_hat: Tensor | None, prev_h: float | None, lam_c: float, lam_n: float
) -> tuple[Tensor, float]:
    """DPM-Solver++(2M) (Lu et al. 2022) in half-log-SNR ℓ = λ/2, data prediction, multistep."""
    a_n, s_n = alpha_sigma_scalar(lam_n)
    _, s_c = alpha_sigma_scalar(lam_c)
    h = (lam_n - lam_c) / 2.0
    if prev_x_hat is None or prev_h is None:
        d = x_hat
    else:
        r = prev_h / h
        d = (1.0 + 1.0 / (2.0 * r)) * x_hat - (1.0 / (2.0 * r)) * prev_x_hat
    z_next = (s_n / s_c) * z - a_n * math.expm1(-h) * d
    return z_next, h
