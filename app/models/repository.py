"""The runs and the queue as the widgets see them: a snapshot of the store, refreshed on a timer.

One `list_runs` and one `list_jobs` per poll; metric summaries are re-read only for runs whose row changed,
so a poll stays around a millisecond however many runs are finished.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from ul_engine.core.demo import SHIPPED, bundle_checkpoint
from ul_engine.store import ACTIVE_RUN_STATUSES, JobInfo, RunInfo, Store

BITS_KEYS = {1: "rate/bits_per_pixel", 2: "rate/base_bits_per_pixel"}


@dataclass
class RunRow:
    """One run with the numbers the table shows."""

    info: RunInfo
    summary: dict[str, dict[str, Any]] = field(default_factory=dict)
    has_checkpoint: bool = False
    card: dict[str, float] = field(default_factory=dict)  # a shipped model's measured numbers (its bundle row)

    @property
    def id(self) -> int:
        return self.info.id

    def last(self, key: str) -> float | None:
        item = self.summary.get(key)
        if not item:
            return None
        value = item.get("last")
        return None if value is None or value != value else float(value)

    @property
    def loss(self) -> float | None:
        return self.last("loss/total")

    @property
    def bits_per_pixel(self) -> float | None:
        evaluated = self.last("eval/bits_per_pixel")
        if evaluated is not None:
            return evaluated
        logged = self.last(BITS_KEYS.get(self.info.stage, "rate/bits_per_pixel"))
        return logged if logged is not None else self.card.get("bits_per_pixel")

    @property
    def psnr(self) -> float | None:
        evaluated = self.last("eval/psnr")
        return evaluated if evaluated is not None else self.card.get("psnr")

    @property
    def failure(self) -> str | None:
        """The error and exit code of the run's last session, while it is not queued or training again: a
        crashed run that was re-queued starts clean."""
        info = self.info
        if info.status in (*ACTIVE_RUN_STATUSES, "queued"):
            return None
        lines = [info.error or ""]
        if info.exit_code not in (None, 0):
            lines.append(f"exit code {info.exit_code}")
        return "\n".join(line for line in lines if line) or None

    @property
    def progress(self) -> float | None:
        return self.info.progress

    def duration_s(self, now: datetime | None = None) -> float | None:
        start = self.info.started_at
        if start is None:
            return None
        end = self.info.finished_at if not self.info.is_active else None
        end = end or (now or datetime.now(UTC))
        return max(0.0, (end - start).total_seconds())


def _card(store: Store, info: RunInfo) -> dict[str, float]:
    """A shipped model's numbers recorded on its bundle checkpoint (from its model.json): the demo's
    bits/pixel and PSNR are known without evaluating it here."""
    if info.status != SHIPPED:
        return {}
    row = bundle_checkpoint(store, info)
    metrics = dict(row.metrics or {}) if row is not None else {}
    return {k: float(v) for k, v in metrics.items() if k in ("bits_per_pixel", "psnr") and v == v}


class RunsRepository(QObject):
    """Polls the store; emits `changed` when a run or job changed (and `run_changed(id)` per run)."""

    changed = Signal()
    run_changed = Signal(int)
    jobs_changed = Signal()
    error = Signal(str)

    def __init__(self, store: Store, interval_ms: int = 1000, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.rows: dict[int, RunRow] = {}
        self.jobs: list[JobInfo] = []
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.refresh)
        self._last_error: str | None = None

    def start(self) -> None:
        self.refresh()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def run(self, run_id: int) -> RunRow | None:
        return self.rows.get(int(run_id))

    def ordered(self) -> list[RunRow]:
        return [self.rows[k] for k in sorted(self.rows)]

    def active_ids(self) -> list[int]:
        return [r.id for r in self.rows.values() if r.info.status in ACTIVE_RUN_STATUSES]

    def reread(self, run_id: int) -> None:
        """Read one run's metric summary again now: metrics written without touching its row (`ul eval`)
        are otherwise only seen when the row next changes."""
        self.rows.pop(int(run_id), None)
        self.refresh()

    def refresh(self) -> None:
        try:
            runs = self.store.list_runs()
            jobs = self.store.list_jobs(("queued", "running"))
        except Exception as exc:  # a locked or vanished database must not take the window down
            message = f"cannot read the database: {exc}"
            if message != self._last_error:
                self._last_error = message
                self.error.emit(message)
            return
        self._last_error = None
        changed_ids: list[int] = []
        seen = set()
        for info in runs:
            seen.add(info.id)
            row = self.rows.get(info.id)
            if row is not None and row.info == info:
                continue
            try:
                summary = self.store.summary(info.id)
                has_ck = bool(self.store.latest_checkpoint(info.id)) if info.stage == 1 else False
                card = _card(self.store, info)
            except Exception:
                summary, has_ck = (row.summary, row.has_checkpoint) if row else ({}, False)
                card = row.card if row else {}
            self.rows[info.id] = RunRow(info, summary, has_ck, card)
            changed_ids.append(info.id)
        removed = [rid for rid in self.rows if rid not in seen]
        for rid in removed:
            del self.rows[rid]
        jobs_changed = jobs != self.jobs
        self.jobs = jobs
        for rid in changed_ids + removed:
            self.run_changed.emit(rid)
        if jobs_changed:
            self.jobs_changed.emit()
        if changed_ids or removed or jobs_changed:
            self.changed.emit()
        # poll faster while something trains, so progress and status follow within half a second
        self._timer.setInterval(500 if self.active_ids() else 1000)
