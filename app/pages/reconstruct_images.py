"""The Reconstruct page's image work, apart from its widgets: folder walks, the per-image check, the cache
lookup and the `image.reconstruct` request to the session worker, one job at a time (`JobQueue`).

Background work goes through `run_in_background`; what happens to a job is told by signals, so the page only
draws: `changed` (a row to redraw), `started` (a job's check began), `partial` (its images are ready before
its bits), `finished` (done, failed or cancelled), `message` (a status line) and `idle`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QProcess, Signal

from app.models.jobs import CANCELLED, CHECKING, DONE, ERROR, RUNNING, ImageJob, JobQueue, JobState
from app.models.reconstructions import check_input, scan_folder
from app.pages.video_reconstruct import is_video_config, video_model_refusal
from app.workers.background import BackgroundTask, run_in_background
from ul_engine.core.media import IMAGE_EXTENSIONS
from ul_engine.core.protocol import ImageReconstruction, Partial, Progress, ReconstructImage
from ul_engine.core.reconstruction import ReconstructParams, cached_entry

MAX_SESSION_RESTARTS = 3

Spec = tuple[dict[str, Any] | None, dict[str, Any] | None, ReconstructParams]
"""Checkpoint A, checkpoint B (or None) and the decoder's settings, as the page's controls say now."""


class ImageReconstructions(QObject):
    changed = Signal(object)
    started = Signal(object)
    partial = Signal(object)
    finished = Signal(object)
    message = Signal(str)
    idle = Signal()

    def __init__(self, ctx: Any, spec: Callable[[], Spec], model: Callable[[], Any], parent: QObject | None = None):
        super().__init__(parent)
        self.ctx, self.spec, self.model = ctx, spec, model
        self.queue: JobQueue[ImageJob] = JobQueue()
        self.worker_calls = 0  # reconstruct requests sent to the session worker (cache hits send none)
        self.scans: dict[BackgroundTask[int], str] = {}  # folder walks in progress
        self._check: BackgroundTask[str] | None = None
        self._cancel_file: Path | None = None
        self._restarts = 0

    def busy(self) -> bool:
        return self.queue.busy() or bool(self.scans)

    def add(self, jobs: list[ImageJob]) -> None:
        self.queue.add(jobs)
        self.pump()

    def scan(self, folder: str, found: Callable[[list[ImageJob]], None]) -> None:
        """Walk `folder`; its image files become jobs in batches, handed to `found` (which adds them)."""
        count = [0]

        def on_batch(paths: list[str]) -> None:
            count[0] += len(paths)
            self.message.emit(f"Looking for images in {folder}: {count[0]:,} found…")
            found([ImageJob(p) for p in paths])

        task = run_in_background(
            lambda t: scan_folder(folder, t.report, lambda: t.cancelled),
            report=on_batch,
            done=lambda n: self._on_scanned(task, n),
            failed=lambda error: self._on_scanned(task, 0, error),
        )
        self.scans[task] = folder
        self.queue.cancel_requested = False
        self.message.emit(f"Looking for images in {folder}…")

    def _on_scanned(self, task: BackgroundTask[int], count: int, error: str | None = None) -> None:
        folder = self.scans.pop(task, "")
        if error is not None:
            self.message.emit(f"{folder}: {error}")
        elif count == 0:
            self.message.emit(f"{folder}: no image files found (looked for {', '.join(IMAGE_EXTENSIONS)}).")
        self._maybe_idle()

    def _maybe_idle(self) -> None:
        if not self.busy():
            self.idle.emit()

    def pump(self) -> None:
        """Start the next queued image unless one is in flight (also called when a model appears)."""
        if self.queue.current is not None:
            return
        a, _, _ = self.spec()
        if a is None and self.queue.waiting:
            self.message.emit("Choose a model first (no stage-1 run with a checkpoint yet): the images wait.")
            return
        job = self.queue.start_next()
        if job is None:
            self._maybe_idle()
            return
        job.move(CHECKING)
        self.started.emit(job)
        self._check = run_in_background(
            lambda _task: check_input(job.path),
            done=lambda sha: self._on_checked(job, sha, None),
            failed=lambda error: self._on_checked(job, None, error),
        )

    def _on_checked(self, job: ImageJob, sha: str | None, error: str | None) -> None:
        self._check = None
        if job is not self.queue.current:
            return
        if self.queue.cancel_requested:
            self._finish(job, CANCELLED)
            return
        if error is not None or sha is None:
            self._finish(job, ERROR, error=error or "no checksum")
            return
        job.sha256 = sha
        a, b, params = self.spec()
        if a is None:  # the model went away meanwhile
            self.queue.put_back(job)
            self.pump()
            return
        model = self.model()
        if model is not None and is_video_config(model.config):
            self._finish(job, ERROR, error=video_model_refusal(model.name, model.config))
            return
        job.key = (a["checkpoint_id"], b["checkpoint_id"] if b else None, params.hash())
        hit_a = cached_entry(self.ctx.store, sha, a["checkpoint_id"], params, job.path)
        hit_b = cached_entry(self.ctx.store, sha, b["checkpoint_id"], params, job.path) if b else None
        if hit_a is not None and (b is None or hit_b is not None):
            job.entry, job.compare = hit_a, hit_b
            if hit_b is not None:
                hit_b["label"] = "B"
            self._finish(job, DONE)
            return
        session = getattr(self.ctx, "session", None)
        if session is None:
            self.queue.put_back(job)
            self.changed.emit(job)
            self.message.emit("The session worker is not running, so nothing new can be reconstructed; cached "
                              "results still show.")  # fmt: skip
            return
        self._send(session, job, a, b, params)

    def _send(
        self, session: Any, job: ImageJob, a: dict[str, Any], b: dict[str, Any] | None, params: ReconstructParams
    ) -> None:
        self._cancel_file = Path(self.ctx.home) / "cache" / "reconstructions" / f".cancel-{id(job)}-{time.time_ns()}"
        job.move(RUNNING)
        job.what = "waiting for the worker…"
        self.changed.emit(job)
        self.worker_calls += 1
        request = ReconstructImage(
            path=job.path, checkpoint_id=a["checkpoint_id"], params=params.as_dict(),
            compare={"checkpoint_id": b["checkpoint_id"]} if b else None, cancel_file=str(self._cancel_file),
        )  # fmt: skip
        session.call(
            request,
            lambda ok, result, job=job: self._on_answer(job, ok, result),
            on_event=lambda event, job=job: self._on_progress(job, event),
        )

    def _on_progress(self, job: ImageJob, event: Progress | Partial) -> None:
        if job.state != RUNNING:
            return
        if isinstance(event, Partial):  # images ready, bits still coming: show them now
            if event.model == 0:
                job.entry = event.entry
            else:
                job.compare = event.entry
            self.changed.emit(job)
            self.partial.emit(job)
            return
        job.report(event.done, event.total, event.what)
        self.changed.emit(job)

    def _on_answer(self, job: ImageJob, ok: bool, result: ImageReconstruction | str) -> None:
        if self._cancel_file is not None:
            self._cancel_file.unlink(missing_ok=True)
            self._cancel_file = None
        if job is not self.queue.current:
            return
        if not isinstance(result, ImageReconstruction):
            text = str(result)
            job.entry = job.compare = None  # drop a partial result: nothing of this image was kept
            state, error = self.queue.failure(text, job.path)
            self._finish(job, state, error=error)
            if state == ERROR and "session worker ended" in text:
                self._restart_session()
            return
        entry, compare = result.entry, result.compare
        job.entry, job.compare = entry, compare
        if not entry or not entry.get("ok"):
            self._finish(job, ERROR, error=(entry or {}).get("error") or "no result")
            return
        if compare is not None and not compare.get("ok"):
            job.error = f"B: {compare.get('error')}"
        self._finish(job, DONE)

    def _restart_session(self) -> None:
        session = getattr(self.ctx, "session", None)
        if session is None or self._restarts >= MAX_SESSION_RESTARTS:
            self.message.emit("The session worker stopped; the remaining images wait (restart UL Studio).")
            return
        self._restarts += 1
        if session.proc.state() == QProcess.ProcessState.NotRunning:
            session.start()

    def _finish(self, job: ImageJob, state: JobState, *, error: str | None = None) -> None:
        self.queue.finish(job, state, error=error)
        self.changed.emit(job)
        self.finished.emit(job)
        self.pump()

    def cancel(self) -> list[ImageJob]:
        """Stop walking folders, drop the queue (marked cancelled), and stop the image in the worker;
        returns the dropped jobs."""
        self.stop_scans()
        dropped = self.queue.cancel()
        if self._cancel_file is not None:
            try:
                self._cancel_file.parent.mkdir(parents=True, exist_ok=True)
                self._cancel_file.touch()
            except OSError:
                pass
        return dropped

    def stop_scans(self) -> None:
        """Folder walks deliver nothing more (a cancel, or the window closing)."""
        for task in self.scans:
            task.cancel()
        self.scans.clear()

    def requeue(self, jobs: list[ImageJob]) -> None:
        """Every finished image again with the current settings."""
        for job in self.queue.requeue(jobs):
            job.forget_result()
