"""Pick a model: a run, then one of its checkpoints on disk (the latest first)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QWidget

from ul_engine.core.demo import DEMO_NAME as DEMO_RUN_NAME
from ul_engine.core.demo import SHIPPED
from ul_engine.store import Store


@dataclass(frozen=True)
class ModelChoice:
    """A run with its checkpoints on disk as (checkpoint id, step), newest first."""

    run_id: int
    name: str
    status: str
    config: dict[str, Any] = field(default_factory=dict, compare=False)
    checkpoints: tuple[tuple[int, int], ...] = ()

    @property
    def decoder_steps(self) -> int | None:
        value = (self.config.get("sampling") or {}).get("decoder_steps")
        return int(value) if value is not None else None

    @property
    def sampler(self) -> str | None:
        return (self.config.get("sampling") or {}).get("sampler")


def stage1_models(store: Store) -> list[ModelChoice]:
    """Every stage-1 run that has a checkpoint on disk, and the shipped demo (whose bundle holds its stage-1
    model), the newest run first (torch-free: store only)."""
    out = []
    for run in sorted(store.list_runs(), key=lambda r: r.id, reverse=True):
        if run.stage != 1 and run.status != SHIPPED:
            continue
        cks = [c for c in store.list_checkpoints(run.id) if c.path.is_file()]
        if not cks:
            continue
        cks.sort(key=lambda c: (c.step, c.id), reverse=True)
        seen: set[int] = set()
        pairs = []
        for c in cks:
            if c.step not in seen:
                seen.add(c.step)
                pairs.append((c.id, c.step))
        out.append(ModelChoice(run.id, run.name, run.status, dict(run.config or {}), tuple(pairs)))
    return out


def preferred(models: list[ModelChoice]) -> ModelChoice | None:
    """The user's newest run; the demo model only when the user has no runs of their own."""
    own = [m for m in models if m.status != SHIPPED and m.name != DEMO_RUN_NAME]
    if own:
        return own[0]
    return models[0] if models else None


class CheckpointPicker(QWidget):
    changed = Signal()

    def __init__(self, *, allow_none: bool = False, none_text: str = "none", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.allow_none = allow_none
        self.none_text = none_text
        self.models: list[ModelChoice] = []
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.run_box = QComboBox()
        self.run_box.setMinimumContentsLength(14)
        self.run_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.step_box = QComboBox()
        self.step_box.setMinimumContentsLength(9)
        self.step_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        layout.addWidget(self.run_box, 3)
        layout.addWidget(self.step_box, 2)
        self.run_box.currentIndexChanged.connect(self._on_run)
        self.step_box.currentIndexChanged.connect(lambda _=0: self.changed.emit())

    def set_models(self, models: list[ModelChoice], select: tuple[int, int | None] | None = None) -> None:
        """Replace the list, keeping the current choice (or `select` = (run id, checkpoint id)) if present."""
        if select is None and list(models) == self.models:
            return
        keep = select or self.current_ids()
        self.models = list(models)
        self.run_box.blockSignals(True)
        self.run_box.clear()
        if self.allow_none:
            self.run_box.addItem(self.none_text, None)
        for m in self.models:
            self.run_box.addItem(f"{m.name}  ({m.status})", m.run_id)
        self.run_box.blockSignals(False)
        run_id, ck_id = keep if keep else (None, None)
        index = self.run_box.findData(run_id) if run_id is not None else -1
        if index < 0:
            index = 0
        self.run_box.setCurrentIndex(index)
        self._fill_steps(ck_id)
        self.changed.emit()

    def select(self, run_id: int | None, checkpoint_id: int | None = None) -> None:
        index = self.run_box.findData(run_id)
        if index >= 0:
            self.run_box.blockSignals(True)
            self.run_box.setCurrentIndex(index)
            self.run_box.blockSignals(False)
            self._fill_steps(checkpoint_id)
            self.changed.emit()

    def _on_run(self, _index: int) -> None:
        self._fill_steps(None)
        self.changed.emit()

    def _fill_steps(self, checkpoint_id: int | None) -> None:
        self.step_box.blockSignals(True)
        self.step_box.clear()
        model = self.current_model()
        if model is not None:
            for i, (ck_id, step) in enumerate(model.checkpoints):
                self.step_box.addItem(f"step {step:,}" + (" (latest)" if i == 0 else ""), ck_id)
            index = self.step_box.findData(checkpoint_id) if checkpoint_id is not None else 0
            self.step_box.setCurrentIndex(max(0, index))
        self.step_box.setEnabled(model is not None)
        self.step_box.blockSignals(False)

    def current_model(self) -> ModelChoice | None:
        run_id = self.run_box.currentData()
        return next((m for m in self.models if m.run_id == run_id), None)

    def current_ids(self) -> tuple[int, int | None] | None:
        model = self.current_model()
        if model is None:
            return None
        return model.run_id, self.step_box.currentData()

    def current(self) -> dict[str, Any] | None:
        """{"run_id", "run_name", "checkpoint_id", "step"} or None."""
        model = self.current_model()
        ck_id = self.step_box.currentData()
        if model is None or ck_id is None:
            return None
        step = dict(model.checkpoints).get(ck_id)
        return {"run_id": model.run_id, "run_name": model.name, "checkpoint_id": int(ck_id), "step": step}
