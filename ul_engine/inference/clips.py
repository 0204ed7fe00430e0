"""Video windows: chunked encode/decode and the rate of clips of any length through a model trained on clips of
one length. Reconstruction (`reconstruct`) and sampling (`sample`) of videos are built on these.

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
from ul_engine.core.imaging import grid
from ul_engine.data.loader import to_model_tensor
from ul_engine.inference.files import Media, VideoMedia
from ul_engine.model import UnifiedLatents

Progress = Callable[[int, int, str], bool | None]  # (done, total, what) → True to cancel


class VideoCancelled(ULError):
    """The progress callback asked to stop."""


def require_video(loaded: Any) -> None:
    """A clear error when a loaded run is an image model."""
    if not loaded.cfg.model.time_axis:
        raise ULError(
            f"run {loaded.run.name} is an image model; videos need a video run (ul train --preset bouncing-32)"
        )


def report(progress: Progress | None, done: int, total: int, what: str) -> None:
    """Tell `progress`; VideoCancelled when it asks to stop."""
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


# ----------------------------------------------------------------------------------------------
# Chunked encode / decode


@torch.no_grad()
def encode_video(model: UnifiedLatents, frames: np.ndarray, *, progress: Progress | None = None) -> Tensor:
    """uint8 (N, H, W, 3) at the model's size → z_clean (C, ⌈N/f⌉, h, w), in windows of the clip length."""
    lay = Layout.of(model.cfg)
    device = next(model.parameters()).device
    video = VideoMedia().window(Media(frames), lay.time_down).frames
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
        report(progress, i + 1, len(starts), "encode")
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
            report(progress, done + info.index + 1, total, "decode")
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


def clip_strip(rows: list[np.ndarray], pad: int = 2, fill: int = 255) -> np.ndarray:
    """Clips (N, H, W, 3) as rows of frames, one image (for docs and previews)."""
    cols = max(r.shape[0] for r in rows)
    tiles = []
    for r in rows:
        tiles.extend(r)
        tiles.extend(np.full_like(r[0], fill) for _ in range(cols - r.shape[0]))
    return grid(np.stack(tiles), cols=cols, pad=pad, fill=fill)

