"""A video player for the Reconstruct and Generate pages: play/pause, scrub, frame step, loop, speed and a frame
counter, for one clip or several side by side that advance together; export to MP4 or GIF.

Frames are decoded once (imageio-ffmpeg, no torch) into memory, so scrubbing is instant. Memory is bounded:
a clip keeps at most `MAX_FRAMES` frames and at most `MAX_SIDE` pixels on its longer side (larger frames are
shrunk); the player says so under the pictures when it happens.

Several players can share one `PlaybackClock` (a sync group): one frame index and one timer, so an original
and its reconstruction always show the same frame.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, QTimer, Signal
from PySide6.QtGui import QImage
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QMenu,
    QPushButton,
    QSlider,
    QStyle,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.widgets import file_dialogs
from app.widgets.image_views import qimage_from_array
from app.widgets.latent_tiles import PixelImage
from ul_engine.core.errors import ULError

MAX_FRAMES = 900  # frames a clip keeps in memory (30 s at 30 fps)
MAX_SIDE = 512  # the longer side a kept frame may have
SPEEDS = (0.25, 0.5, 1.0, 1.5, 2.0, 4.0)
DEFAULT_FPS = 12.0


# ----------------------------------------------------------------------------------------------
# Decoding


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
    from PIL import Image

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
    import imageio_ffmpeg

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


class _LoadSignals(QObject):
    done = Signal(int, object, object)  # token, list[Clip] or None, error message or None


class _LoadTask(QRunnable):
    def __init__(self, token: int, specs: list[tuple[str, str]], max_frames: int, max_side: int) -> None:
        super().__init__()
        self.token, self.specs, self.max_frames, self.max_side = token, specs, max_frames, max_side
        self.signals = _LoadSignals()

    def run(self) -> None:
        try:
            clips = [
                decode_video(p, title=t, max_frames=self.max_frames, max_side=self.max_side) for p, t in self.specs
            ]
        except ULError as exc:
            self.signals.done.emit(self.token, None, str(exc))
            return
        self.signals.done.emit(self.token, clips, None)


class ClipLoader(QObject):
    """Decodes clips on the thread pool; `load(specs, callback)` calls `callback(clips, error)` on the GUI
    thread. A newer load supersedes an older one that has not answered yet (only the newest is delivered)."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._token = 0
        self._callbacks: dict[int, Callable[[list[Clip] | None, str | None], None]] = {}
        self._tasks: dict[int, _LoadTask] = {}

    def load(
        self,
        specs: Sequence[tuple[str, str]],
        callback: Callable[[list[Clip] | None, str | None], None],
        *,
        max_frames: int = MAX_FRAMES,
        max_side: int = MAX_SIDE,
        supersede: bool = True,
    ) -> int:
        self._token += 1
        if supersede:
            self._callbacks.clear()
        task = _LoadTask(self._token, [(str(p), t) for p, t in specs], max_frames, max_side)
        task.setAutoDelete(False)
        task.signals.done.connect(self._on_done)
        self._callbacks[self._token] = callback
        self._tasks[self._token] = task
        QThreadPool.globalInstance().start(task)
        return self._token

    def _on_done(self, token: int, clips: Any, error: Any) -> None:
        self._tasks.pop(token, None)
        callback = self._callbacks.pop(token, None)
        if callback is not None:
            callback(clips, error)

    def busy(self) -> bool:
        return bool(self._tasks)


# ----------------------------------------------------------------------------------------------
# Timing


