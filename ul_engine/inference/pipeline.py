"""What users ask of a trained run: load it, encode, reconstruct, sample — one place for the CLI, workers and app.

Models load from safetensors only: a training checkpoint's EMA tensors, or an exported bundle folder, each
checked by `ul_engine.core.model_files` and `ul_engine.weights` before anything is allocated.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ul_engine import weights
from ul_engine.core.errors import ULError
from ul_engine.eval.metrics.fidelity import psnr_ssim  # PSNR/SSIM live in ul_engine.eval.metrics; callers import both
from ul_engine.model import LN2, LatentBase, UnifiedLatents


def _from_checkpoint(
    path: Path, stage: int, device: str | torch.device, sha256: str | None = None
) -> torch.nn.Module:
    """The stage's model with the EMA weights of a full training checkpoint, in eval mode.

    The checkpoint's metadata, its tensors against the model built on the meta device, and `sha256` (the
    store's record, when given) are checked before the model is allocated (`ul_engine.core.model_files` and
    `ul_engine.weights`).
    """
    build = UnifiedLatents if stage == 1 else LatentBase
    cfg, tensors = weights.checkpoint_ema(Path(path), stage, build, sha256)
    model = build(cfg)
    weights.assign(model, tensors)
    return model.to(device).eval()


def stage1_from_checkpoint(
    path: Path, device: str | torch.device = "cpu", *, sha256: str | None = None
) -> UnifiedLatents:
    return _from_checkpoint(path, 1, device, sha256)  # type: ignore[return-value]


def base_from_checkpoint(path: Path, device: str | torch.device = "cpu", *, sha256: str | None = None) -> LatentBase:
    return _from_checkpoint(path, 2, device, sha256)  # type: ignore[return-value]


def ema_copy(module: torch.nn.Module, ema: object) -> torch.nn.Module:
    """An eval-mode copy of `module` carrying the EMA weights (for previews and exports)."""
    clone = copy.deepcopy(module)
    ema.copy_to(clone)  # type: ignore[attr-defined]
    return clone.eval()


# ----------------------------------------------------------------------------------------------
# Reconstruction


@dataclass
class Reconstruction:
    """One image's round trip through the latent, with its cost and fidelity."""

    reconstruction: np.ndarray  # (H,W,3) uint8
    psnr: float
    ssim: float
    rate_nats: float
    bits_per_pixel: float
    bits_per_dim: float
    decode_seconds: float
    extras: dict[str, float] = field(default_factory=dict)


@torch.no_grad()
def reconstruct_batch(
    model: UnifiedLatents,
    x: torch.Tensor,
    *,
    decoder_steps: int,
    seeds: Sequence[int],
    sampler: str = "ancestral",
    rate_draws: int = 16,
) -> list[Reconstruction]:
    """x (B,3,H,W) in [-1,1] → reconstructions with PSNR/SSIM and the prior's bits for each latent."""
    device = next(model.parameters()).device
    x = x.to(device)
    z_clean = model.encode(x)
    noise = torch.stack([torch.randn(z_clean.shape[1:], generator=torch.Generator().manual_seed(s)) for s in seeds])
    z0 = model.noisy_latent(z_clean, noise.to(device))
    start = time.perf_counter()
    x_hat = model.decode(z0, steps=decoder_steps, seeds=[s + 1 for s in seeds], sampler=sampler)
    seconds = (time.perf_counter() - start) / x.shape[0]
    rate = model.estimate_rate(z_clean, draws=rate_draws).cpu()
    psnrs, ssims = psnr_ssim(x.cpu(), x_hat.cpu())
    from ul_engine.core.imaging import tensor_to_uint8

    images = tensor_to_uint8(x_hat)
    pixels = x.shape[-2] * x.shape[-1]
    dims = z_clean[0].numel()
    return [
        Reconstruction(
            reconstruction=images[i],
            psnr=psnrs[i],
            ssim=ssims[i],
            rate_nats=float(rate[i]),
            bits_per_pixel=float(rate[i]) / LN2 / pixels,
            bits_per_dim=float(rate[i]) / LN2 / dims,
            decode_seconds=seconds,
        )
        for i in range(x.shape[0])
    ]


def image_to_model_input(image: np.ndarray, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """(H,W,3) uint8 → (1,3,H',W') in [-1,1], padded by edge replication to a multiple of the downsampling.

    The nets are convolutional with position embeddings made on the fly, so any size that is a multiple
    of the downsampling reconstructs at its own resolution; returns the original (H, W) for cropping back.
    """
    h, w = image.shape[:2]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        image = np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="edge")
    x = torch.from_numpy(image).permute(2, 0, 1).float().div(127.5).sub(1.0)
    return x[None], (h, w)


# ----------------------------------------------------------------------------------------------
# Sampling


@torch.no_grad()
def sample_images(
    base: LatentBase,
    stage1: UnifiedLatents,
    n: int,
    *,
    seed: int,
    base_steps: int,
    decoder_steps: int,
    sampler: str = "ancestral",
    guidance: float = 1.0,
    class_label: int | None = None,
    batch_size: int = 16,
    progress: object = None,
) -> list[np.ndarray]:
    """Base model from λ_min to λ_z(0) gives z0; the decoder turns it into an image (Algorithm 2)."""
    from ul_engine.core.imaging import tensor_to_uint8

    device = next(base.parameters()).device
    if class_label is not None and not (0 <= class_label < max(base.num_classes, 1)):
        raise ULError(f"--class {class_label} is out of range: this run has {base.num_classes} classes")
    out: list[np.ndarray] = []
    for start in range(0, n, batch_size):
        seeds = list(range(seed + start, seed + min(n, start + batch_size)))
        labels = None
        if class_label is not None and base.num_classes:
            labels = torch.full((len(seeds),), class_label, dtype=torch.long, device=device)
        z0 = base.sample(
            len(seeds), steps=base_steps, seeds=seeds, sampler=sampler, labels=labels, guidance=guidance, device=device
        )
        x = stage1.decode(z0, steps=decoder_steps, seeds=[s + 10_000_019 for s in seeds], sampler=sampler)
        out.extend(tensor_to_uint8(x))
        if callable(progress):
            progress(len(out), n)
    return out
