"""One job model for the Reconstruct page's images and videos, without Qt: a dropped file's state, progress,
result and error, and the queue that feeds the session worker one job at a time.

A job moves queued → checking → running → (loading →) done, or to error / cancelled from any live state;
a finished job can be queued again ("Apply to all"). `Job.move` refuses any other step, so a page cannot
silently show a finished job as running or resurrect a cancelled one. Both views keep their jobs in a
`JobQueue`, which decides what runs next and what a cancel drops.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np

from app.models.clips import Clip


class JobState(StrEnum):
    QUEUED = "queued"
    CHECKING = "checking"  # the file is probed (and hashed) off the GUI thread
    RUNNING = "running"  # the session worker has the request
    LOADING = "loading"  # the result's files are read back (a video's frames)
    DONE = "done"
    ERROR = "error"  # failed: `error` says why
    CANCELLED = "cancelled"


QUEUED, CHECKING, RUNNING, LOADING, DONE, ERROR, CANCELLED = JobState
FINISHED = frozenset({DONE, ERROR, CANCELLED})

ALLOWED: dict[JobState, frozenset[JobState]] = {
    QUEUED: frozenset({CHECKING, ERROR, CANCELLED}),  # error: refused before any check (wrong kind of model)
    CHECKING: frozenset({RUNNING, DONE, ERROR, CANCELLED, QUEUED}),  # done: a cache hit; queued: nothing to run on
    RUNNING: frozenset({LOADING, DONE, ERROR, CANCELLED}),
    LOADING: frozenset({DONE, ERROR, CANCELLED}),
    DONE: frozenset({QUEUED}),
    ERROR: frozenset({QUEUED}),
    CANCELLED: frozenset({QUEUED}),
}
"""The one table of allowed state changes; anything else is a bug in the page that asked for it."""


class IllegalTransition(ValueError):
    """A page asked for a state change the job model does not allow."""


@dataclass(eq=False)
class Job:
    """One dropped file and what became of it. Compared by identity: the same file may be dropped twice."""

    path: str
    state: JobState = QUEUED
    done: int = 0
    total: int = 0
    what: str = ""
    error: str | None = None

    @property
    def name(self) -> str:
        return Path(self.path).name or self.path

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    def move(self, state: JobState, *, error: str | None = None) -> None:
        """Change state through the table; entering checking or queued forgets the last attempt's progress
        and error, finishing done clears the progress."""
        if state not in ALLOWED[self.state]:
            raise IllegalTransition(f"{self.name}: {self.state} → {state} is not a job transition")
        self.state = state
        if state in (QUEUED, CHECKING):
            self.done = self.total = 0
            self.what, self.error = "", None
        elif state == DONE:
            self.done = self.total = 0
        if error is not None:
            self.error = error

    def report(self, done: int, total: int, what: str = "") -> None:
        """Progress of a running job (the worker's progress lines)."""
        self.done, self.total, self.what = int(done), int(total), what

    def progress(self) -> float:
        return self.done / self.total if self.total else 0.0


@dataclass(eq=False)
class ImageJob(Job):
    """An image: the engine's entry for model A (and B when comparing), and what the checks found."""

    entry: dict[str, Any] | None = None
    compare: dict[str, Any] | None = None
    sha256: str | None = None
    key: tuple[Any, ...] | None = None
    preview: np.ndarray | None = None  # the input, decoded for showing at once while the worker runs
    extra: dict[str, Any] = field(default_factory=dict)

    def forget_result(self) -> None:
        self.entry = self.compare = None
        self.error = None

    @property
    def cached(self) -> bool:
        return bool(self.entry and self.entry.get("cached")) and (
            self.compare is None or bool(self.compare.get("cached"))
        )

    @property
    def notices(self) -> list[str]:
        out = list((self.entry or {}).get("notices") or [])
        for n in (self.compare or {}).get("notices") or []:
            if n not in out:
                out.append(n)
        return out

    def message(self) -> str:
        """The error in one short line (the file's path is in the File column already)."""
        text = self.error or ""
        prefix = f"{self.path}: "
        return text[len(prefix) :] if text.startswith(prefix) else text

    def status_text(self) -> str:
        if self.state == RUNNING:
            return self.what or "working…"
        if self.state == CHECKING:
            return "reading…"
        if self.state == ERROR:
            return self.message()
        if self.state == DONE:
            text = "cached" if self.cached else "done"
            n = len(self.notices)
            return f"{text} · {n} notice{'s' if n != 1 else ''}" if n else text
        return str(self.state)


@dataclass(eq=False)
class VideoJob(Job):
    """A video: the worker's result (paths, PSNR per frame, bits) and the decoded clips that play it."""

    result: dict[str, Any] | None = None
    clips: list[Clip] | None = None
    model: str = ""

    def status_text(self) -> str:
        if self.state == RUNNING:
            part = f" {self.done}/{self.total}" if self.total else ""
            return f"reconstructing{part} {self.what}".strip()
        if self.state == DONE and self.result:
            return f"{self.result.get('psnr', float('nan')):.2f} dB · {self.result.get('frames')} frames"
        return {QUEUED: "queued", CHECKING: "checking…", LOADING: "loading frames…", CANCELLED: "cancelled"}.get(
            self.state, self.error or str(self.state)
        )


J = TypeVar("J", bound=Job)


class JobQueue(Generic[J]):
    """The jobs waiting and the one in flight (at most one: the session worker takes one file at a time).
    The view keeps the list of all its jobs (the table's rows, the video list)."""

    def __init__(self) -> None:
        self.waiting: collections.deque[J] = collections.deque()
        self.current: J | None = None
        self.cancel_requested = False

    def add(self, jobs: Iterable[J]) -> list[J]:
        added = list(jobs)
        self.waiting.extend(added)
        if added:
            self.cancel_requested = False
        return added

    def busy(self) -> bool:
        return self.current is not None or bool(self.waiting)

    def start_next(self) -> J | None:
        """The next queued job becomes the current one (skipping any no longer queued), or None."""
        if self.current is not None:
            return None
        while self.waiting:
            job = self.waiting.popleft()
            if job.state == QUEUED:
                self.current = job
                return job
        return None

    def put_back(self, job: J) -> None:
        """The current job waits again at the front (no model, no worker yet)."""
        job.move(QUEUED)
        self.waiting.appendleft(job)
        if self.current is job:
            self.current = None

    def finish(self, job: J, state: JobState, *, error: str | None = None) -> None:
        job.move(state, error=error)
        if self.current is job:
            self.current = None

    def failure(self, text: str, label: str) -> tuple[JobState, str | None]:
        """How the job in flight ends when the worker answered with an error: cancelled when the user asked for it
        and the worker says so, otherwise an error that names the file (`label`) once."""
        if self.cancel_requested and "cancel" in text:
            return CANCELLED, None
        return ERROR, text if text.startswith(label) else f"{label}: {text}"

    def cancel(self) -> list[J]:
        """Drop every waiting job (marked cancelled) and remember the request, so the job in flight ends
        cancelled rather than failed; returns the dropped jobs."""
        self.cancel_requested = True
        dropped = [job for job in self.waiting if job.state == QUEUED]
        for job in dropped:
            job.move(CANCELLED)
        self.waiting.clear()
        return dropped

    def requeue(self, jobs: Iterable[J]) -> list[J]:
        """Queue these jobs' finished ones again (the settings changed); the one in flight keeps running."""
        again = [job for job in jobs if job is not self.current and job.finished]
        for job in again:
            job.move(QUEUED)
        self.waiting.extend(again)
        self.cancel_requested = False
        return again


def counts(jobs: Iterable[Job]) -> collections.Counter[JobState]:
    return collections.Counter(job.state for job in jobs)


def finished_count(jobs: Iterable[Job]) -> int:
    return sum(1 for job in jobs if job.finished)
