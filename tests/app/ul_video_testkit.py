"""Models and clips for the video page tests: a `bouncing-smoke` stage-1 run `v1`, a stage-2 run `v2` on it, and a
`smoke` image run `img` (for the image/video refusals), trained once per pytest session with the `ul` command
and copied into each module's home; and small MP4s of a moving square written with imageio-ffmpeg."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ul_testkit import shared_home

from ul_engine.core import video_io

STEPS = 4  # per stage: the tests check the plumbing, not the quality


VIDEO_RUNS = (
    ("train", "--preset", "bouncing-smoke", "--steps", str(STEPS), "--name", "v1"),
    ("train", "--preset", "bouncing-smoke", "--stage", "2", "--from-run", "v1", "--steps", str(STEPS), "--name", "v2"),
    ("train", "--preset", "smoke", "--steps", "2", "--name", "img"),
)


def video_home(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A private copy of the shared home with runs v1 (video, stage 1), v2 (video, stage 2) and img (image)."""
    return shared_home(tmp_path_factory, "ul-video-smoke", VIDEO_RUNS, name, in_process=True)


def moving_square(frames: int, size: int = 32, seed: int = 0) -> list[np.ndarray]:
    """A coloured square crossing a gradient background, one step per frame."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    background = np.stack([xx * 255 // (size - 1), yy * 255 // (size - 1), np.full_like(xx, 90)], -1)
    colour = rng.integers(60, 255, 3)
    side = size // 4
    out = []
    for t in range(frames):
        f = background.copy()
        x = (2 * t) % (size - side)
        y = size // 3
        f[y : y + side, x : x + side] = colour
        out.append(f.astype(np.uint8))
    return out


def write_clip(path: Path, frames: int = 12, size: int = 32, seed: int = 0) -> Path:
    video_io.write_mp4(path, moving_square(frames, size, seed), fps=8, min_side=1)
    return path


def truncated_copy(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    return dst


def text_named_mp4(path: Path) -> Path:
    path.write_text("not a video, just words\n" * 10)
    return path


def drop_files(qtbot, widget, paths: list[Path]) -> None:
    """A synthesized drag-enter + drop of file URLs onto `widget` (as a file manager would)."""
    from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
    from PySide6.QtGui import QDragEnterEvent, QDropEvent
    from PySide6.QtWidgets import QApplication

    md = QMimeData()
    md.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    pos = QPointF(widget.rect().center())
    enter = QDragEnterEvent(pos.toPoint(), Qt.DropAction.CopyAction, md, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)  # fmt: skip
    QApplication.sendEvent(widget, enter)
    assert enter.isAccepted()
    event = QDropEvent(pos, Qt.DropAction.CopyAction, md, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, event)
    assert event.isAccepted()
