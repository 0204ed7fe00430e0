"""Reconstruction fidelity: PSNR and SSIM via torchmetrics' functional metrics (no hand-written versions)."""

from __future__ import annotations

import numpy as np
import torch


def psnr_ssim(reference: torch.Tensor, estimate: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-image PSNR (dB) and SSIM of (B, 3, H, W) images in [-1, 1], measured on [0, 1]; SSIM is NaN for
    images smaller than its 7×7 window."""
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    ref = ((reference.float() + 1) / 2).clamp(0, 1)
    est = ((estimate.float() + 1) / 2).clamp(0, 1)
    psnrs, ssims = [], []
    for r, e in zip(ref, est, strict=True):
        psnrs.append(float(peak_signal_noise_ratio(e[None], r[None], data_range=1.0)))
        if min(r.shape[-2:]) >= 7:
            ssims.append(float(structural_similarity_index_measure(e[None], r[None], data_range=1.0)))
        else:
            ssims.append(float("nan"))
    return psnrs, ssims


def psnr_uint8(reference: np.ndarray, estimate: np.ndarray) -> float:
    """PSNR (dB) of two uint8 images of the same shape, on [0, 1]."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    ref = torch.from_numpy(reference.astype(np.float32) / 255.0)
    est = torch.from_numpy(estimate.astype(np.float32) / 255.0)
    return float(peak_signal_noise_ratio(est, ref, data_range=1.0))
