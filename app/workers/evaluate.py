"""Evaluate checkpoints from the app: `ul eval --run R --checkpoint STEP --json` in a worker process.

`ul eval` records its result on the checkpoint (ul_engine.core.rate_distortion), so the Rate–distortion view
only has to re-read the store when a job ends. Jobs run one at a time (evaluation is CPU-bound and the
machine is shared with training); a failed job reports the CLI's own error line.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, QProcess, Signal

from app.workers import procs
from ul_engine.core.errors import ULError
from ul_engine.store import Store


@dataclass(frozen=True)
class EvalJob:
    run_id: int
    step: int
    checkpoint_id: int
    n: int = 64
    decoder_steps: int | None = None  # None: the run's own sampling.decoder_steps

    def arguments(self, home: Path) -> list[str]:
        args = ["-m", "ul_engine.cli", "--home", str(home), "eval", "--run", str(self.run_id)]
        args += ["--checkpoint", str(self.step), "--n", str(self.n), "--json"]
        if self.decoder_steps:
            args += ["--decoder-steps", str(self.decoder_steps)]
        return args


class Evaluator(QObject):
    """A queue of evaluation jobs, each a `ul eval` process; `finished(job, ok, message)` per job."""

    started = Signal(object)  # EvalJob
    finished = Signal(object, bool, str)  # EvalJob, ok, the result line or the error
    idle = Signal()

    def __init__(self, home: Path, store: Store, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.home = Path(home)
        self.store = store
        self.queue: deque[EvalJob] = deque()
        self.current: EvalJob | None = None
        self.proc: QProcess | None = None
        self.batch_total = 0  # jobs submitted since the evaluator was last idle ("evaluating 3 of 9")
        self.batch_started = 0

    def pending(self) -> list[EvalJob]:
        return ([self.current] if self.current else []) + list(self.queue)

    def submit(self, job: EvalJob) -> bool:
        """Queue a job unless the same checkpoint is already waiting or running; returns whether it was queued."""
        return self.submit_all([job]) == 1

    def submit_all(self, jobs: list[EvalJob]) -> int:
        """Queue several jobs at once (so the first already counts as "1 of n"); returns how many were new."""
        if not self.pending():
            self.batch_total = self.batch_started = 0
        added = 0
        for job in jobs:
            if any(j.checkpoint_id == job.checkpoint_id for j in self.pending()):
                continue
            self.queue.append(job)
            added += 1
        self.batch_total += added
        self._next()
        return added

    def is_busy(self) -> bool:
        return self.current is not None

    def position(self) -> tuple[int, int]:
        """(k, n): the running job is the k-th of the n submitted since the evaluator was last idle."""
        return self.batch_started, self.batch_total

    def cancel(self) -> None:
        """Drop the waiting jobs and kill the running one (nothing is recorded for it)."""
        self.queue.clear()
        if self.proc is not None and self.proc.state() != QProcess.ProcessState.NotRunning:
            self.proc.kill()
            self.proc.waitForFinished(3000)

    def _next(self) -> None:
        if self.current is not None or not self.queue:
            return
        job = self.current = self.queue.popleft()
        self.batch_started += 1
        proc = self.proc = QProcess(self)
        problem = self._check(job)
        if problem:
            self._done(proc, job, False, problem)
            return
        proc.setProcessEnvironment(procs.worker_environment())
        program, args = procs.python_command(*job.arguments(self.home))
        proc.finished.connect(lambda code, _status, p=proc, j=job: self._on_finished(p, j, code))
        proc.errorOccurred.connect(lambda error, p=proc, j=job: self._on_error(p, j, error))
        proc.start(program, args)
        self.started.emit(job)

    def _check(self, job: EvalJob) -> str | None:
        """Why the job cannot run, found without starting a process (the file went away since it was listed)."""
        try:
            ck = self.store.get_checkpoint(job.checkpoint_id)
        except ULError as exc:
            return str(exc)
        if not ck.path.is_file():
            return f"the checkpoint file {ck.path.name} is gone (training rotates older checkpoints away)"
        return None

    def _on_error(self, proc: QProcess, job: EvalJob, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self._done(proc, job, False, f"the evaluation could not start: {proc.errorString()}")

    def _on_finished(self, proc: QProcess, job: EvalJob, code: int) -> None:
        out = bytes(proc.readAllStandardOutput().data()).decode("utf-8", errors="replace").strip().splitlines()
        err = bytes(proc.readAllStandardError().data()).decode("utf-8", errors="replace").strip().splitlines()
        result = _last_json(out)
        if code == 0 and result is not None and "error" not in result:
            message = f"PSNR {result['psnr']:.2f} dB at {result['bits_per_pixel']:.4g} bits/pixel"
            self._done(proc, job, True, message)
        elif result is not None and result.get("error"):
            self._done(proc, job, False, str(result["error"]))
        else:
            self._done(proc, job, False, err[-1] if err else f"ul eval ended with code {code}")

    def _done(self, proc: QProcess, job: EvalJob, ok: bool, message: str) -> None:
        if self.current is not job:
            return
        self.current = None
        if self.proc is proc:
            self.proc = None  # deleted below: a later cancel() must not touch it
        proc.deleteLater()
        self.finished.emit(job, ok, message)
        if self.queue:
            self._next()
        else:
            self.idle.emit()


def _last_json(lines: list[str]) -> dict | None:
    for line in reversed(lines):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None
