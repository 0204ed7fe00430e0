"""Frames to MP4 (imageio-ffmpeg, H.264) and GIF (pillow), and video files back to frames; torch-free.

Latent-space frames are tiny (16–64 px), so they are first enlarged by an integer nearest-neighbour factor
until the shorter side reaches `min_side` (pixels stay crisp squares), then padded with black to a multiple
of 16 (H.264's macro block, and even sides for yuv420p), so ffmpeg never rescales them itself. Model clips
(`write_clip_mp4`) keep their size: no enlarging, and only an odd side gains one black row or column.

Reading (`probe_video`, `read_video`) turns every way a file can fail — missing, empty, not a video,
truncated so that ffmpeg cannot open it, or truncated so that it stops early — into a `DataError` that
names the file, so the CLI, the session worker and the app show one line instead of a traceback.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ul_engine.core.errors import DataError, ULError
from ul_engine.core.user_paths import check_file

MACRO_BLOCK = 16
DEFAULT_MIN_SIDE = 256
# A file whose decodable frames fall short of what its header promises by more than this is damaged.
_SHORTFALL_FRAMES = 2
_SHORTFALL_FRACTION = 0.02


def _check_frames(frames: Sequence[np.ndarray]) -> list[np.ndarray]:
    if len(frames) == 0:
        raise ULError("no frames to write")
    out = []
    first = None
    for i, frame in enumerate(frames):
        arr = np.asarray(frame)
        if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
            raise ULError(f"frame {i} is not an RGB uint8 image (shape {arr.shape}, {arr.dtype})")
        if first is None:
            first = arr.shape
        elif arr.shape != first:
            raise ULError(f"frame {i} is {arr.shape[1]}×{arr.shape[0]}, the first is {first[1]}×{first[0]}")
        out.append(np.ascontiguousarray(arr))
    return out


def upscale_nearest(frame: np.ndarray, min_side: int) -> np.ndarray:
    """Enlarge by the smallest integer factor that brings the shorter side to at least `min_side`."""
    h, w = frame.shape[:2]
    k = max(1, math.ceil(min_side / max(1, min(h, w))))
    if k == 1:
        return frame
    return np.repeat(np.repeat(frame, k, axis=0), k, axis=1)


def pad_to_multiple(frame: np.ndarray, multiple: int = MACRO_BLOCK) -> np.ndarray:
    """Pad with black, centred, to sides that are multiples of `multiple`."""
    h, w = frame.shape[:2]
    ph, pw = (-h) % multiple, (-w) % multiple
    if not ph and not pw:
        return frame
    return np.pad(frame, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))


def prepare(frames: Sequence[np.ndarray], min_side: int = DEFAULT_MIN_SIDE, multiple: int = 1) -> list[np.ndarray]:
    frames = _check_frames(frames)
    out = [upscale_nearest(f, min_side) for f in frames]
    if multiple > 1:
        out = [pad_to_multiple(f, multiple) for f in out]
    return out


def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


def write_mp4(
    path: str | Path,
    frames: Sequence[np.ndarray],
    *,
    fps: float = 12.0,
    min_side: int = DEFAULT_MIN_SIDE,
    quality: float = 8.0,
    multiple: int = MACRO_BLOCK,
) -> dict[str, Any]:
    """Write an H.264 MP4 (yuv420p, plays everywhere); atomic. Returns {path, frames, size: [w, h], fps}."""
    import imageio_ffmpeg  # lazy: only MP4 files need it, not GIFs, frames or probing by extension

    if not (math.isfinite(fps) and fps > 0):
        raise ULError(f"the frame rate must be a finite number above 0, got {fps}")
    path = Path(path)
    prepared = prepare(frames, min_side, multiple)
    h, w = prepared[0].shape[:2]
    tmp = _tmp_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        writer = imageio_ffmpeg.write_frames(
            str(tmp),
            (w, h),
            fps=float(fps),
            codec="libx264",
            pix_fmt_out="yuv420p",
            quality=quality,
            macro_block_size=multiple,
            ffmpeg_log_level="error",
        )
        writer.send(None)
        for frame in prepared:
            writer.send(frame)
        writer.close()
        os.replace(tmp, path)
    except OSError as exc:
        raise ULError(f"cannot write {path}: {exc}") from None
    except RuntimeError as exc:  # ffmpeg failed
        raise ULError(f"ffmpeg could not write {path}: {exc}") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return {"path": str(path), "frames": len(prepared), "size": [w, h], "fps": float(fps)}


def write_gif(
    path: str | Path, frames: Sequence[np.ndarray], *, fps: float = 12.0, min_side: int = DEFAULT_MIN_SIDE
) -> dict[str, Any]:
    """Write a looping GIF (pillow, adaptive palette); atomic. Returns {path, frames, size: [w, h], fps}.

    GIF keeps time in 10 ms units; pillow merges identical consecutive frames into one shown for their
    combined time, so `frames` is the count actually written (read back).
    """
    path = Path(path)
    prepared = prepare(frames, min_side, 1)
    images = [Image.fromarray(f) for f in prepared]
    if not (math.isfinite(fps) and fps > 0):
        raise ULError(f"the frame rate must be a finite number above 0, got {fps}")
    duration = max(20, round(1000.0 / float(fps) / 10) * 10)
    tmp = _tmp_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0)
        os.replace(tmp, path)
    except OSError as exc:
        raise ULError(f"cannot write {path}: {exc}") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    count, size = read_gif_info(path)
    held = gif_frame_rate(path)
    info: dict[str, Any] = {"path": str(path), "frames": count, "size": list(size), "fps": held}
    if abs(held - float(fps)) > 1e-6:
        info["fps_requested"] = float(fps)  # GIF stores whole centiseconds per frame (at least 2)
    return info


def read_mp4_info(path: str | Path) -> tuple[int, tuple[int, int]]:
    """(frame count, (width, height)) of a video, by decoding it."""
    import imageio_ffmpeg  # lazy: only MP4 files need it, not GIFs, frames or probing by extension

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = reader.__next__()
    count = sum(1 for _ in reader)
    w, h = meta["size"]
    return count, (int(w), int(h))


def write_clip_mp4(path: str | Path, frames: Sequence[np.ndarray], *, fps: float = 8.0) -> dict[str, Any]:
    """A model clip at its own size (yuv420p needs even sides: an odd side gains one black line)."""
    return write_mp4(path, frames, fps=fps, min_side=0, multiple=2, quality=9.0)


def write_video(path: str | Path, frames: Sequence[np.ndarray], *, fps: float = 8.0) -> dict[str, Any]:
    """MP4 or GIF by the file's suffix, at the frames' own size."""
    if Path(path).suffix.lower() == ".gif":
        return write_gif(path, frames, fps=fps, min_side=0)
    return write_clip_mp4(path, frames, fps=fps)


def _open_video(path: Path) -> tuple[Any, dict[str, Any]]:
    """imageio-ffmpeg's frame generator and its header, or a DataError naming what is wrong."""
    import imageio_ffmpeg  # lazy: only MP4 files need it, not GIFs, frames or probing by extension

    check_file(path)  # before ffmpeg opens it: a FIFO or a device would never end
    try:
        reader = imageio_ffmpeg.read_frames(str(path))
        meta = reader.__next__()
    except (OSError, RuntimeError, StopIteration, ValueError):
        raise DataError(
            f"{path.name}: cannot decode this file as video (not a video ffmpeg can read, or truncated/damaged)"
        ) from None
    if not meta.get("size") or meta["size"][0] <= 0:
        reader.close()
        raise DataError(f"{path.name}: the file has no video stream")
    return reader, meta


