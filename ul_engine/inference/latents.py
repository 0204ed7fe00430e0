"""Looking inside a run's latent space: what the Latents and Generate pages and `ul interpolate` compute.

Everything starts from a clean latent z_clean (C, h, w), the encoder's output for an image. A view of it:
every channel on one shared diverging colour scale, a PCA-to-RGB picture, and the rate it costs under the
prior, in total and per latent position (`rate_map`: the prior's unweighted ELBO with its per-dimension
terms summed over channels only, averaged over stratified t; its sum is `UnifiedLatents.estimate_rate`).

Decodes go through z0 = α0·z_clean + σ0·ε with ε drawn from a fixed seed and the decoder's noise from
seed + 1 (as `reconstruct.reconstruct_batch` does), so the frames of one scrub differ only by the latent:
  - interpolation: lerp or slerp between two z_clean;
  - noise level: z_λ = α_λ·z_clean + σ_λ·ε at log-SNR λ (fixed seed), then the prior's (or the stage-2
    base model's) sampler from λ up to λ_z(0) gives a z0, which is decoded: what survives at each rate;
  - channel edit: z_clean[c] ← scale·z_clean[c] + offset.
Generating samples and their trajectories is `ul_engine.inference.sample`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ul_engine.core import video_io
from ul_engine.core.errors import ULError
from ul_engine.core.media import fit_square, from_model_range, load_image_rgb, to_model_range
from ul_engine.core.user_paths import check_file, check_output_file
from ul_engine.diffusion import gaussian, samplers
from ul_engine.inference.loading import load_run
from ul_engine.model import LN2, LatentBase, UnifiedLatents

INTERPOLATION_MODES = ("slerp", "lerp")
DENOISERS = ("prior", "base")

# ----------------------------------------------------------------------------------------------
# Colours (numpy only)

_DIVERGING = np.array(  # RdBu reversed: −1 blue, 0 near white, +1 red
    [(5, 48, 97), (67, 147, 195), (247, 247, 247), (214, 96, 77), (103, 0, 31)], dtype=np.float32
)
_SEQUENTIAL = np.array(  # magma-like: 0 black, 1 pale yellow
    [(0, 0, 4), (59, 15, 112), (140, 41, 129), (222, 73, 104), (254, 159, 109), (252, 253, 191)], dtype=np.float32
)


def _ramp(u: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """u in [0, 1] → uint8 RGB by piecewise-linear interpolation between evenly spaced anchors."""
    u = np.clip(np.nan_to_num(np.asarray(u, dtype=np.float32), nan=0.0), 0.0, 1.0)
    pos = u * (len(anchors) - 1)
    lo = np.minimum(np.floor(pos).astype(np.int64), len(anchors) - 2)
    frac = (pos - lo)[..., None]
    rgb = anchors[lo] * (1.0 - frac) + anchors[lo + 1] * frac
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def diverging_colors(values: np.ndarray, scale: float) -> np.ndarray:
    """Values on a shared symmetric scale [−scale, scale] → uint8 RGB (blue, white, red)."""
    scale = float(scale) if scale > 0 else 1.0
    return _ramp(0.5 + 0.5 * np.asarray(values, dtype=np.float32) / scale, _DIVERGING)


def sequential_colors(values: np.ndarray, vmax: float) -> np.ndarray:
    """Values in [0, vmax] → uint8 RGB (dark = cheap, bright = expensive)."""
    vmax = float(vmax) if vmax > 0 else 1.0
    return _ramp(np.asarray(values, dtype=np.float32) / vmax, _SEQUENTIAL)


def shared_scale(z: np.ndarray) -> float:
    """The colour scale every channel tile shares: the largest |value| of the latent."""
    scale = float(np.max(np.abs(z))) if z.size else 0.0
    return scale if scale > 0 and math.isfinite(scale) else 1.0


def channel_stats(z: np.ndarray) -> list[dict[str, float]]:
    """Per channel of a (C, h, w) latent: mean, std, min, max."""
    return [
        {"mean": float(c.mean()), "std": float(c.std()), "min": float(c.min()), "max": float(c.max())}
        for c in np.asarray(z, dtype=np.float32)
    ]


def channel_tiles(z: np.ndarray, scale: float | None = None) -> list[np.ndarray]:
    """One (h, w, 3) uint8 tile per channel, all on the same diverging scale (default: `shared_scale`)."""
    z = np.asarray(z, dtype=np.float32)
    scale = shared_scale(z) if scale is None else scale
    return [diverging_colors(c, scale) for c in z]


def pca_rgb(z: np.ndarray) -> np.ndarray:
    """(C, h, w) → (h, w, 3) uint8: the positions projected on the channels' top three principal components.

    Each component is min–max scaled to [0, 255]; signs are fixed (largest loading positive) so the same
    latent always gets the same colours. Fewer than three components (C < 3, or one position) leave the
    missing colours at mid grey.
    """
    z = np.asarray(z, dtype=np.float64)
    c, h, w = z.shape
    x = z.reshape(c, h * w).T  # (positions, channels)
    x = x - x.mean(axis=0, keepdims=True)
    out = np.full((h * w, 3), 0.5)
    if h * w > 1 and np.any(x):
        _, _, vt = np.linalg.svd(x, full_matrices=False)
        k = min(3, vt.shape[0])
        comps = vt[:k]
        signs = np.sign(comps[np.arange(k), np.argmax(np.abs(comps), axis=1)])
        comps = comps * np.where(signs == 0, 1.0, signs)[:, None]
        proj = x @ comps.T
        lo, hi = proj.min(axis=0), proj.max(axis=0)
        span = np.where(hi - lo > 1e-12, hi - lo, 1.0)
        out[:, :k] = (proj - lo) / span
    return np.clip(np.rint(out * 255), 0, 255).astype(np.uint8).reshape(h, w, 3)


# ----------------------------------------------------------------------------------------------
# Images ↔ latents


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def fit_image(image: np.ndarray, resolution: int) -> np.ndarray:
    """Any RGB uint8 image → (resolution, resolution, 3): shorter side resized, centre square crop."""
    return fit_square(np.asarray(image, dtype=np.uint8), resolution, crop="center")


@torch.no_grad()
def encode_images(model: UnifiedLatents, images: np.ndarray) -> Tensor:
    """(B, H, W, 3) uint8 → z_clean (B, C, h, w) (the encoder's mean; deterministic)."""
    x = torch.from_numpy(to_model_range(images)).to(_device(model))
    return model.encode(x).float()


def fixed_noise(shape: Sequence[int], seed: int) -> Tensor:
    """ε of one latent from its own generator (as reconstruct_batch draws it)."""
    return torch.randn(tuple(shape), generator=torch.Generator().manual_seed(int(seed)))


def noisy_latents(model: UnifiedLatents, z_clean: Tensor, seed: int) -> Tensor:
    """z0 = α0·z_clean + σ0·ε with the same ε (from `seed`) for every latent of the batch."""
    noise = fixed_noise(z_clean.shape[1:], seed).to(z_clean.device)
    return model.noisy_latent(z_clean, noise.expand_as(z_clean))


@torch.no_grad()
def decode_z0(model: UnifiedLatents, z0: Tensor, *, seed: int, steps: int, sampler: str = "ancestral") -> np.ndarray:
    """z0 (B, C, h, w) → (B, H, W, 3) uint8, the decoder's noise from seed + 1 for every frame."""
    x = model.decode(z0.to(_device(model)), steps=int(steps), seeds=[int(seed) + 1] * z0.shape[0], sampler=sampler)
    return from_model_range(x)


def decode_latents(
    model: UnifiedLatents, z_clean: Tensor, *, seed: int, steps: int, sampler: str = "ancestral"
) -> np.ndarray:
    """z_clean (B, C, h, w) → images through z0 with fixed noise: frames differ only by their latents."""
    z_clean = z_clean.to(_device(model))
    return decode_z0(model, noisy_latents(model, z_clean, seed), seed=seed, steps=steps, sampler=sampler)


# ----------------------------------------------------------------------------------------------
# The rate, per position


def _kl_per_dim(z_clean: Tensor, logsnr_end: float) -> Tensor:
    """KL[N(α·z, σ²) ‖ N(0, 1)] per dimension (gaussian.kl_to_standard_normal before its sum)."""
    alpha_sq = 1.0 / (1.0 + math.exp(-logsnr_end))
    sigma_sq = 1.0 / (1.0 + math.exp(logsnr_end))
    return 0.5 * (alpha_sq * z_clean.float() ** 2 + sigma_sq - 1.0 - math.log(sigma_sq))


@torch.no_grad()
def rate_map(
    model: UnifiedLatents, z_clean: Tensor, draws: int = 16, generator: torch.Generator | None = None
) -> Tensor:
    """Nats per latent position (B, h, w): the prior's ELBO terms per dimension, summed over channels only.

    Each example sees `draws` t's stratified over [0, 1] (one uniform offset, as `estimate_rate`), each with
    fresh noise; with the global generator the random draws are estimate_rate's, so `rate_map(z).sum((1, 2))`
    equals `model.estimate_rate(z)` from the same RNG state. Under ablation prior = normal it is the
    closed-form KL of z0 to N(0, I), per position.
    """
    z_clean = z_clean.float()
    if model.ablation.prior == "normal":
        return _kl_per_dim(z_clean, model.latent_logsnr_max).sum(dim=1)
    sched = model.latent_schedule
    batch = z_clean.shape[0]
    total = torch.zeros(batch, *z_clean.shape[2:], device=z_clean.device)
    u0 = torch.rand(batch, generator=generator)
    kl1 = _kl_per_dim(z_clean, sched.logsnr_min).sum(dim=1)
    for k in range(draws):
        t = (k + u0) / draws
        logsnr = sched.logsnr(t).to(z_clean.device)
        neg_d = sched.neg_dlogsnr_dt(t).to(z_clean.device)
        if generator is None:
            noise = torch.randn_like(z_clean)
        else:
            noise = torch.randn(z_clean.shape, generator=generator).to(z_clean.device)
        z_t = gaussian.q_sample(z_clean, logsnr, noise)
        v_hat = model.prior(z_t, logsnr).float()
        v = gaussian.v_target(z_clean, noise, logsnr)
        coeff = 0.5 * neg_d.float() * torch.sigmoid(logsnr.float())  # ½·(−dλ/dt)·w_ε·α², w_ε = 1
        total += gaussian.broadcast(coeff, z_clean)[:, 0] * (v - v_hat).pow(2).sum(dim=1) + kl1
    return total / draws


def rate_summary(rate_nats: float, image_hw: tuple[int, int], latent_dims: int) -> dict[str, float]:
    bits = rate_nats / LN2
    return {
        "nats": rate_nats,
        "bits": bits,
        "bits_per_pixel": bits / (image_hw[0] * image_hw[1]),
        "bits_per_dim": bits / max(latent_dims, 1),
    }


# ----------------------------------------------------------------------------------------------
# Scrubs


def lerp(a: Tensor, b: Tensor, ts: Sequence[float]) -> Tensor:
    """(C, h, w) × (C, h, w) → (N, C, h, w): (1 − t)·a + t·b."""
    t = torch.tensor([float(v) for v in ts], dtype=a.dtype, device=a.device).reshape(-1, *([1] * a.ndim))
    return (1.0 - t) * a[None] + t * b[None]


def slerp(a: Tensor, b: Tensor, ts: Sequence[float]) -> Tensor:
    """Spherical interpolation of the flattened latents (lerp where they are nearly parallel).

    sin((1 − t)·Ω)/sin Ω·a + sin(t·Ω)/sin Ω·b with cos Ω = ⟨a, b⟩/(|a|·|b|): for latents of equal norm the
    path keeps that norm, where lerp's midpoint shrinks towards 0 (Gaussian-like latents are not there).
    """
    fa, fb = a.flatten().double(), b.flatten().double()
    na, nb = fa.norm(), fb.norm()
    if na < 1e-12 or nb < 1e-12:
        return lerp(a, b, ts)
    cos = torch.clamp(torch.dot(fa, fb) / (na * nb), -1.0, 1.0)
    omega = torch.arccos(cos)
    if float(torch.sin(omega)) < 1e-6:
        return lerp(a, b, ts)
    out = []
    for t in ts:
        wa = torch.sin((1.0 - float(t)) * omega) / torch.sin(omega)
        wb = torch.sin(float(t) * omega) / torch.sin(omega)
        out.append((wa * fa + wb * fb).reshape(a.shape))
    return torch.stack(out).to(a.dtype)


def interpolate(a: Tensor, b: Tensor, ts: Sequence[float], mode: str = "slerp") -> Tensor:
    if mode not in INTERPOLATION_MODES:
        raise ULError(f"unknown interpolation mode {mode!r}; choose from {', '.join(INTERPOLATION_MODES)}")
    if a.shape != b.shape:
        raise ULError(
            f"the two latents differ in shape ({tuple(a.shape)} and {tuple(b.shape)}); "
            "interpolate images of the same size"
        )
    return (slerp if mode == "slerp" else lerp)(a, b, ts)


def edit_channel(z: Tensor, channel: int, scale: float = 1.0, offset: float = 0.0) -> Tensor:
    """A copy of z (C, h, w) with z[channel] ← scale·z[channel] + offset."""
    if not 0 <= int(channel) < z.shape[0]:
        raise ULError(f"channel {channel} does not exist: this latent has channels 0–{z.shape[0] - 1}")
    out = z.clone()
    out[int(channel)] = out[int(channel)] * float(scale) + float(offset)
    return out


def partial_grid(sched: Any, logsnr: float, steps: int) -> Tensor:
    """An increasing log-SNR grid from `logsnr` to the schedule's end, `steps` intervals uniform in t."""
    t0 = float(sched.t_of_logsnr(torch.tensor([float(logsnr)]))[0])
    t = torch.linspace(max(t0, 0.0), 0.0, int(steps) + 1, dtype=torch.float64)
    grid = sched.logsnr(t).double()
    grid[0], grid[-1] = float(logsnr), float(sched.logsnr_max)
    return grid


def denoiser_steps(sched: Any, logsnr: float, full_steps: int) -> int:
    """Steps from λ to λ_z(0): the full sampler's steps scaled by the stretch of t they cover (≥ 1)."""
    t0 = float(sched.t_of_logsnr(torch.tensor([float(logsnr)]))[0])
    return max(1, math.ceil(int(full_steps) * min(max(t0, 0.0), 1.0)))


@torch.no_grad()
def renoise_denoise(
    model: UnifiedLatents,
    z_clean: Tensor,
    logsnr: float,
    *,
    seed: int,
    steps: int,
    sampler: str = "ancestral",
    base: LatentBase | None = None,
    labels: Tensor | None = None,
    guidance: float = 1.0,
) -> Tensor:
    """Push z_clean (C, h, w) to log-SNR λ with noise from `seed`, then denoise back to λ_z(0) → z0 (1, C, h, w).

    The prior (or the base model, when given) runs `steps` sampler steps from λ to λ_z(0), its own noise
    from seed + 2. At λ ≥ λ_z(0) nothing is denoised: z0 = α0·z_clean + σ0·ε. λ below the schedule's
    minimum is clamped to it (the latent is then pure noise, and the result is a sample of the denoiser).
    """
    z = z_clean.float().to(_device(model))[None]
    sched = base.schedule if base is not None else model.latent_schedule
    lam_max = float(sched.logsnr_max)
    lam = max(float(logsnr), float(sched.logsnr_min))
    noise = fixed_noise(z.shape[1:], seed).to(z.device)[None]
    if lam >= lam_max - 1e-4:
        return gaussian.q_sample(z, torch.full((1,), lam_max, device=z.device), noise)
    z_lam = gaussian.q_sample(z, torch.full((1,), lam, device=z.device), noise)
    grid = partial_grid(sched, lam, max(1, int(steps))).to(z.device)
    if base is not None:

        def denoise(z_t: Tensor, ls: Tensor) -> Tensor:
            return base.x_hat(z_t, ls, labels, guidance)
    else:
        denoise = model.prior_x_hat
    return samplers.sample(
        denoise,
        grid,
        samplers.PerSampleNoise([int(seed) + 2], z.device),
        tuple(z.shape[1:]),
        sampler=sampler,
        final="state",
        z_init=z_lam,
    )


# ----------------------------------------------------------------------------------------------
# `ul interpolate`


def interpolate_files(
    store: Any,
    run_ref: int | str,
    image_a: str | Path,
    image_b: str | Path,
    out: str | Path,
    *,
    frames: int,
    mode: str = "slerp",
    decoder_steps: int | None = None,
    sampler: str | None = None,
    seed: int = 0,
    fps: float = 12.0,
) -> dict[str, Any]:
    """A video (.mp4) or GIF (.gif) of `frames` decodes from A's latent to B's (both fitted to the run's
    resolution). Returns what was written: path, frame count and size, and the settings used."""
    out = Path(out)
    if frames < 2:
        raise ULError("--frames must be at least 2 (the two images)")
    if frames > 2000:
        raise ULError("--frames must be at most 2000")
    kind = out.suffix.lower()
    if kind not in (".mp4", ".gif"):
        raise ULError(f"--out must end in .mp4 or .gif, not {out.name!r}")
    if mode not in INTERPOLATION_MODES:
        raise ULError(f"--mode must be one of {', '.join(INTERPOLATION_MODES)}")
    if not (math.isfinite(fps) and fps > 0):
        raise ULError(f"--fps must be a finite number above 0, got {fps}")
    check_output_file(out)  # before any work: a file where a folder should be fails now, not after decoding
    for path in (image_a, image_b):
        check_file(path)
    loaded = load_run(store, run_ref)
    cfg, model = loaded.cfg, loaded.stage1
    steps = int(decoder_steps or cfg.sampling.decoder_steps)
    sampler = sampler or cfg.sampling.sampler
    res = cfg.data.resolution
    images = np.stack([fit_image(load_image_rgb(p).array, res) for p in (image_a, image_b)])
    start = time.perf_counter()
    za, zb = encode_images(model, images)
    ts = np.linspace(0.0, 1.0, frames).tolist()
    latents = interpolate(za, zb, ts, mode)
    decoded = [decode_latents(model, chunk, seed=seed, steps=steps, sampler=sampler) for chunk in latents.split(16)]
    video = list(np.concatenate(decoded))
    seconds = time.perf_counter() - start
    out.parent.mkdir(parents=True, exist_ok=True)
    if kind == ".mp4":
        info = video_io.write_mp4(out, video, fps=fps)
    else:
        info = video_io.write_gif(out, video, fps=fps)
    return {
        **info,
        "run": loaded.run.id,
        "mode": mode,
        "decoder_steps": steps,
        "sampler": sampler,
        "seed": seed,
        "decode_seconds": seconds,
    }
