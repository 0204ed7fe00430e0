"""Video through a trained run: chunked encode/decode of clips of any length, reconstruction with per-frame
PSNR, and sampling (unconditional, or continuing the first k frames of a given clip).

Why chunks: the nets are convolutional in time and the transformers take any token count, so a whole
video would run as one piece — with memory growing with its length. Instead clips are cut into windows of
the model's clip length with half a window of overlap; each window is encoded (or decoded) alone and the
overlaps are blended with tent weights (largest in a window's middle, where it sees most context). Only
one window is ever in the network, so memory is bounded by the clip length, not the video's.

Frames ↔ latent frames: with temporal downsampling f, latent frame j covers frames [j·f, (j+1)·f). k given
frames are ⌈k / f⌉ latent frames; a partly given last latent frame is encoded with the last given frame
held (repeated), so nothing beyond frame k is ever read.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ul_engine.core.errors import ULError
from ul_engine.data.loader import to_model_tensor
from ul_engine.model import LN2, LatentBase, UnifiedLatents

Progress = Callable[[int, int, str], bool | None]  # (done, total, what) → True to cancel


class VideoCancelled(ULError):
    """The progress callback asked to stop."""


def _tick(progress: Progress | None, done: int, total: int, what: str) -> None:
    if progress is not None and progress(done, total, what):
        raise VideoCancelled("cancelled")


def window_starts(length: int, window: int, hop: int) -> list[int]:
    """Start indices of windows of `window` covering [0, length): every `hop`, the last flush with the end."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window + 1, hop))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts


def tent(n: int) -> np.ndarray:
    """Blend weights of a window of n frames: 1, 2, …, peak, …, 2, 1 (never 0, so an edge frame still counts)."""
    i = np.arange(n, dtype=np.float64)
    return np.minimum(i + 1, n - i)


@dataclass
class Layout:
    """A video model's clip geometry."""

    frames: int  # T: the clip length it was trained on
    time_down: int  # f
    resolution: int

    @classmethod
    def of(cls, cfg: Any) -> Layout:
        if not cfg.model.time_axis:
            raise ULError(f"run config {cfg.preset!r} is an image model; video needs a video run (e.g. bouncing-32)")
        return cls(cfg.data.frames, cfg.model.time_downsample, cfg.data.resolution)

    @property
    def latent_frames(self) -> int:
        return self.frames // self.time_down

    def padded(self, n: int) -> int:
        """Frames after padding n to a whole number of latent frames."""
        return math.ceil(n / self.time_down) * self.time_down


def hold_pad(frames: np.ndarray, length: int) -> np.ndarray:
    """(N, H, W, 3) → (length, H, W, 3) by repeating the last frame (no invented content, no black)."""
    if frames.shape[0] >= length:
        return frames[:length]
    extra = np.repeat(frames[-1:], length - frames.shape[0], axis=0)
    return np.concatenate([frames, extra])


# ----------------------------------------------------------------------------------------------
# Chunked encode / decode


