"""Decoded video clips for the players, without Qt: a file's frames in memory, bounded, with every way a file
can fail to be a video (empty, text renamed .mp4, cut off, no stream) turned into one line naming the file.

Frames are decoded once (imageio-ffmpeg, no torch), so scrubbing is instant. Memory is bounded: a clip keeps at
most `MAX_FRAMES` frames and at most `MAX_SIDE` pixels on its longer side (larger frames are shrunk); the clip's
`notes` say so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ul_engine.core.errors import ULError

MAX_FRAMES = 900  # frames a clip keeps in memory (30 s at 30 fps)
MAX_SIDE = 512  # the longer side a kept frame may have
DEFAULT_FPS = 12.0


@dataclass
class Clip:
    """Decoded RGB frames (H, W, 3) uint8 and what was left out to keep them bounded."""

    frames: list[np.ndarray]
    fps: float
    title: str = ""
    path: str | None = None
    source_frames: int = 0  # frames decoded from the file (≥ len(frames) when capped)
    source_size: tuple[int, int] = (0, 0)  # (width, height) in the file
    notes: list[str] = field(default_factory=list)
    given: int = 0  # leading frames that were given rather than generated (a continued clip's context)

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def size(self) -> tuple[int, int]:
        h, w = self.frames[0].shape[:2]
        return w, h


_REASONS = (  # ffmpeg's lines a person can act on, the most telling first
    ("moov atom not found", "the MP4 index (moov atom) is missing: the file was cut off or never finished"),
    ("partial file", "the file is cut off (a partial file)"),
    ("invalid nal", "the video data is damaged"),
    ("invalid data found", "ffmpeg found no video data it can read"),
    ("no such file", "the file does not exist"),
    ("does not contain any stream", "the file holds no video stream"),
)


def _ffmpeg_reason(exc: BaseException) -> str:
    """Why ffmpeg failed, in words (it prints a banner and a cascade of follow-on errors around it)."""
    text = str(exc).lower()
    for key, words in _REASONS:
        if key in text:
            return words
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:200]


_SIGNATURES = {  # container magic: a file named .mp4 that holds text is caught before ffmpeg is asked
    ".mp4": (4, (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip")),
    ".mov": (4, (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot")),
    ".webm": (0, (b"\x1a\x45\xdf\xa3",)),
    ".mkv": (0, (b"\x1a\x45\xdf\xa3",)),
    ".avi": (0, (b"RIFF",)),
}


def _looks_like_video(path: Path) -> bool:
    offset, magics = _SIGNATURES.get(path.suffix.lower(), (0, ()))
    if not magics:
        return True
    with path.open("rb") as f:
        head = f.read(16)
    return any(head[offset : offset + len(m)] == m for m in magics)


def _shrink(frame: np.ndarray, max_side: int) -> np.ndarray:
    h, w = frame.shape[:2]
    if max(h, w) <= max_side:
        return frame
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.BOX))


def decode_video(
    path: str | Path,
    *,
    title: str | None = None,
    max_frames: int = MAX_FRAMES,
    max_side: int = MAX_SIDE,
    cancelled: Callable[[], bool] = lambda: False,
) -> Clip:
    """Decode a video file into a bounded `Clip`; a file that is not a readable video raises ULError with a
    message naming the file and ffmpeg's reason. A file that breaks off midway keeps the frames before the
    break, with a note."""
    import imageio_ffmpeg  # why: ffmpeg's wrapper loads only when a video is opened, not at app start

    path = Path(path)
    name = path.name
    try:
        size_bytes = path.stat().st_size
    except OSError as exc:
        raise ULError(f"{name}: cannot read ({exc.strerror or exc})") from None
    if size_bytes == 0:
        raise ULError(f"{name}: the file is empty")
    try:
        looks = _looks_like_video(path)
    except OSError as exc:
        raise ULError(f"{name}: cannot read ({exc.strerror or exc})") from None
    if not looks:
        raise ULError(f"{name}: not a video file (its first bytes are not a {path.suffix.lower()[1:].upper()} "
                      "header; text or another format renamed?)")  # fmt: skip
    try:
        reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
        meta = reader.__next__()
    except (OSError, RuntimeError, StopIteration) as exc:
        raise ULError(f"{name}: cannot decode this video: {_ffmpeg_reason(exc)}") from None
    w, h = (int(v) for v in meta.get("size") or (0, 0))
    fps = float(meta.get("fps") or 0.0) or DEFAULT_FPS
    expected = round(float(meta.get("duration") or 0.0) * fps)
    frames: list[np.ndarray] = []
    decoded = 0
    notes: list[str] = []
    try:
        for raw in reader:
            decoded += 1
            if len(frames) < max_frames:
                frame = np.frombuffer(raw, np.uint8).reshape(h, w, 3)
                frames.append(np.ascontiguousarray(_shrink(frame, max_side)))
            elif cancelled():
                break
            if cancelled():
                break
    except (OSError, RuntimeError) as exc:
        notes.append(f"decoding stopped after {decoded} frames: {_ffmpeg_reason(exc)}")
    finally:
        reader.close()
    if not frames:
        raise ULError(f"{name}: no frame could be decoded; the file may be truncated or not a video")
    if expected and decoded < 0.9 * expected - 1 and not notes:
        notes.append(f"the file ends early: {decoded} of about {expected} frames (truncated?)")
    if decoded > len(frames):
        notes.append(f"first {len(frames)} of {decoded} frames kept in memory")
    if frames[0].shape[:2] != (h, w):
        fh, fw = frames[0].shape[:2]
        notes.append(f"shown at {fw}×{fh} (from {w}×{h})")
    return Clip(frames, fps, title if title is not None else name, str(path), decoded, (w, h), notes)


def side_by_side(frames: Sequence[np.ndarray], gap: int = 4) -> np.ndarray:
    """Frames of different sizes in one row (each enlarged to the tallest by an integer factor where it
    divides, then padded with black), for exporting several synced clips as one video."""
    height = max(f.shape[0] for f in frames)
    parts = []
    for i, f in enumerate(frames):
        k = height // f.shape[0]
        if k > 1 and f.shape[0] * k == height:
            f = np.repeat(np.repeat(f, k, axis=0), k, axis=1)
        pad = height - f.shape[0]
        f = np.pad(f, ((pad // 2, pad - pad // 2), (0, 0), (0, 0)))
        parts.append(f)
        if i < len(frames) - 1:
            parts.append(np.zeros((height, gap, 3), np.uint8))
    return np.concatenate(parts, axis=1)
