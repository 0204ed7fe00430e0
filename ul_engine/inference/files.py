"""Reading inputs and writing outputs: the one media interface that images and videos share above the model.

`media_for(path)` gives an `ImageMedia` or a `VideoMedia`; both offer the same steps, so reconstruction
is one path with a view switch rather than two pipelines:
  read(path)                → Media (uint8 frames, notices, fps)          the robust readers of `core.media`
  fit(media, ...)           → Media at a size the model takes            downscale / centre crop, with a notice
  window(media, multiple)   → Media padded to what the nets take         edge pixels (image) or the last frame
                                                                         (video) repeated, with a notice
  metrics(reference, est.)  → {"psnr", "ssim", ...}                      `eval.metrics.fidelity`, one definition
  write(path, media, meta)  → the file written                           PNG with text chunks, or MP4/GIF
A video's clip-length windows and a large image's tiles are cut below this, in `clips` and `tiling`.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ul_engine.core.errors import ULError
from ul_engine.core.imaging import save_png
from ul_engine.core.media import IMAGE_EXTENSIONS, fit_square, is_video_path, load_image_rgb
from ul_engine.core.reconstruction import MAX_RECONSTRUCT_SIDE
from ul_engine.core.video_io import read_video, write_video
from ul_engine.eval.metrics.fidelity import psnr_ssim

Progress = Callable[[int, int, str], bool | None]  # (done, total, what) → True to cancel


def expand_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Files as given; folders searched recursively for images (sorted)."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS))
        else:
            out.append(p)
    return out


# ----------------------------------------------------------------------------------------------
# Pixels ↔ model tensors


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


def _uint8_to_model(a: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) → (N, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(np.array(a, dtype=np.uint8)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def _finite(v: float | None) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


def frame_fidelity(reference: np.ndarray, estimate: np.ndarray) -> tuple[list[float], list[float]]:
    """PSNR (dB) and SSIM of each frame of two uint8 (N, H, W, 3) stacks (`eval.metrics.fidelity`)."""
    return psnr_ssim(_uint8_to_model(reference), _uint8_to_model(estimate))


# ----------------------------------------------------------------------------------------------
# The media interface


@dataclass
class Media:
    """Frames of one input as uint8 (N, H, W, 3): N = 1 for an image, the clip's frames for a video."""

    frames: np.ndarray
    notices: list[str] = field(default_factory=list)
    fps: float | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return int(self.frames.shape[2]), int(self.frames.shape[1])


