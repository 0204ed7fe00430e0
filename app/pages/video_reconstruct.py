"""The Reconstruct page's video half: dropped video files go, one at a time, to the session worker's
`video.reconstruct` op; the original and its reconstruction play in one sync group, a per-frame PSNR plot
seeks the players on click, and the bits (per pixel, per latent dimension) sit beside them.

Each file is probed off the GUI thread first (its container header and first frame, with imageio-ffmpeg), so
a truncated MP4 or a text file named `.mp4` gets its message at once, without a worker call; a run trained
on images refuses video (and the page refuses images for a video run) before anything is sent.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app import glossary
from app.models.clips import Clip, decode_video
from app.models.jobs import CANCELLED, CHECKING, DONE, ERROR, LOADING, RUNNING, JobQueue, JobState, VideoJob, counts
from app.widgets.frame_plot import FramePlot
from app.widgets.metrics_table import metrics_panel
from app.widgets.video_player import ClipLoader, VideoPlayer
from app.workers.background import BackgroundTask, run_in_background
from ul_engine.core.protocol import Partial, Progress, ReconstructVideo, VideoReconstruction, to_wire

VIDEO_KINDS = ("bouncing", "video-folder")  # data.kind of runs whose models take video


def data_kind(config: dict[str, Any] | None) -> str:
    return str(((config or {}).get("data") or {}).get("kind") or "shapes")


def is_video_config(config: dict[str, Any] | None) -> bool:
    """Whether a run's config describes a video model (its `data.kind`)."""
    return data_kind(config) in VIDEO_KINDS


def image_model_refusal(run_name: str, config: dict[str, Any] | None) -> str:
    return (f"{run_name} is an image model (trained on {data_kind(config)}): it cannot reconstruct a video. "
            "Choose a run trained on video (bouncing or a video folder).")  # fmt: skip


def video_model_refusal(run_name: str, config: dict[str, Any] | None) -> str:
    return (f"{run_name} is a video model (trained on {data_kind(config)}): it reconstructs video files "
            "(mp4, webm, mov, avi, mkv), not images. Choose an image run for images.")  # fmt: skip


def probe_video(path: str) -> None:
    """Opens the file with ffmpeg and decodes its first frame: the refusals are `decode_video`'s."""
    decode_video(path, max_frames=1, cancelled=lambda: True)


