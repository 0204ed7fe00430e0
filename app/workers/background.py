"""One way to run work off the GUI thread: `run_in_background(work, done=..., failed=..., progress=...)`.

`work(task)` runs on a thread pool; it may call `task.report(value)` and poll `task.cancelled`. Its result, its
error (a `ULError`'s line, or an `OSError` as "cannot read") and its reports reach the callbacks on the GUI
thread, because they travel as queued signals to a relay that lives there. A cancelled task delivers nothing more,
so a page that cancels stale work (a newer folder scan, a newer clip load) never sees an old answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot

from ul_engine.core.errors import ULError

T = TypeVar("T")

_LIVE: set[BackgroundTask[Any]] = set()
"""Tasks not yet finished: Qt does not own them (autoDelete off), so Python must keep them alive."""


class _Relay(QObject):
    """Created on the GUI thread, so signals emitted from the pool arrive here queued, on the GUI thread."""

    report_signal = Signal(object)
    done_signal = Signal(object)
    failed_signal = Signal(str)

    def __init__(self, task: BackgroundTask[Any]) -> None:
        super().__init__()
        self.task = task
        self.report_signal.connect(self._on_report)
        self.done_signal.connect(self._on_done)
        self.failed_signal.connect(self._on_failed)

    @Slot(object)
    def _on_report(self, value: Any) -> None:
        if not self.task.cancelled and self.task.on_report is not None:
            self.task.on_report(value)

    @Slot(object)
    def _on_done(self, result: Any) -> None:
        _LIVE.discard(self.task)
        if not self.task.cancelled and self.task.on_done is not None:
            self.task.on_done(result)

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        _LIVE.discard(self.task)
        if not self.task.cancelled and self.task.on_failed is not None:
            self.task.on_failed(message)


class BackgroundTask(QRunnable, Generic[T]):
    """A unit of background work; see the module docstring."""

    def __init__(
        self,
        work: Callable[[BackgroundTask[T]], T],
        *,
        done: Callable[[T], None] | None = None,
        failed: Callable[[str], None] | None = None,
        report: Callable[[Any], None] | None = None,
    ) -> None:
        super().__init__()
        self.setAutoDelete(False)
        self.work, self.on_done, self.on_failed, self.on_report = work, done, failed, report
        self.cancelled = False
        self.relay = _Relay(self)

    def cancel(self) -> None:
        """Deliver nothing more; `work` sees `task.cancelled` and may stop early."""
        self.cancelled = True

    def report(self, value: Any) -> None:
        """Called from `work`: an interim value (a batch of found files, a progress fraction)."""
        if not self.cancelled:
            self.relay.report_signal.emit(value)

    def run(self) -> None:
        try:
            result = self.work(self)
        except ULError as exc:
            self.relay.failed_signal.emit(str(exc))
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            self.relay.failed_signal.emit(f"{where}cannot read ({exc.strerror or exc})")
        except Exception as exc:  # a bug in work must reach the page as a message, not kill the thread
            self.relay.failed_signal.emit(f"{type(exc).__name__}: {exc}")
        else:
            self.relay.done_signal.emit(result)


def run_in_background(
    work: Callable[[BackgroundTask[T]], T],
    *,
    done: Callable[[T], None] | None = None,
    failed: Callable[[str], None] | None = None,
    report: Callable[[Any], None] | None = None,
    pool: QThreadPool | None = None,
) -> BackgroundTask[T]:
    """Start `work` on `pool` (the global pool by default) and return its task (for `cancel()`)."""
    task: BackgroundTask[T] = BackgroundTask(work, done=done, failed=failed, report=report)
    _LIVE.add(task)
    (pool or QThreadPool.globalInstance()).start(task)
    return task


def pending_tasks() -> int:
    """Tasks started and not yet finished (tests wait for zero)."""
    return len(_LIVE)