class PlaybackClock(QObject):
    """A sync group: one frame index, one timer. Playback is paced by elapsed time (at `fps × speed`), so a
    slow paint drops frames instead of slowing the video down."""

    frameChanged = Signal(int)
    stateChanged = Signal()  # playing, loop, speed or length changed

    def __init__(self, parent: QObject | None = None, now: Callable[[], float] = time.monotonic) -> None:
        super().__init__(parent)
        self.now = now
        self.frame = 0
        self.length = 0
        self.fps = DEFAULT_FPS
        self.speed = 1.0
        self.loop = True
        self.playing = False
        self._anchor = (0.0, 0)  # (time, frame) playback is measured from
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.timeout.connect(self.tick)

    def set_length(self, length: int, fps: float) -> None:
        self.length = max(0, int(length))
        self.fps = float(fps) if fps and fps > 0 else DEFAULT_FPS
        if self.length == 0:
            self.pause()
        self._reanchor()
        self._set_frame(min(self.frame, max(0, self.length - 1)), force=True)
        self._update_interval()
        self.stateChanged.emit()

    def interval_ms(self) -> int:
        """The timer period: one frame at the current rate, at least 5 ms."""
        return max(5, int(1000.0 / (self.fps * self.speed)))

    def _update_interval(self) -> None:
        self._timer.setInterval(self.interval_ms())

    def _reanchor(self) -> None:
        self._anchor = (self.now(), self.frame)

    def play(self) -> None:
        if self.length <= 1 or self.playing:
            return
        if self.frame >= self.length - 1 and not self.loop:
            self._set_frame(0)  # play at the end of a non-looping clip starts it over
        self.playing = True
        self._reanchor()
        self._update_interval()
        self._timer.start()
        self.stateChanged.emit()

    def pause(self) -> None:
        if not self.playing:
            return
        self.playing = False
        self._timer.stop()
        self.stateChanged.emit()

    def toggle(self) -> None:
        self.pause() if self.playing else self.play()

    def seek(self, frame: int) -> None:
        self._set_frame(int(frame))
        self._reanchor()

    def step(self, delta: int) -> None:
        """Frame step (pauses first, as players do); wraps around when looping."""
        self.pause()
        if self.length == 0:
            return
        target = self.frame + int(delta)
        if self.loop:
            target %= self.length
        self.seek(target)

    def set_speed(self, speed: float) -> None:
        self.speed = float(min(max(speed, SPEEDS[0]), SPEEDS[-1]))
        self._reanchor()
        self._update_interval()
        self.stateChanged.emit()

    def set_loop(self, loop: bool) -> None:
        self.loop = bool(loop)
        self.stateChanged.emit()

    def tick(self) -> None:
        """Show the frame that is due now; at the end, wrap (loop) or stop on the last frame."""
        if not self.playing or self.length == 0:
            return
        t0, f0 = self._anchor
        # + 1e-6: a frame due exactly now is not lost to rounding (1.1 s × 20 fps = 21.999…)
        due = f0 + int((self.now() - t0) * self.fps * self.speed + 1e-6)
        if due >= self.length:
            if self.loop:
                due %= self.length
                self._anchor = (self.now(), due)
            else:
                self._set_frame(self.length - 1)
                self.pause()
                return
        self._set_frame(due)

    def _set_frame(self, frame: int, *, force: bool = False) -> None:
        frame = min(max(0, frame), max(0, self.length - 1))
        if frame != self.frame or force:
            self.frame = frame
            self.frameChanged.emit(frame)


# ----------------------------------------------------------------------------------------------
# The widget


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


