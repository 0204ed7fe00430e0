"""A run chooser for the Latents and Generate pages: the runs that have a checkpoint on disk."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QWidget

from ul_engine.core.demo import SHIPPED
from ul_engine.store import RunInfo, Store


def usable_runs(store: Store, stage: int | None = None) -> list[RunInfo]:
    """RunInfo of every run (of `stage`, if given) with at least one checkpoint file on disk."""
    out: list[RunInfo] = []
    try:
        runs = store.list_runs()
    except Exception:  # a locked database: keep what the combo has
        return []
    for info in runs:
        if stage is not None and info.stage != stage:
            continue
        try:
            if any(c.path.is_file() for c in store.list_checkpoints(info.id)):
                out.append(info)
        except Exception:
            continue
    return out


class RunCombo(QComboBox):
    """Runs by name; keeps the selection across refreshes; `run_selected(id or 0)` when it changes."""

    run_selected = Signal(int)

    def __init__(self, store: Store, stage: int | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.stage = stage
        self.infos: dict[int, RunInfo] = {}
        self._signature: tuple[tuple[int, str, int], ...] = ()
        self.setMinimumContentsLength(18)
        self.currentIndexChanged.connect(lambda _i: self.run_selected.emit(self.run_id() or 0))

    def refresh(self) -> None:
        runs = usable_runs(self.store, self.stage)
        signature = tuple((r.id, r.name, r.stage) for r in runs)
        self.infos = {r.id: r for r in runs}
        if signature == self._signature:
            return
        self._signature = signature
        current = self.run_id()
        self.blockSignals(True)
        self.clear()
        for r in runs:
            self.addItem(f"{r.name}  (stage {r.stage})" if self.stage is None else r.name, r.id)
        if not runs:
            self.addItem("no trained run yet", 0)
        index = self.findData(current) if current else -1
        if index < 0 and runs:  # the user's newest run; the shipped demo only while they have none
            own = [r for r in runs if r.status != SHIPPED]
            index = self.findData((own or runs)[-1].id)
        self.setCurrentIndex(max(0, index))
        self.blockSignals(False)
        if self.run_id() != current:
            self.run_selected.emit(self.run_id() or 0)

    def run_id(self) -> int | None:
        data = self.currentData()
        return int(data) if data else None

    def info(self) -> Any:  # a RunInfo, or None when no run is chosen
        rid = self.run_id()
        return self.infos.get(rid) if rid else None

    def select(self, run_id: int) -> bool:
        self.refresh()
        index = self.findData(int(run_id))
        if index < 0:
            return False
        self.setCurrentIndex(index)
        return True
