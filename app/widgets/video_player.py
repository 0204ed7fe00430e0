"""A video player for the Reconstruct and Generate pages: play/pause, scrub, frame step, loop, speed and a frame
counter, for one clip or several side by side that advance together; export to MP4 or GIF.

Clips come decoded (`app.models.clips`: bounded frames in memory, so scrubbing is instant); `ClipLoader` decodes
them off the GUI thread. Several players can share one `PlaybackClock` (a sync group): one frame index and one
timer, so an original and its reconstruction always show the same frame.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
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

from app.models.clips import DEFAULT_FPS, MAX_FRAMES, MAX_SIDE, Clip, decode_video, side_by_side
from app.widgets import file_dialogs
from app.widgets.image_views import qimage_from_array
from app.widgets.latent_tiles import PixelImage
from app.widgets.playback_clock import SPEEDS, PlaybackClock
from app.workers.background import BackgroundTask, run_in_background
from ul_engine.core import video_io
from ul_engine.core.errors import ULError

ClipsCallback = Callable[[list[Clip] | None, str | None], None]


class ClipLoader(QObject):
    """Decodes clips off the GUI thread; `load(specs, callback)` calls `callback(clips, error)` on the GUI
    thread. A newer load supersedes an older one that has not answered yet (only the newest is delivered)."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._tasks: dict[int, BackgroundTask[list[Clip]]] = {}
        self._token = 0

    def load(
        self,
        specs: Sequence[tuple[str, str]],
        callback: ClipsCallback,
        *,
        max_frames: int = MAX_FRAMES,
        max_side: int = MAX_SIDE,
        supersede: bool = True,
    ) -> int:
        if supersede:
            for task in self._tasks.values():
                task.cancel()
            self._tasks.clear()
        self._token += 1
        token = self._token
        pairs = [(str(p), t) for p, t in specs]

        def work(_task: BackgroundTask[list[Clip]]) -> list[Clip]:
            return [decode_video(p, title=t, max_frames=max_frames, max_side=max_side) for p, t in pairs]

        def done(clips: list[Clip]) -> None:
            self._tasks.pop(token, None)
            callback(clips, None)

        def failed(message: str) -> None:
            self._tasks.pop(token, None)
            callback(None, message)

        self._tasks[token] = run_in_background(work, done=done, failed=failed)
        return token

    def busy(self) -> bool:
        return bool(self._tasks)


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
            old = item.widget() if item is not None else None
            if old is not None:
                old.hide()
                old.deleteLater()
        self.views, self.titles = [], []
        slots: list[Clip | None] = list(self.clips) or [None]
        for clip in slots:
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
            self.export_menu.addAction(label, functools.partial(self.choose_export, i))
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