@torch.no_grad()
def encode_video(model: UnifiedLatents, frames: np.ndarray, *, progress: Progress | None = None) -> Tensor:
    """uint8 (N, H, W, 3) at the model's size → z_clean (C, ⌈N/f⌉, h, w), in windows of the clip length."""
    lay = Layout.of(model.cfg)
    device = next(model.parameters()).device
    video = hold_pad(frames, lay.padded(frames.shape[0]))
    n_lat = video.shape[0] // lay.time_down
    win = lay.latent_frames
    starts = window_starts(n_lat, win, max(1, win // 2))
    out: Tensor | None = None
    weight = torch.zeros(n_lat)
    for i, s in enumerate(starts):
        size = min(win, n_lat - s)
        x = to_model_tensor(video[None, s * lay.time_down : (s + size) * lay.time_down]).to(device)
        z = model.encode(x)[0].float().cpu()  # (C, size, h, w)
        w = torch.from_numpy(tent(size)).float()
        if out is None:
            out = torch.zeros(z.shape[0], n_lat, *z.shape[2:])
        out[:, s : s + size] += z * w[None, :, None, None]
        weight[s : s + size] += w
        _tick(progress, i + 1, len(starts), "encode")
    assert out is not None
    return out / weight[None, :, None, None]


@torch.no_grad()
def decode_video(
    model: UnifiedLatents,
    z0: Tensor,
    *,
    steps: int,
    seed: int,
    sampler: str = "ancestral",
    progress: Progress | None = None,
) -> np.ndarray:
    """Noisy latent z0 (C, N', h, w) → uint8 (N'·f, H, W, 3): each window decoded alone, overlaps blended."""
    lay = Layout.of(model.cfg)
    device = next(model.parameters()).device
    n_lat = z0.shape[1]
    win = lay.latent_frames
    starts = window_starts(n_lat, win, max(1, win // 2))
    acc: np.ndarray | None = None
    weight = np.zeros(n_lat * lay.time_down)
    total = len(starts) * steps
    for i, s in enumerate(starts):
        size = min(win, n_lat - s)
        done = i * steps

        def step(info: Any, done: int = done) -> bool:
            _tick(progress, done + info.index + 1, total, "decode")
            return False

        x = model.decode(z0[None, :, s : s + size].to(device), steps=steps, seeds=[seed + 7919 * i], sampler=sampler,
                         callback=step)  # fmt: skip
        clip = x[0].float().clamp(-1, 1).permute(1, 2, 3, 0).cpu().numpy()  # (F, H, W, 3) in [-1, 1]
        w = tent(clip.shape[0])
        lo = s * lay.time_down
        if acc is None:
            acc = np.zeros((n_lat * lay.time_down, *clip.shape[1:]), dtype=np.float64)
        acc[lo : lo + clip.shape[0]] += clip * w[:, None, None, None]
        weight[lo : lo + clip.shape[0]] += w
    assert acc is not None
    blended = acc / weight[:, None, None, None]
    return np.clip((blended + 1.0) * 127.5, 0, 255).round().astype(np.uint8)


@torch.no_grad()
def video_rate(model: UnifiedLatents, z_clean: Tensor, draws: int = 16) -> float:
    """Nats of the whole latent under the prior, summed over non-overlapping windows of the clip length.

    Coding windows independently can only cost more than coding the whole latent jointly, so this is
    still an upper bound on the information in the latent."""
    win = Layout.of(model.cfg).latent_frames
    device = next(model.parameters()).device
    total = 0.0
    for s in range(0, z_clean.shape[1], win):
        chunk = z_clean[None, :, s : s + win].to(device)
        total += float(model.estimate_rate(chunk, draws=draws)[0])
    return total


# ----------------------------------------------------------------------------------------------
# Reconstruction and sampling


@dataclass
class VideoReconstruction:
    original: np.ndarray  # (N, H, W, 3) uint8: the frames used, at the model's size
    reconstruction: np.ndarray  # (N, H, W, 3) uint8
    psnr_per_frame: list[float]
    psnr: float  # mean of the per-frame PSNRs
    rate_nats: float
    bits_per_pixel: float  # rate / (N·H·W)
    bits_per_dim: float  # rate / latent dimensions

    def metrics(self) -> dict[str, Any]:
        return {
            "frames": int(self.original.shape[0]),
            "psnr_per_frame": self.psnr_per_frame,
            "psnr": self.psnr,
            "bits_per_pixel": self.bits_per_pixel,
            "bits_per_dim": self.bits_per_dim,
        }


def psnr_frames(reference: np.ndarray, estimate: np.ndarray) -> list[float]:
    """PSNR (dB, on [0, 1]) of each frame of two uint8 (N, H, W, 3) clips; identical frames give inf → 100."""
    ref = reference.astype(np.float64) / 255.0
    est = estimate.astype(np.float64) / 255.0
    mse = ((ref - est) ** 2).reshape(ref.shape[0], -1).mean(axis=1)
    return [float(100.0 if m == 0 else -10.0 * math.log10(m)) for m in mse]


def reconstruct_video(
    model: UnifiedLatents,
    frames: np.ndarray,
    *,
    decoder_steps: int,
    seed: int = 0,
    sampler: str = "ancestral",
    rate_draws: int = 16,
    progress: Progress | None = None,
) -> VideoReconstruction:
    """Encode → z0 = α0·z + σ0·ε (seeded) → decode, in windows; PSNR per frame and the prior's bits."""
    n = frames.shape[0]
    z_clean = encode_video(model, frames, progress=progress)
    g = torch.Generator().manual_seed(int(seed))
    z0 = model.noisy_latent(z_clean, torch.randn(z_clean.shape, generator=g))
    recon = decode_video(model, z0, steps=decoder_steps, seed=seed + 1, sampler=sampler, progress=progress)[:n]
    rate = video_rate(model, z_clean, rate_draws)
    per_frame = psnr_frames(frames, recon)
    pixels = n * frames.shape[1] * frames.shape[2]
    return VideoReconstruction(
        original=frames,
        reconstruction=recon,
        psnr_per_frame=per_frame,
        psnr=float(np.mean(per_frame)),
        rate_nats=rate,
        bits_per_pixel=rate / LN2 / pixels,
        bits_per_dim=rate / LN2 / z_clean.numel(),
    )


@torch.no_grad()
def reconstruct_clip_batch(
    model: UnifiedLatents, x: Tensor, *, decoder_steps: int, seeds: list[int], rate_draws: int = 16
) -> list[Any]:
    """Clips (B, 3, T, H, W) of the model's length in [-1, 1] → `pipeline.Reconstruction`s (`ul eval`):
    PSNR and SSIM are means over frames, bits are per pixel of the whole clip."""
    from ul_engine.eval.metrics.fidelity import psnr_ssim
    from ul_engine.inference.pipeline import Reconstruction

    device = next(model.parameters()).device
    x = x.to(device)
    z_clean = model.encode(x)
    noise = torch.stack([_noise(z_clean.shape[1:], s) for s in seeds]).to(device)
    x_hat = model.decode(model.noisy_latent(z_clean, noise), steps=decoder_steps, seeds=[s + 1 for s in seeds])
    rate = model.estimate_rate(z_clean, draws=rate_draws).cpu()
    frames = x.shape[2]
    psnrs, ssims = psnr_ssim(x.transpose(1, 2).flatten(0, 1).cpu(), x_hat.transpose(1, 2).flatten(0, 1).cpu())
    pixels, dims = x[0, 0].numel(), z_clean[0].numel()
    out = []
    for i in range(x.shape[0]):
        clip_ssim = ssims[i * frames : (i + 1) * frames]
        out.append(Reconstruction(
            reconstruction=np.zeros((0,), np.uint8), psnr=float(np.mean(psnrs[i * frames : (i + 1) * frames])),
            ssim=float(np.mean(clip_ssim)), rate_nats=float(rate[i]), bits_per_pixel=float(rate[i]) / LN2 / pixels,
            bits_per_dim=float(rate[i]) / LN2 / dims, decode_seconds=0.0,
        ))  # fmt: skip
    return out


def context_latent_frames(pixel_frames: int, time_down: int) -> int:
    """Latent frames that k given frames occupy: ⌈k / f⌉."""
    return math.ceil(pixel_frames / time_down)


@torch.no_grad()
def sample_latents(
    base: LatentBase,
    stage1: UnifiedLatents,
    n: int,
    *,
    frames: int,
    seed: int,
    steps: int,
    sampler: str = "ancestral",
    context: np.ndarray | None = None,
    context_frames: int = 0,
    progress: Progress | None = None,
) -> Tensor:
    """n noisy latents z0 (n, C, ⌈frames/f⌉, h, w) from the base model.

    The first window is unconditional, or conditioned on the encoded first `context_frames` frames of
    `context`; longer videos grow window by window, each conditioned on the last `model.base.context_frames`
    latent frames generated so far (needs a model trained with context).
    """
    lay = Layout.of(base.cfg)
    device = next(base.parameters()).device
    win = lay.latent_frames
    want = math.ceil(frames / lay.time_down)
    given = 0
    ctx: Tensor | None = None
    if context is not None and context_frames:
        if context.shape[0] < context_frames:
            raise ULError(f"--context-frames {context_frames}: the context clip has only {context.shape[0]} frames")
        given = context_latent_frames(context_frames, lay.time_down)
        if given >= min(win, want):
            raise ULError(
                f"--context-frames {context_frames} covers {given} latent frames; the model's window has {win} "
                f"and {want} are asked for, so nothing would be generated — give fewer context frames"
            )
        clip = hold_pad(context[:context_frames], lay.frames)
        ctx = encode_video(stage1, clip)[None].expand(n, -1, -1, -1, -1).contiguous()
    hop_context = base.context_frames
    if want > win and not hop_context:
        raise ULError(
            f"{frames} frames is longer than this model's clip ({lay.frames} frames), and it was trained without "
            "context (model.base.context_frames = 0), so it cannot continue a clip"
        )
    windows = 1 if want <= win else 1 + math.ceil((want - win) / (win - hop_context))
    seeds = list(range(seed, seed + n))
    done_steps = 0

    def tick(info: Any) -> bool:
        _tick(progress, done_steps + info.index + 1, windows * steps, "base")
        return False

    if ctx is None:
        ctx = torch.zeros((n, *base.cfg.latent_shape()))
    z = base.sample(n, steps=steps, seeds=seeds, sampler=sampler, device=device, callback=tick,
                    context=ctx if given else None, given_frames=given).cpu()  # fmt: skip
    if given:  # the given frames: exactly what the decoder would read for them
        z[:, :, :given] = stage1.noisy_latent(ctx[:, :, :given], _noise(ctx[:, :, :given].shape, seed + 31))
    out = z
    w = 1
    while out.shape[2] < want:
        done_steps = w * steps
        window_ctx = torch.zeros_like(z)
        window_ctx[:, :, :hop_context] = out[:, :, -hop_context:] / stage1.alpha0
        nxt = base.sample(n, steps=steps, seeds=[s + 104_729 * w for s in seeds], sampler=sampler, device=device,
                          callback=tick, context=window_ctx, given_frames=hop_context).cpu()  # fmt: skip
        out = torch.cat([out, nxt[:, :, hop_context:]], dim=2)
        w += 1
    return out[:, :, :want]


def _noise(shape: torch.Size, seed: int) -> Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(int(seed)))


def sample_videos(
    base: LatentBase,
    stage1: UnifiedLatents,
    n: int,
    *,
    frames: int | None = None,
    seed: int = 0,
    base_steps: int,
    decoder_steps: int,
    sampler: str = "ancestral",
    context: np.ndarray | None = None,
    context_frames: int = 0,
    progress: Progress | None = None,
) -> list[np.ndarray]:
    """n clips, each uint8 (frames, H, W, 3): base model → z0 → chunked decoder."""
    lay = Layout.of(base.cfg)
    frames = frames or lay.frames
    if frames < 1 or n < 1:
        raise ULError("--frames and --n must be at least 1")
    z0 = sample_latents(base, stage1, n, frames=frames, seed=seed, steps=base_steps, sampler=sampler,
                        context=context, context_frames=context_frames, progress=progress)  # fmt: skip
    clips = []
    for i in range(n):

        def step(done: int, total: int, what: str, i: int = i) -> bool | None:
            return progress(i * total + done, n * total, "decode") if progress is not None else None

        clip = decode_video(stage1, z0[i], steps=decoder_steps, seed=seed + i + 10_000_019, sampler=sampler,
                            progress=step)  # fmt: skip
        clips.append(clip[:frames])
    return clips


def clip_strip(rows: list[np.ndarray], pad: int = 2, fill: int = 255) -> np.ndarray:
    """Clips (N, H, W, 3) as rows of frames, one image (for docs and previews)."""
    from ul_engine.core.imaging import grid

    cols = max(r.shape[0] for r in rows)
    tiles = []
    for r in rows:
        tiles.extend(r)
        tiles.extend(np.full_like(r[0], fill) for _ in range(cols - r.shape[0]))
    return grid(np.stack(tiles), cols=cols, pad=pad, fill=fill)


__all__ = [
    "Layout",
    "VideoCancelled",
    "VideoReconstruction",
    "clip_strip",
    "decode_video",
    "encode_video",
    "psnr_frames",
    "reconstruct_video",
    "sample_latents",
    "sample_videos",
    "video_rate",
]