def _expected_frames(meta: dict[str, Any]) -> int | None:
    fps, duration = meta.get("fps") or 0.0, meta.get("duration") or 0.0
    if fps > 0 and duration > 0:
        return round(fps * duration)
    return None


def probe_video(path: str | Path) -> dict[str, Any]:
    """{frames, fps, width, height} by decoding the whole file, so a damaged file is found here, not later."""
    info = read_video(path, keep=False)
    return {"frames": info["frames"], "fps": info["fps"], "width": info["width"], "height": info["height"]}


def read_video(
    path: str | Path,
    *,
    max_frames: int | None = None,
    stride: int = 1,
    start: int = 0,
    transform: Any = None,
    keep: bool = True,
) -> dict[str, Any]:
    """Decode a video: {frames (count), fps, width, height, array: (N, H', W', 3) uint8 | None}.

    Frames start, start + stride, … (at most `max_frames`) are kept, each passed through `transform`
    (e.g. crop and resize to the model's size) as it is decoded, so memory holds only what is kept.
    A file that cannot be opened, or whose frames stop well before its header's duration (truncated), is
    a DataError. `frames` counts every decodable frame when the whole file was read.
    """
    if stride < 1 or start < 0:
        raise ValueError("stride must be ≥ 1 and start ≥ 0")
    path = Path(path)
    reader, meta = _open_video(path)
    width, height = (int(v) for v in meta["size"])
    kept: list[np.ndarray] = []
    count = 0
    complete = True
    try:
        for raw in reader:
            if count >= start and (count - start) % stride == 0 and keep:
                if max_frames is not None and len(kept) >= max_frames:
                    complete = False
                    break
                frame = np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3)
                kept.append(transform(frame) if transform is not None else frame.copy())
            count += 1
    except (OSError, RuntimeError, ValueError) as exc:
        raise DataError(f"{path.name}: decoding failed after {count} frames ({exc}); the file is damaged") from None
    finally:
        reader.close()
    expected = _expected_frames(meta)
    if complete and expected is not None and count < expected - max(_SHORTFALL_FRAMES, _SHORTFALL_FRACTION * expected):
        raise DataError(
            f"{path.name}: only {count} of the {expected} frames its header promises could be decoded; "
            "the file is truncated or damaged"
        )
    if count == 0:
        raise DataError(f"{path.name}: the video has no frames")
    if keep and not kept:
        raise DataError(f"{path.name}: no frame at {start} (the video has {count})")
    return {
        "frames": count,
        "fps": float(meta.get("fps") or 0.0),
        "width": width,
        "height": height,
        "array": np.stack(kept) if kept else None,
    }


def gif_frame_rate(path: str | Path) -> float:
    """Frames per second as the GIF file holds them (its first frame's delay, in centiseconds)."""
    with Image.open(path) as im:
        duration = float(im.info.get("duration") or 0.0)
    return 1000.0 / duration if duration > 0 else 0.0


def read_gif_info(path: str | Path) -> tuple[int, tuple[int, int]]:
    with Image.open(path) as im:
        return int(getattr(im, "n_frames", 1)), (int(im.width), int(im.height))


def load_frames(paths: Sequence[str | Path]) -> list[np.ndarray]:
    """PNG (or any image) files → RGB uint8 arrays, for exporting frames the session already wrote."""
    out = []
    for p in paths:
        try:
            with Image.open(p) as im:
                out.append(np.asarray(im.convert("RGB")))
        except OSError as exc:
            raise ULError(f"cannot read frame {p}: {exc}") from None
    return out
