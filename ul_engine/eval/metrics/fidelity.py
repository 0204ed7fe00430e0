"""Reconstruction fidelity: PSNR, and SSIM as published (Wang et al. 2004, as scikit-image computes it).

SSIM here is the standard one: an 11×11 Gaussian window (σ = 1.5, truncated at 3.5σ), population statistics,
C1 = (0.01·L)², C2 = (0.03·L)², and the SSIM map averaged over the positions whose window lies inside the image
(the border is cropped, not reflection-padded). Colour images average the per-channel means. At 16–32 px
the reflection-padded average that torchmetrics reports differs from this by up to 0.04, which is why the
published definition is computed here and tested against scikit-image's `structural_similarity`.
"""

from __future__ import annotations

import torch

from ul_engine.eval.metrics import SSIM_SIGMA, SSIM_WINDOW

SSIM_K1, SSIM_K2 = 0.01, 0.03


def _gaussian_taps(dtype: torch.dtype) -> torch.Tensor:
    radius = SSIM_WINDOW // 2
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.exp(-0.5 * (x / SSIM_SIGMA) ** 2)
    return (taps / taps.sum()).to(dtype)


def _window_mean(x: torch.Tensor) -> torch.Tensor:
    """Gaussian-weighted local means of (N, 1, H, W) at every position whose window fits inside (valid)."""
    taps = _gaussian_taps(x.dtype)
    x = torch.nn.functional.conv2d(x, taps.view(1, 1, 1, -1))
    return torch.nn.functional.conv2d(x, taps.view(1, 1, -1, 1))


def ssim(reference: torch.Tensor, estimate: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image SSIM of (B, C, H, W) images on a scale of `data_range`; NaN where a side is below 11 px."""
    b, c, h, w = reference.shape
    if min(h, w) < SSIM_WINDOW:
        return torch.full((b,), float("nan"))
    ref = reference.double().reshape(b * c, 1, h, w)
    est = estimate.double().reshape(b * c, 1, h, w)
    mu_r, mu_e = _window_mean(ref), _window_mean(est)
    var_r = _window_mean(ref * ref) - mu_r**2
    var_e = _window_mean(est * est) - mu_e**2
    cov = _window_mean(ref * est) - mu_r * mu_e
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    index = ((2 * mu_r * mu_e + c1) * (2 * cov + c2)) / ((mu_r**2 + mu_e**2 + c1) * (var_r + var_e + c2))
    return index.reshape(b, c, -1).mean(dim=2).mean(dim=1).float()


def psnr_ssim(reference: torch.Tensor, estimate: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-image PSNR (dB) and SSIM of (B, 3, H, W) images in [-1, 1], measured on [0, 1]; SSIM is NaN for
    images smaller than its 11×11 window."""
    from torchmetrics.functional.image import peak_signal_noise_ratio  # why: torchmetrics costs start-up time

    ref = ((reference.float() + 1) / 2).clamp(0, 1)
    est = ((estimate.float() + 1) / 2).clamp(0, 1)
    psnrs = [float(peak_signal_noise_ratio(e[None], r[None], data_range=1.0)) for r, e in zip(ref, est, strict=True)]
    return psnrs, [float(s) for s in ssim(ref, est)]

