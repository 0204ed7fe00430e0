"""The Generate page's video half: for a stage-2 run on video, draw clips with the session worker's
`video.sample` op — unconditionally, or continuing a dropped clip from its first k frames — and show them
in a gallery of players, each exportable to MP4 or GIF.

The context clip is checked (decoded, bounded) on a pool thread as soon as it is dropped, so an unreadable
file is refused with its reason before anything is sent, and k is kept below its length.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QComboBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.models.clips import Clip
from app.widgets import file_dialogs
from app.widgets.video_player import ClipLoader, VideoPlayer
from ul_engine.core.media import VIDEO_EXTENSIONS, is_video_path
from ul_engine.core.protocol import Partial, Progress, SampleVideos, VideoSamples

UNCONDITIONAL, CONTINUE = "unconditional", "continue"
GALLERY_COLUMNS = 3


class ContextDrop(QFrame):
    """A drop target for the clip to continue; `dropped(path)` for a video file dropped or chosen."""

    dropped = Signal(str)
    cleared = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("contextDrop")
        self.setAcceptDrops(True)
        self.setStyleSheet("#contextDrop { border: 2px dashed palette(mid); border-radius: 6px; }")
        self.setToolTip("Drop a video here: the model continues it from its first k frames.")
        row = QHBoxLayout(self)
        row.setContentsMargins(8, 4, 8, 4)
        self.label = QLabel("Drop a clip to continue")
        self.label.setWordWrap(True)
        row.addWidget(self.label, 1)
        self.choose = QPushButton("Choose…")
        self.choose.setToolTip("Pick the video to continue.")
        self.choose.clicked.connect(self._choose)
        self.clear_button = QPushButton("Clear")
        self.clear_button.setToolTip("Forget the clip (generate unconditionally).")
        self.clear_button.clicked.connect(self.cleared)
        row.addWidget(self.choose)
        row.addWidget(self.clear_button)

    def _choose(self) -> None:
        videos = " ".join(f"*{e}" for e in VIDEO_EXTENSIONS)
        path = file_dialogs.open_file(self, "A clip to continue", "video", f"Videos ({videos});;All files (*)")
        if path:
            self.dropped.emit(path)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        files = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if files:
            event.acceptProposedAction()
            self.dropped.emit(files[0])


class VideoGallery(QScrollArea):
    """Generated clips, each in its own compact player (own clock: they can be scrubbed one by one)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.inner = QWidget()
        self.grid = QGridLayout(self.inner)
        self.grid.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.setWidget(self.inner)
        self.players: list[VideoPlayer] = []

    def add_clip(self, clip: Clip) -> VideoPlayer:
        player = VideoPlayer(min_side=150, compact=True)
        player.setMinimumWidth(220)
        player.set_clips([clip])
        n = len(self.players)
        self.grid.addWidget(player, n // GALLERY_COLUMNS, n % GALLERY_COLUMNS)
        self.players.append(player)
        player.show()
        player.clock.play()
        return player

    def clear(self) -> None:
        for player in self.players:
            player.clock.pause()
            self.grid.removeWidget(player)
            player.hide()  # gone from the screen now, not when the deferred delete runs
            player.setParent(None)
            player.deleteLater()
        self.players = []


class VideoSamplingView(QWidget):
    """Mode, clip length and context above a gallery of generated clips."""

    progressed = Signal(int, int)  # done, total (the worker's steps)
    finished = Signal(dict)  # {"clips", "seconds", "ok", "message"}

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context: str | None = None
        self.context_frames_available = 0
        self.run_frames = 0
        self.outputs: list[str] = []
        self._job: dict[str, Any] | None = None
        self._token = 0
        self.loader = ClipLoader(self)
        self.context_loader = ClipLoader(self)
        root = QVBoxLayout(self)
        root.setContentsMargins(0, 0, 0, 0)
        top = QHBoxLayout()
        top.addWidget(QLabel("Clips"))
        self.mode = QComboBox()
        self.mode.addItem("unconditional", UNCONDITIONAL)
        self.mode.addItem("continue a clip", CONTINUE)
        self.mode.setToolTip("Draw whole clips, or give the first k frames of a clip and generate the rest.")
        self.mode.currentIndexChanged.connect(self._sync)
        top.addWidget(self.mode)
        top.addSpacing(12)
        top.addWidget(QLabel("Frames"))
        self.frames = QSpinBox()
        self.frames.setRange(0, 1024)
        self.frames.setSpecialValueText("run's")
        self.frames.setMinimumWidth(110)
        self.frames.setToolTip("Frames per generated clip (the run's clip length unless set).")
        self.frames.valueChanged.connect(self._sync)
        top.addWidget(self.frames)
        top.addStretch(1)
        root.addLayout(top)
        ctx_row = QHBoxLayout()
        self.drop = ContextDrop()
        self.drop.dropped.connect(self.set_context)
        self.drop.cleared.connect(lambda: self.set_context(None))
        ctx_row.addWidget(self.drop, 1)
        ctx_row.addWidget(QLabel("first k frames"))
        self.k = QSpinBox()
        self.k.setRange(1, 1024)
        self.k.setValue(2)
        self.k.setToolTip("How many frames of the clip the model is given; it generates the rest.")
        ctx_row.addWidget(self.k)
        self.context_row = QWidget()
        self.context_row.setLayout(ctx_row)
        root.addWidget(self.context_row)
        self.message = QLabel("")
        self.message.setObjectName("hint")
        self.message.setWordWrap(True)
        root.addWidget(self.message)
        self.gallery = VideoGallery()
        self.gallery.setObjectName("videoGallery")
        root.addWidget(self.gallery, 1)
        self._sync()

    def configure(self, config: dict[str, Any]) -> None:
        """A run was chosen: its clip length is the default, the context is kept."""
        data = config.get("data") or {}
        frames = int(data.get("frames") or 0)
        self.frames.setValue(0)
        self.frames.setSpecialValueText(f"run's ({frames})" if frames else "run's")
        self.run_frames = frames
        self._sync()

    def _sync(self) -> None:
        continuing = self.mode.currentData() == CONTINUE
        self.context_row.setEnabled(continuing)
        limit = max(1, self.context_frames_available - 1) if self.context else 1024
        if self.run_frames:
            limit = min(limit, max(1, (self.frames.value() or self.run_frames) - 1))
        self.k.setMaximum(limit)

    def set_context(self, path: str | None) -> None:
        """Use this video's first k frames (None forgets it). The file is decoded on a pool thread."""
        if path is None:
            self.context = None
            self.context_frames_available = 0
            self.drop.label.setText("Drop a clip to continue")
            self._sync()
            return
        if not is_video_path(path):
            self.message.setText(f"{Path(path).name}: not a video file (use {', '.join(VIDEO_EXTENSIONS)}).")
            return
        self.mode.setCurrentIndex(self.mode.findData(CONTINUE))
        self.drop.label.setText(f"checking {Path(path).name}…")
        self.context_loader.load([(path, Path(path).name)], lambda clips, error: self._on_context(path, clips, error),
                                 max_frames=256, max_side=256)  # fmt: skip

    def _on_context(self, path: str, clips: list[Clip] | None, error: str | None) -> None:
        if error is not None or not clips:
            self.context = None
            self.context_frames_available = 0
            self.drop.label.setText("Drop a clip to continue")
            self.message.setText(f"<span style='color:#d32f2f'>{error}</span>")
            self._sync()
            return
        clip = clips[0]
        self.context = path
        self.context_frames_available = clip.source_frames
        w, h = clip.source_size
        self.drop.label.setText(f"{Path(path).name} · {clip.source_frames} frames · {w}×{h}")
        self.message.setText("")
        self._sync()

    def busy(self) -> bool:
        return self._job is not None

    def request(self, settings: dict[str, Any], out_dir: str | Path, cancel_file: str | Path) -> SampleVideos | str:
        """The `video.sample` request for these page settings, or why there is none."""
        continuing = self.mode.currentData() == CONTINUE
        if continuing and self.context is None:
            return "Drop a clip to continue first (or choose unconditional)."
        return SampleVideos(
            run=settings["run"],
            checkpoint=settings["checkpoint"],
            n=int(settings["n"]),
            frames=self.frames.value() or None,
            steps=settings.get("base_steps"),
            decoder_steps=settings.get("decoder_steps"),
            seed=int(settings["seed"]),
            context=self.context if continuing else None,
            context_frames=self.k.value() if continuing else None,
            out_dir=str(out_dir),
            cancel_file=str(cancel_file),
        )

    def start(self, session: Any, settings: dict[str, Any], out_dir: str | Path, cancel_file: str | Path) -> bool:
        """Send one `video.sample` request; creating `cancel_file` (see `cancel`) stops it at its next step."""
        request = self.request(settings, out_dir, cancel_file)
        if isinstance(request, str):
            self.message.setText(request)
            return False
        self._token += 1
        token = self._token
        Path(cancel_file).unlink(missing_ok=True)
        self._job = {"token": token, "request": request, "started": time.perf_counter(),
                     "cancel_file": Path(cancel_file), "cancelled": False}  # fmt: skip
        self.gallery.clear()
        self.outputs = []
        what = (f"continuing {Path(str(request.context)).name} from {request.context_frames} frames"
                if request.context else "unconditional")  # fmt: skip
        self.message.setText(f"Sampling {request.n} clip{'s' if request.n != 1 else ''} ({what})…")
        session.call(
            request,
            lambda ok, result: self._on_answer(token, ok, result),
            on_event=lambda event: self._on_event(token, event),
        )
        return True

    def _on_event(self, token: int, event: Progress | Partial) -> None:
        if self._job is None or token != self._job["token"] or not isinstance(event, Progress):
            return
        self.progressed.emit(event.done, event.total)

    def _on_answer(self, token: int, ok: bool, result: VideoSamples | str) -> None:
        job = self._job
        if job is None or token != job["token"]:
            return
        if not isinstance(result, VideoSamples):
            cancelled = job["cancelled"] and "cancel" in str(result).lower()
            self._done(job, cancelled, "Cancelled: no clip was kept." if cancelled else f"Could not generate: {result}")
            return
        outputs = [str(p) for p in result.outputs]
        k = int(result.context_frames or 0)
        seed = job["request"].seed
        titles = [f"seed {seed + i}" + (f" · frames 1–{k} given" if k else "") for i in range(len(outputs))]
        job["result"] = result
        self.outputs = outputs
        self.loader.load(list(zip(outputs, titles, strict=True)),
                         lambda clips, error: self._on_clips(token, clips, error))  # fmt: skip

    def _on_clips(self, token: int, clips: list[Clip] | None, error: str | None) -> None:
        job = self._job
        if job is None or token != job["token"]:
            return
        if error is not None or clips is None:
            self._done(job, False, f"The clips were written but cannot be played: {error}")
            return
        given = int(job["result"].context_frames or 0)
        for clip in clips:
            clip.given = given
            self.gallery.add_clip(clip)
        result = job["result"]
        seconds = time.perf_counter() - job["started"]
        folder = Path(self.outputs[0]).parent if self.outputs else job["request"].out_dir
        self._done(job, True, f"{len(clips)} clips of {result.frames} frames in {seconds:.1f} s, saved in "
                              f"{folder}.")  # fmt: skip

    def cancel(self) -> None:
        job = self._job
        if job is None or job["cancelled"]:
            return
        job["cancelled"] = True
        job["cancel_file"].touch()
        self.message.setText("Cancelling after the current step…")

    def _done(self, job: dict[str, Any], ok: bool, message: str) -> None:
        self._job = None
        job["cancel_file"].unlink(missing_ok=True)
        self.message.setText(message if ok else f"<span style='color:#d32f2f'>{message}</span>")
        seconds = time.perf_counter() - job["started"]
        self.finished.emit({"clips": len(self.gallery.players), "seconds": seconds, "ok": ok, "message": message})