class ImageMedia:
    """A still image: read by the robust reader, fitted under MAX_RECONSTRUCT_SIDE, written as PNG."""

    kind = "image"
    extension = ".png"

    def read(self, path: str | Path, max_frames: int | None = None) -> Media:
        loaded = load_image_rgb(path)
        return Media(loaded.array[None], list(loaded.notices))

    def fit(self, media: Media, resolution: int | None = None) -> Media:
        """Downscaled (area) so that the longer side is at most MAX_RECONSTRUCT_SIDE, with a notice."""
        notices = list(media.notices)
        return Media(fit_for_reconstruction(media.frames[0], notices)[None], notices, media.fps)

    def window(self, media: Media, multiple: int, min_side: int = 0) -> Media:
        """Padded by repeating the edge pixels to sides of at least `min_side` and multiples of `multiple` (the
        nets' downsampling; cropped back after decoding), with a notice when it grew."""
        _, h, w, _ = media.frames.shape
        ph, pw = (-(-max(min_side, side) // multiple) * multiple for side in (h, w))
        if (ph, pw) == (h, w):
            return media
        frames = np.pad(media.frames, ((0, 0), (0, ph - h), (0, pw - w), (0, 0)), mode="edge")
        notice = (f"padded from {w}×{h} to {pw}×{ph} by repeating the edge pixels (the model needs sides that are "
                  f"multiples of {multiple} and at least {min_side}); cropped back after decoding")  # fmt: skip
        return Media(frames, [*media.notices, notice], media.fps)

    def metrics(self, reference: np.ndarray, estimate: np.ndarray) -> dict[str, Any]:
        psnrs, ssims = frame_fidelity(reference, estimate)
        return {"psnr": _finite(psnrs[0]), "ssim": _finite(ssims[0])}

    def write(
        self, path: Path, frames: np.ndarray, meta: dict[str, str] | None = None, fps: float | None = None
    ) -> str:
        save_png(path, frames[0], meta)
        return str(path)


class VideoMedia:
    """A clip: decoded frame by frame straight to the model's square size, written as MP4 (H.264) or GIF."""

    kind = "video"
    extension = ".mp4"

    def read(self, path: str | Path, max_frames: int | None = None, resolution: int | None = None) -> Media:
        if max_frames is not None and max_frames < 1:
            raise ULError("max_frames must be at least 1")
        transform = None if resolution is None else (lambda f: fit_square(f, resolution, "center"))
        info = read_video(path, max_frames=max_frames, transform=transform)
        return Media(info["array"], [], info["fps"] or 8.0)

    def fit(self, media: Media, resolution: int | None = None) -> Media:
        """Centre crop and area resize to resolution² (a no-op on frames `read` already fitted)."""
        if resolution is None or media.size == (resolution, resolution):
            return media
        frames = np.stack([fit_square(f, resolution, "center") for f in media.frames])
        return Media(frames, list(media.notices), media.fps)

    def window(self, media: Media, multiple: int, min_side: int = 0) -> Media:
        """Padded by holding the last frame to at least `min_side` frames and a multiple of `multiple` (the
        temporal downsampling: whole latent frames); nothing beyond the given frames is invented."""
        n = media.frames.shape[0]
        length = -(-max(min_side, n) // multiple) * multiple
        return media if length == n else Media(hold_pad(media.frames, length), list(media.notices), media.fps)

    def metrics(self, reference: np.ndarray, estimate: np.ndarray) -> dict[str, Any]:
        """Means over frames (PSNR per frame too); identical frames count as 100 dB, as `psnr_frames` does."""
        per_frame = psnr_frames(reference, estimate)
        _, ssims = frame_fidelity(reference, estimate)
        ssim = [s for s in ssims if math.isfinite(s)]
        return {
            "frames": int(reference.shape[0]),
            "psnr_per_frame": per_frame,
            "psnr": float(np.mean(per_frame)),
            "ssim": float(np.mean(ssim)) if ssim else None,
        }

    def write(
        self, path: Path, frames: np.ndarray, meta: dict[str, str] | None = None, fps: float | None = None
    ) -> str:
        return str(write_video(path, list(frames), fps=fps or 8.0)["path"])


def media_for(path: str | Path) -> ImageMedia | VideoMedia:
    """The media interface for a file, decided by `core.media.is_video_path` (the one decision)."""
    return VideoMedia() if is_video_path(path) else ImageMedia()


def fit_for_reconstruction(image: np.ndarray, notices: list[str]) -> np.ndarray:
    """An image whose longer side is above MAX_RECONSTRUCT_SIDE, downscaled to it (area), with a notice."""
    import cv2  # why: cv2 costs start-up time and only large images need it

    h, w = image.shape[:2]
    side = max(h, w)
    if side <= MAX_RECONSTRUCT_SIDE:
        return image
    scale = MAX_RECONSTRUCT_SIDE / side
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    notices.append(f"downscaled from {w}×{h} to {size[0]}×{size[1]} to bound memory")
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def hold_pad(frames: np.ndarray, length: int) -> np.ndarray:
    """(N, H, W, 3) → (length, H, W, 3) by repeating the last frame (no invented content, no black)."""
    if frames.shape[0] >= length:
        return frames[:length]
    extra = np.repeat(frames[-1:], length - frames.shape[0], axis=0)
    return np.concatenate([frames, extra])


def psnr_frames(reference: np.ndarray, estimate: np.ndarray) -> list[float]:
    """PSNR (dB, on [0, 1]) of each frame of two uint8 (N, H, W, 3) clips; identical frames give inf → 100."""
    ref = reference.astype(np.float64) / 255.0
    est = estimate.astype(np.float64) / 255.0
    mse = ((ref - est) ** 2).reshape(ref.shape[0], -1).mean(axis=1)
    return [float(100.0 if m == 0 else -10.0 * math.log10(m)) for m in mse]


def load_clip(path: str | Path, resolution: int, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """A video file's frames fitted to resolution² (uint8 (N, H, W, 3)) and its frame rate; DataError if bad."""
    media = VideoMedia().read(path, max_frames=max_frames, resolution=resolution)
    return media.frames, float(media.fps or 8.0)


# ----------------------------------------------------------------------------------------------
# Outputs


def sample_png_meta(loaded: Any, seed: int, params: dict[str, Any]) -> dict[str, str]:
    """The text chunks every generated PNG carries: run, checkpoint (sha256, step), seed and the sampling parameters."""
    return {
        "ul-run": str(loaded.run.id),
        "ul-run-name": loaded.run.name,
        "ul-checkpoint-sha256": loaded.checkpoint_sha256 or "",
        "ul-checkpoint-step": "" if loaded.checkpoint_step is None else str(loaded.checkpoint_step),
        "ul-seed": str(seed),
        "ul-params": json.dumps(params),
    }


def terminal_progress(enabled: bool) -> tuple[Progress | None, Callable[[], None]]:
    """A tqdm bar on a terminal (one per phase), else nothing; returns (callback, close)."""
    if not enabled or not sys.stderr.isatty():
        return None, lambda: None
    from tqdm import tqdm  # why: only a terminal shows a bar

    bars: dict[str, Any] = {}

    def progress(done: int, total: int, what: str) -> None:
        bar = bars.get(what)
        if bar is None:
            bar = bars[what] = tqdm(total=total, desc=what, unit="step", leave=False)
        bar.total = total
        bar.n = done
        bar.refresh()

    def close() -> None:
        for bar in bars.values():
            bar.close()

    return progress, close
