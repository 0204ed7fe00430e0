"""Log-SNR schedules λ(t), t ∈ [0, 1], decreasing in t, with −dλ/dt for the continuous-time ELBO.

The latent schedule ends exactly at λ(0) = λ_z(0) (5 by default) so the prior models z0, not z_clean.
Only the endpoints change the ELBO; the shape only changes the estimator's variance (VDM).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class CosineSchedule:
    """Truncated cosine schedule, optionally shifted by `shift` = 2·log(d_ref/d) (simple diffusion).

    λ(t) = shift − 2·log tan(u_min + t·(u_max − u_min)), truncated so that λ(0) = logsnr_max and
    λ(1) = logsnr_min exactly; −dλ/dt = 4·(u_max − u_min) / sin(2u).
    """

    logsnr_min: float
    logsnr_max: float
    shift: float = 0.0

    def __post_init__(self) -> None:
        if not self.logsnr_min < self.logsnr_max:
            raise ValueError(f"logsnr_min ({self.logsnr_min}) must be below logsnr_max ({self.logsnr_max})")

    @property
    def u_min(self) -> float:
        return math.atan(math.exp(-(self.logsnr_max - self.shift) / 2))

    @property
    def u_max(self) -> float:
        return math.atan(math.exp(-(self.logsnr_min - self.shift) / 2))

    def _u(self, t: Tensor) -> Tensor:
        return self.u_min + t.double() * (self.u_max - self.u_min)

    def logsnr(self, t: Tensor) -> Tensor:
        u = self._u(t)
        return (self.shift - 2.0 * torch.log(torch.tan(u))).to(torch.float32)

    def neg_dlogsnr_dt(self, t: Tensor) -> Tensor:
        u = self._u(t)
        return (4.0 * (self.u_max - self.u_min) / torch.sin(2.0 * u)).to(torch.float32)

    def t_of_logsnr(self, logsnr: Tensor) -> Tensor:
        """Inverse of `logsnr`, for samplers that step on a λ grid."""
        u = torch.atan(torch.exp(-(logsnr.double() - self.shift) / 2))
        return ((u - self.u_min) / (self.u_max - self.u_min)).to(torch.float32)

    def grid(self, steps: int, device: torch.device | str = "cpu") -> Tensor:
        """steps + 1 log-SNRs from λ(1) (noisiest) to λ(0), uniform in t: the default sampling grid."""
        t = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64, device=device)
        return self.logsnr(t)


def stratified_uniform(
    batch: int, *, device: torch.device | str = "cpu", generator: torch.Generator | None = None
) -> Tensor:
    """Low-discrepancy t within a batch (VDM): one uniform offset, then evenly spaced mod 1."""
    u0 = torch.rand((), device=device, generator=generator)
    return torch.remainder(u0 + torch.arange(batch, device=device) / batch, 1.0)


def latent_schedule(logsnr_min: float, logsnr_max: float) -> CosineSchedule:
    return CosineSchedule(logsnr_min, logsnr_max)


def image_schedule(logsnr_min: float, logsnr_max: float, *, resolution: int, shift_ref: int) -> CosineSchedule:
    """The pixel decoder's schedule; `shift_ref` > 0 shifts by 2·log(d_ref/d) for high resolutions."""
    shift = 2.0 * math.log(shift_ref / resolution) if shift_ref else 0.0
    return CosineSchedule(logsnr_min, logsnr_max, shift)