class VideoPlayer(QWidget):
    """One or several clips side by side under one control bar. Give several players the same `clock` to
    keep them in step; by default each has its own."""

    exported = Signal(str)  # the written file
    failed = Signal(str)

    def __init__(
        self,
        parent: QWidget | None = None,
        *,
        clock: PlaybackClock | None = None,
        min_side: int = 160,
        compact: bool = False,
        placeholder: str = "No video",
    ) -> None:
        super().__init__(parent)
        self.clock = clock or PlaybackClock(self)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)  # a click on the pictures gives the keys to the player
        self.clips: list[Clip] = []
        self.min_side = min_side
        self.placeholder = placeholder
        self.views: list[PixelImage] = []
        self.titles: list[QLabel] = []
        root = QVBoxLayout(self)
        root.setContentsMargins(0, 0, 0, 0)
        root.setSpacing(4)
        self.pictures = QHBoxLayout()
        self.pictures.setSpacing(6)
        root.addLayout(self.pictures, 1)

        bar = QHBoxLayout()
        bar.setSpacing(4)
        style = self.style()
        self._icons = {
            "▶": style.standardIcon(QStyle.StandardPixmap.SP_MediaPlay),
            "⏸": style.standardIcon(QStyle.StandardPixmap.SP_MediaPause),
        }
        self.play_button = QToolButton()
        self.play_button.setText("▶")  # the text names the state (tests, accessibility); the icon shows it
        self.play_button.setIcon(self._icons["▶"])
        self.play_button.setToolTip("Play or pause (Space).")
        self.play_button.clicked.connect(self.clock.toggle)
        self.back_button = QToolButton()
        self.back_button.setText("⏮")
        self.back_button.setIcon(style.standardIcon(QStyle.StandardPixmap.SP_MediaSkipBackward))
        self.back_button.setToolTip("One frame back.")
        self.back_button.clicked.connect(lambda: self.clock.step(-1))
        self.forward_button = QToolButton()
        self.forward_button.setText("⏭")
        self.forward_button.setIcon(style.standardIcon(QStyle.StandardPixmap.SP_MediaSkipForward))
        self.forward_button.setToolTip("One frame forward.")
        self.forward_button.clicked.connect(lambda: self.clock.step(1))
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setToolTip("Scrub: drag to any frame.")
        self.slider.setRange(0, 0)
        self.slider.setMinimumWidth(90)
        self.slider.valueChanged.connect(self._on_slider)
        self.counter = QLabel("0 / 0")
        self.counter.setToolTip("The frame shown, out of the clip's frames.")
        self.counter.setMinimumWidth(64)
        self.counter.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.loop_box = QCheckBox("Loop")
        self.loop_box.setChecked(self.clock.loop)
        self.loop_box.setToolTip("Start over at the end (otherwise stop on the last frame).")
        self.loop_box.toggled.connect(self.clock.set_loop)
        self.speed_box = QComboBox()
        for s in SPEEDS:
            self.speed_box.addItem(f"{s:g}×", s)
        self.speed_box.setCurrentIndex(SPEEDS.index(1.0))
        self.speed_box.setToolTip("Playback speed, relative to the clip's frame rate.")
        self.speed_box.currentIndexChanged.connect(lambda _i: self.clock.set_speed(float(self.speed_box.currentData())))
        self.export_button = QPushButton("Export…" if not compact else "⇩")
        self.export_button.setToolTip("Save the clip as MP4 or GIF (small clips are enlarged to 256 px, pixels kept "
                                      "square).")  # fmt: skip
        self.export_menu = QMenu(self)
        self.export_button.setMenu(self.export_menu)
        for w in (self.play_button, self.back_button, self.forward_button):
            bar.addWidget(w)
        bar.addWidget(self.slider, 1)
        bar.addWidget(self.counter)
        if compact:
            bar.addWidget(self.export_button)
            second = QHBoxLayout()
            second.addWidget(self.loop_box)
            second.addWidget(self.speed_box)
            second.addStretch(1)
            root.addLayout(bar)
            root.addLayout(second)
        else:
            bar.addWidget(self.loop_box)
            bar.addWidget(self.speed_box)
            bar.addWidget(self.export_button)
            root.addLayout(bar)
        self.note = QLabel("")
        self.note.setObjectName("hint")
        self.note.setWordWrap(True)
        self.note.setVisible(False)
        root.addWidget(self.note)
        self.clock.frameChanged.connect(self._show_frame)
        self.clock.stateChanged.connect(self._sync_controls)
        self.set_clips([])

    # ---- content ------------------------------------------------------------------------------------

    def set_clips(self, clips: Sequence[Clip]) -> None:
        """Show these clips side by side (an empty list shows the placeholder); the clock's length is the
        longest clip's, a shorter clip holds its last frame."""
        self.clips = list(clips)
        while self.pictures.count():
            item = self.pictures.takeAt(0)
            if item.widget() is not None:
                item.widget().hide()
                item.widget().deleteLater()
        self.views, self.titles = [], []
        for clip in self.clips or [None]:
            box = QWidget()
            col = QVBoxLayout(box)
            col.setContentsMargins(0, 0, 0, 0)
            col.setSpacing(2)
            title = QLabel(clip.title if clip is not None else "")
            title.setAlignment(Qt.AlignmentFlag.AlignCenter)
            view = PixelImage(min_side=self.min_side, placeholder=self.placeholder)
            col.addWidget(title)
            col.addWidget(view, 1)
            self.pictures.addWidget(box, 1)
            self.views.append(view)
            self.titles.append(title)
        notes = [f"{c.title}: {n}" if len(self.clips) > 1 else n for c in self.clips for n in c.notes]
        self.note.setText("; ".join(notes))
        self.note.setVisible(bool(notes))
        self._fill_export_menu()
        length = max((len(c) for c in self.clips), default=0)
        self.clock.set_length(length, self.clips[0].fps if self.clips else DEFAULT_FPS)
        self._show_frame(self.clock.frame)
        self._sync_controls()

    def _fill_export_menu(self) -> None:
        self.export_menu.clear()
        for i, clip in enumerate(self.clips):
            label = f"“{clip.title}”…" if len(self.clips) > 1 else "This clip…"
            self.export_menu.addAction(label, lambda i=i: self.choose_export(i))
        if len(self.clips) > 1:
            self.export_menu.addAction("All side by side…", lambda: self.choose_export(None))
        self.export_button.setEnabled(bool(self.clips))

    def current_frame(self) -> int:
        return self.clock.frame

    def _show_frame(self, frame: int) -> None:
        for clip, view in zip(self.clips, self.views, strict=False):
            view.set_qimage(qimage_from_array(clip.frames[min(frame, len(clip) - 1)]))
        if not self.clips and self.views:
            self.views[0].set_qimage(QImage())
        self.slider.blockSignals(True)
        self.slider.setValue(frame)
        self.slider.blockSignals(False)
        text = f"{frame + 1} / {self.clock.length}" if self.clock.length else "0 / 0"
        if any(frame < c.given for c in self.clips):
            text += " · given"  # this frame came from the context clip, the model did not make it
        self.counter.setText(text)

    def _sync_controls(self) -> None:
        has = self.clock.length > 0
        self.slider.setRange(0, max(0, self.clock.length - 1))
        state = "⏸" if self.clock.playing else "▶"
        self.play_button.setText(state)
        self.play_button.setIcon(self._icons[state])
        for w in (self.play_button, self.back_button, self.forward_button, self.slider):
            w.setEnabled(has)
        self.loop_box.blockSignals(True)
        self.loop_box.setChecked(self.clock.loop)
        self.loop_box.blockSignals(False)
        index = self.speed_box.findData(self.clock.speed)
        if index >= 0 and index != self.speed_box.currentIndex():
            self.speed_box.blockSignals(True)
            self.speed_box.setCurrentIndex(index)
            self.speed_box.blockSignals(False)

    def _on_slider(self, value: int) -> None:
        self.clock.seek(value)

    def keyPressEvent(self, event: Any) -> None:
        key = event.key()
        if key == Qt.Key.Key_Space:
            self.clock.toggle()
        elif key in (Qt.Key.Key_Left, Qt.Key.Key_Comma):
            self.clock.step(-1)
        elif key in (Qt.Key.Key_Right, Qt.Key.Key_Period):
            self.clock.step(1)
        else:
            super().keyPressEvent(event)

    # ---- export -------------------------------------------------------------------------------------

    def choose_export(self, index: int | None = 0) -> None:
        if not self.clips:
            return
        stem = Path(self.clips[index or 0].path or "clip").stem if index is not None else "side-by-side"
        path, chosen = file_dialogs.save_file(
            self, "Export the clip", "video", f"{stem}.mp4", "MP4 video (*.mp4);;Animated GIF (*.gif)"
        )
        if not path:
            return
        if not Path(path).suffix:
            path += ".gif" if "GIF" in chosen else ".mp4"
        self.export(path, index)

    def export(self, path: str | Path, index: int | None = 0) -> dict[str, Any] | None:
        """Write clip `index` (None: all clips side by side) to `path`; .gif writes a GIF, anything else an
        MP4. Returns what video_io reports, or None after emitting `failed` with the reason."""
        from ul_engine.core import video_io

        path = Path(path)
        if not self.clips:
            self.failed.emit("nothing to export: no clip is loaded")
            return None
        if index is None:
            length = max(len(c) for c in self.clips)
            frames = [side_by_side([c.frames[min(i, len(c) - 1)] for c in self.clips]) for i in range(length)]
        else:
            frames = self.clips[index].frames
        fps = self.clips[0 if index is None else index].fps
        try:
            if path.suffix.lower() == ".gif":
                info = video_io.write_gif(path, frames, fps=fps)
            else:
                info = video_io.write_mp4(path, frames, fps=fps)
        except ULError as exc:
            self.failed.emit(str(exc))
            self.note.setText(f"Export failed: {exc}")
            self.note.setVisible(True)
            return None
        self.exported.emit(str(path))
        return info