class VideoReconstructView(QWidget):
    """The video list, the synced players, the PSNR plot and the metrics. `model()` returns the chosen
    (ModelChoice, {"checkpoint_id", "step", …}) or (None, None); `params()` the decoder steps and seed."""

    jobFinished = Signal(object)  # a VideoJob that is done, failed or was cancelled
    shown = Signal(object)  # the VideoJob now in the players

    def __init__(self, ctx: Any, model: Any, params: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.model, self.params = model, params
        self.jobs: list[VideoJob] = []
        self.queue: JobQueue[VideoJob] = JobQueue()
        self.showing: VideoJob | None = None
        self.worker_calls = 0
        self.loader = ClipLoader(self)
        self._probe: BackgroundTask[None] | None = None
        self._cancel_file: Path | None = None
        self._build()

    def _build(self) -> None:
        root = QVBoxLayout(self)
        root.setContentsMargins(0, 0, 0, 0)
        split = QSplitter(Qt.Orientation.Horizontal)
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 0, 0)
        frames_row = QHBoxLayout()
        frames_row.addWidget(QLabel("Frames"))
        self.max_frames = QSpinBox()
        self.max_frames.setRange(0, 100_000)
        self.max_frames.setValue(64)
        self.max_frames.setSpecialValueText("all")
        self.max_frames.setToolTip("Reconstruct at most this many frames from the start of each video (0: all; "
                                   "long videos are encoded and decoded in chunks).")  # fmt: skip
        frames_row.addWidget(self.max_frames, 1)
        lv.addLayout(frames_row)
        self.list = QListWidget()
        self.list.setMinimumWidth(230)
        self.list.setToolTip("Dropped videos; select one to play it with its reconstruction.")
        self.list.currentRowChanged.connect(self._on_row)
        lv.addWidget(self.list, 1)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setToolTip("Progress of the video being reconstructed.")
        lv.addWidget(self.progress)
        self.cancel_button = QPushButton("Cancel video")
        self.cancel_button.setToolTip("Stop the video being reconstructed and drop the queued ones.")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        lv.addWidget(self.cancel_button)
        split.addWidget(left)

        right = QWidget()
        rv = QVBoxLayout(right)
        rv.setContentsMargins(0, 0, 0, 0)
        self.status = QLabel("Drop a video file (mp4, webm, mov, avi, mkv) to reconstruct it with a video model.")
        self.status.setObjectName("hint")
        self.status.setWordWrap(True)
        rv.addWidget(self.status)
        self.player = VideoPlayer(min_side=180, placeholder="No video yet")
        rv.addWidget(self.player, 3)
        bottom = QHBoxLayout()
        self.plot = FramePlot()
        self.plot.frameClicked.connect(self.player.clock.seek)
        self.player.clock.frameChanged.connect(self.plot.set_current)
        bottom.addWidget(self.plot, 1)
        self.metrics = metrics_panel()
        self.metrics.setToolTip(glossary.metrics_tip())
        bottom.addWidget(self.metrics)
        rv.addLayout(bottom, 2)
        split.addWidget(right)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 4)
        split.setSizes([240, 760])
        root.addWidget(split, 1)
        self._show(None)

    # ---- the queue ----------------------------------------------------------------------------------

    def add(self, paths: list[str]) -> list[VideoJob]:
        jobs = [VideoJob(str(p)) for p in paths]
        for job in jobs:
            self.jobs.append(job)
            item = QListWidgetItem(job.name)
            item.setToolTip(job.path)
            self.list.addItem(item)
            self._refresh_item(job)
        self.queue.add(jobs)
        self.pump()
        return jobs

    def busy(self) -> bool:
        return self.queue.busy()

    def pump(self) -> None:
        """Start the next queued video unless one is in flight (also called when the model changes)."""
        if self.queue.current is not None or not self.queue.waiting:
            self._sync_buttons()
            return
        choice, checkpoint = self.model()
        if choice is None or checkpoint is None:
            self.status.setText("Choose a model first (a stage-1 run trained on video): the videos wait.")
            return
        job = self.queue.start_next()
        if job is None:
            self._sync_buttons()
            return
        if not is_video_config(choice.config):
            self._finish(job, ERROR, error=image_model_refusal(choice.name, choice.config))
            return
        job.move(CHECKING)
        job.model = f"{choice.name} @ step {checkpoint.get('step')}"
        self._refresh_item(job)
        self._probe = run_in_background(
            lambda _task: probe_video(job.path),
            done=lambda _none: self._on_probed(job, None),
            failed=lambda error: self._on_probed(job, error),
        )
        self._sync_buttons()

    def _on_probed(self, job: VideoJob, error: str | None) -> None:
        self._probe = None
        if job is not self.queue.current:
            return
        if self.queue.cancel_requested:
            self._finish(job, CANCELLED)
            return
        if error is not None:
            self._finish(job, ERROR, error=error)
            return
        session = getattr(self.ctx, "session", None)
        choice, checkpoint = self.model()
        if session is None or choice is None or checkpoint is None:
            why = "the session worker is not running" if session is None else "no model chosen"
            self._finish(job, ERROR, error=why)
            return
        self._cancel_file = Path(self.ctx.home) / "cache" / "videos" / f".cancel-{id(job)}-{time.time_ns()}"
        params = dict(self.params())
        params["max_frames"] = self.max_frames.value() or None
        job.move(RUNNING)
        job.what = "waiting for the worker…"
        self._refresh_item(job)
        self.worker_calls += 1
        request = ReconstructVideo(path=job.path, run=choice.run_id, checkpoint=checkpoint.get("step"), params=params,
                                   cancel_file=str(self._cancel_file))  # fmt: skip
        session.call(
            request,
            lambda ok, result, job=job: self._on_answer(job, ok, result),
            on_event=lambda event, job=job: self._on_progress(job, event),
        )
        self.status.setText(f"Reconstructing {job.name} with {job.model}…")

    def _on_progress(self, job: VideoJob, event: Progress | Partial) -> None:
        if job is not self.queue.current or not isinstance(event, Progress):
            return
        job.report(event.done, event.total, event.what)
        self.progress.setRange(0, max(1, job.total))
        self.progress.setValue(min(job.done, job.total))
        self._refresh_item(job)

    def _on_answer(self, job: VideoJob, ok: bool, result: VideoReconstruction | str) -> None:
        if self._cancel_file is not None:
            self._cancel_file.unlink(missing_ok=True)
            self._cancel_file = None
        if job is not self.queue.current:
            return
        if not isinstance(result, VideoReconstruction):
            text = str(result)
            state, error = self.queue.failure(text, job.name)
            self._finish(job, state, error=error)
            return
        job.result = to_wire(result)
        job.move(LOADING)
        self._refresh_item(job)
        specs = [(result.original, "Original"), (result.reconstruction, "Reconstruction")]
        self.loader.load(specs, lambda clips, error: self._on_clips(job, clips, error), supersede=False)

    def _on_clips(self, job: VideoJob, clips: list[Clip] | None, error: str | None) -> None:
        if job is not self.queue.current:
            return
        if error is not None or not clips:
            self._finish(job, ERROR, error=f"the reconstruction was written but cannot be played: {error}")
            return
        job.clips = clips
        self._finish(job, DONE)

    def _finish(self, job: VideoJob, state: JobState, *, error: str | None = None) -> None:
        self.queue.finish(job, state, error=error)
        self._refresh_item(job)
        row = self.jobs.index(job)
        if state in (DONE, ERROR) and (self.showing is None or self.showing.state != DONE or state == DONE):
            self.list.setCurrentRow(row)
            self._show(job)
        elif self.showing is job:
            self._show(job)
        if state == ERROR:
            self.status.setText(job.error or "failed")
        elif state == DONE:
            self.status.setText(f"{job.name}: reconstructed with {job.model}.")
        if not self.queue.waiting and state != CANCELLED:
            n = counts(self.jobs)
            if len(self.jobs) > 1:
                self.status.setText(f"{n[DONE]} reconstructed, {n[ERROR]} could not be used"
                                    + (f", {n[CANCELLED]} cancelled" if n[CANCELLED] else "")
                                    + ": select one to see it (failures name their reason).")  # fmt: skip
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if state == DONE else 0)
        self.jobFinished.emit(job)
        self.pump()
        self._sync_buttons()

    def cancel(self) -> None:
        if not self.busy():
            return
        for job in self.queue.cancel():
            self._refresh_item(job)
        if self._cancel_file is not None:
            try:
                self._cancel_file.parent.mkdir(parents=True, exist_ok=True)
                self._cancel_file.touch()
            except OSError:
                pass
        self.status.setText("Cancelling the video…")

    def _sync_buttons(self) -> None:
        self.cancel_button.setEnabled(self.busy())

    def _refresh_item(self, job: VideoJob) -> None:
        item = self.list.item(self.jobs.index(job))
        if item is None:
            return
        item.setText(f"{job.name}\n{job.status_text()}")
        item.setToolTip(f"{job.path}\n{job.error}" if job.error else job.path)
        item.setForeground(QColor("#d32f2f") if job.state == ERROR else self.palette().text().color())

    # ---- showing ------------------------------------------------------------------------------------

    def _on_row(self, row: int) -> None:
        if 0 <= row < len(self.jobs):
            self._show(self.jobs[row])

    def _show(self, job: VideoJob | None) -> None:
        self.showing = job
        self.metrics.setText(self._metrics_html(job))
        if job is None or job.state != DONE or not job.clips or not job.result:
            self.player.set_clips([])
            self.plot.set_values([])
            return
        self.player.clock.pause()
        self.player.clock.seek(0)
        self.player.set_clips(job.clips)
        self.plot.set_values(job.result.get("psnr_per_frame") or [])
        self.shown.emit(job)

    def _metrics_html(self, job: VideoJob | None) -> str:
        if job is None:
            return "<p><i>Drop a video to see its reconstruction and metrics.</i></p>"
        head = f"<b>{_esc(job.name)}</b>"
        if job.state == ERROR:
            return head + f"<p style='color:#d32f2f'>{_esc(job.error)}</p>"
        if job.state != DONE or not job.result:
            return head + f"<p>{_esc(job.status_text())}</p>"
        r = job.result
        rows = [
            ("model", _esc(job.model)),
            ("frames", f"{r.get('frames')} at {float(r.get('fps') or 0):.3g} fps"),
            ("PSNR (mean)", _fmt(r.get("psnr"), "{:.2f} dB")),
            ("PSNR min … max", _range(r.get("psnr_per_frame"))),
            ("bits / pixel", _fmt(r.get("bits_per_pixel"), "{:.4f}")),
            ("bits / latent dim", _fmt(r.get("bits_per_dim"), "{:.3f}")),
        ]
        if job.clips:
            w, h = job.clips[0].size
            rows.insert(2, ("size", f"{w}×{h} px"))
        table = "".join(f"<tr><td>{k}</td><td align='right'>{v}</td></tr>" for k, v in rows)
        return head + f"<table cellspacing='0' cellpadding='2'>{table}</table>"


def _fmt(value: Any, pattern: str) -> str:
    return "–" if value is None else pattern.format(float(value))


def _range(values: Any) -> str:
    vals = [float(v) for v in values or [] if v is not None]
    return f"{min(vals):.1f} … {max(vals):.1f} dB" if vals else "–"


def _esc(text: Any) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
