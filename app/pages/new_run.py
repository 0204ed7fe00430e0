"""The New run dialog: preset, dataset, the main knobs, and an Advanced section with every config field.

Validation is the engine's own (`ul_engine.core.config.field_errors`): a rejected field is marked and shows the
engine's message under it, and no run is created until the config is valid. The same dialog duplicates a
run (its config forked) and sets up stage 2 on a stage-1 run's checkpoint.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app import glossary
from app.context import AppContext
from app.models.run_form import (
    deep_merge,
    flatten,
    hidden_errors,
    preset_values,
    route_errors,
    stage2_editable,
    stage2_values,
    unflatten,
)
from app.pages.config_form import ConfigForm
from app.pages.run_knobs import RunKnobs
from app.widgets.field_row import FieldRow
from app.widgets.speed_estimate import SpeedEstimate
from ul_engine.core.config import RunConfig, field_errors, list_presets, load_preset, validate
from ul_engine.core.errors import ULError
from ul_engine.store import RunInfo


class NewRunDialog(QDialog):
    run_created = Signal(int)
    run_started = Signal(int)  # created and queued ("Create and start"): the Monitor follows it

    def __init__(
        self,
        ctx: AppContext,
        *,
        preset: str | None = None,
        base_run: RunInfo | None = None,
        parent_run: RunInfo | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.store = ctx.store
        self.created_run: RunInfo | None = None
        self.base_run = base_run
        self.stage = 2 if parent_run is not None or (base_run is not None and base_run.stage == 2) else 1
        self._syncing = False
        self._errors: dict[str, str] = {}
        self.setObjectName("newRunDialog")
        self.setMinimumSize(700, 640)
        if base_run is not None:
            title = f"Duplicate {base_run.name}"
        elif self.stage == 2:
            title = f"Train stage 2 from {parent_run.name}" if parent_run else "Train stage 2"
        else:
            title = "New run"
        self.setWindowTitle(title)

        outer = QVBoxLayout(self)
        self.banner = QLabel()
        self.banner.setObjectName("banner")
        self.banner.setWordWrap(True)
        self.banner.hide()
        outer.addWidget(self.banner)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        body = QWidget()
        scroll.setWidget(body)
        outer.addWidget(scroll, 1)
        self.body_layout = QVBoxLayout(body)
        self.form = ConfigForm()
        self.form.changed.connect(self._on_field_changed)
        self._build_run_group(preset, parent_run)
        self.knobs = RunKnobs(self.form, ctx.gpus)
        self.knobs.edited.connect(self._on_knobs_edited)
        self.body_layout.addWidget(self.knobs)
        self._build_advanced()
        self.body_layout.addStretch(1)

        buttons = QDialogButtonBox()
        self.create_start = QPushButton("Create and start")
        self.create_start.setDefault(True)
        self.create_start.setToolTip("Create the run and put it in the training queue (Ctrl+Enter).")
        self.create_start.setShortcut("Ctrl+Return")
        self.create_only = QPushButton("Create only")
        self.create_only.setToolTip("Create the run without starting it; start it later from the Runs page.")
        buttons.addButton(self.create_start, QDialogButtonBox.ButtonRole.AcceptRole)
        buttons.addButton(self.create_only, QDialogButtonBox.ButtonRole.ActionRole)
        cancel = buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        cancel.setToolTip("Close the form without creating a run (Esc).")
        buttons.rejected.connect(self.reject)
        self.create_start.clicked.connect(lambda: self.create_run(start=True))
        self.create_only.clicked.connect(lambda: self.create_run(start=False))
        outer.addWidget(buttons)

        self._validate_timer = QTimer(self)
        self._validate_timer.setSingleShot(True)
        self._validate_timer.setInterval(250)
        self._validate_timer.timeout.connect(self.validate_now)

        if base_run is not None:
            self._load_values(deep_merge(RunConfig().to_dict(), base_run.config))
        else:
            self._reload_base()
        self.speed.refresh()

    # ---- layout --------------------------------------------------------------------------------------

    def _group(self, title: str) -> QFormLayout:
        box = QGroupBox(title)
        form = QFormLayout(box)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.body_layout.addWidget(box)
        return form

    def _build_run_group(self, preset: str | None, parent_run: RunInfo | None) -> None:
        form = self._group("Run")
        self.name = QLineEdit()
        self.name.setObjectName("field:name")
        self.name.setPlaceholderText("automatic (preset-NNN)")
        self.name.setToolTip(glossary.tip("name"))
        self.name_row = FieldRow(self.name)
        form.addRow("Name", self.name_row)
        self.preset = QComboBox()
        self.preset.setObjectName("field:preset")
        self.preset.setToolTip(glossary.tip("preset"))
        for name in list_presets():
            description = str(load_preset(name).get("description", ""))
            self.preset.addItem(name, name)
            self.preset.setItemData(self.preset.count() - 1, description, Qt.ItemDataRole.ToolTipRole)
        wanted = preset or (self.base_run.preset if self.base_run else None) or "shapes-32"
        self.preset.setCurrentIndex(max(0, self.preset.findData(wanted)))
        form.addRow("Preset", self.preset)
        self.description = QLabel()
        self.description.setObjectName("hint")
        self.description.setWordWrap(True)
        form.addRow("", self.description)
        self.speed = SpeedEstimate(self.ctx.settings, self._speed_choice)
        form.addRow("Speed", self.speed)
        self.preset.currentIndexChanged.connect(self._on_preset)

        self.parent_combo = QComboBox()
        self.parent_combo.setToolTip(glossary.tip("parent_run"))
        self.checkpoint_combo = QComboBox()
        self.checkpoint_combo.setToolTip(glossary.tip("checkpoint"))
        if self.stage == 2:
            wanted_parent = parent_run.id if parent_run else (self.base_run.parent_run_id if self.base_run else None)
            for row in self.ctx.repo.ordered():
                if row.info.stage == 1 and row.has_checkpoint:
                    self.parent_combo.addItem(f"{row.info.name} (run {row.id})", row.id)
            if wanted_parent is not None and self.parent_combo.findData(wanted_parent) < 0:
                info = self.store.get_run(wanted_parent)
                self.parent_combo.addItem(f"{info.name} (run {info.id})", info.id)
            self.parent_combo.setCurrentIndex(max(0, self.parent_combo.findData(wanted_parent)))
            form.addRow("Stage-1 run", self.parent_combo)
            self.checkpoint_row = FieldRow(self.checkpoint_combo)
            form.addRow("Checkpoint", self.checkpoint_row)
            self.parent_combo.currentIndexChanged.connect(self._on_parent)
            self._fill_checkpoints()
        stage_text = (
            "Stage 2: a base model learns to generate the frozen stage-1 latents."
            if self.stage == 2
            else "Stage 1: encoder, latent prior and diffusion decoder train together."
        )
        stage_label = QLabel(stage_text)
        stage_label.setObjectName("hint")
        form.addRow("Stage", stage_label)

    def _build_advanced(self) -> None:
        self.advanced_toggle = QToolButton()
        self.advanced_toggle.setText("Advanced: every setting")
        self.advanced_toggle.setCheckable(True)
        self.advanced_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.advanced_toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.advanced_toggle.setToolTip(glossary.tip("advanced"))
        self.advanced_toggle.toggled.connect(self._toggle_advanced)
        self.body_layout.addWidget(self.advanced_toggle)
        self.form.hide()
        self.body_layout.addWidget(self.form)

    def _toggle_advanced(self, shown: bool) -> None:
        self.form.setVisible(shown)
        self.advanced_toggle.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)

    # ---- values --------------------------------------------------------------------------------------

    def _reload_base(self) -> None:
        if self.stage == 2:
            parent_id = self.parent_combo.currentData()
            if parent_id is None:
                self._load_values(preset_values(self.preset_name()))
                return
            parent = self.store.get_run(parent_id)
            self._load_values(stage2_values(parent.config, self.preset_name()))
        else:
            self._load_values(preset_values(self.preset_name()))

    def _load_values(self, raw: dict[str, Any]) -> None:
        flat = flatten(raw)
        self.form.set_values(flat)
        self._sync_knobs_from_form()
        self.description.setText(str(load_preset(self.preset_name()).get("description", "")))
        if self.stage == 2:
            self.form.set_editable(stage2_editable)
            self.knobs.lock_stage1()
        self.schedule_validation()

    def _sync_knobs_from_form(self) -> None:
        self._syncing = True
        try:
            self.knobs.sync_from(self.form.values())
        finally:
            self._syncing = False

    def set_data_folder(self, path: str) -> None:
        """Train on the images under `path` (the welcome's "Train on my folder…")."""
        self.form.set_values({"data.kind": "image-folder", "data.path": str(path)})
        self._sync_knobs_from_form()
        self.schedule_validation()

    def preset_name(self) -> str:
        return str(self.preset.currentData())

    def build_raw(self) -> dict[str, Any]:
        raw = unflatten(self.form.values())
        raw["preset"] = self.preset_name()
        raw["description"] = str(load_preset(self.preset_name()).get("description", ""))
        raw["stage"] = self.stage
        return raw

    def queue_device(self) -> str:
        choice = self.knobs.device.currentData()
        if choice == "auto":
            return self.ctx.default_device({"train": {"device": "auto"}})
        return str(choice)

    # ---- reactions -----------------------------------------------------------------------------------

    def _on_preset(self, _i: int) -> None:
        self._reload_base()
        self.speed.refresh()

    def _on_parent(self, _i: int) -> None:
        self._fill_checkpoints()
        self._reload_base()

    def _fill_checkpoints(self) -> None:
        self.checkpoint_combo.clear()
        parent_id = self.parent_combo.currentData()
        if parent_id is None:
            return
        checkpoints = [c for c in self.store.list_checkpoints(parent_id) if c.path.is_file()]
        checkpoints.sort(key=lambda c: c.step, reverse=True)
        for i, c in enumerate(checkpoints):
            self.checkpoint_combo.addItem(f"step {c.step:,}" + (" (latest)" if i == 0 else ""), c.id)
        if self.base_run is not None and self.base_run.parent_checkpoint_id is not None:
            i = self.checkpoint_combo.findData(self.base_run.parent_checkpoint_id)
            if i >= 0:
                self.checkpoint_combo.setCurrentIndex(i)

    def _on_field_changed(self, path: str) -> None:
        if not self._syncing:
            self._sync_knobs_from_form()
        self.schedule_validation()

    def _on_knobs_edited(self) -> None:
        self.schedule_validation()
        self.speed.refresh()

    # ---- validation ----------------------------------------------------------------------------------

    def schedule_validation(self) -> None:
        self._validate_timer.start()

    def validate_now(self) -> dict[str, str]:
        """Check the config with the engine; mark rejected fields; returns {path: message}."""
        self._validate_timer.stop()
        raw = self.build_raw()
        errors = field_errors(raw)
        if self.stage == 2 and self.checkpoint_combo.currentData() is None:
            errors["checkpoint"] = "the stage-1 run has no checkpoint on disk; train it first"
        self._errors = errors
        self._show_errors(errors)
        return errors

    def _show_errors(self, errors: dict[str, str]) -> None:
        routed = route_errors(errors, self.form.paths())
        self.form.set_errors(routed.by_field)
        self.knobs.show_errors(routed.by_field, self.stage)
        if self.stage == 2:
            self.checkpoint_row.set_error(errors.get("checkpoint"))
        if routed.general:
            self.banner.setText("The engine rejects this config: " + "; ".join(routed.general))
            self.banner.show()
        else:
            self.banner.hide()
        hidden = hidden_errors(routed.by_field, list(self.knobs.rows))
        if hidden and not self.form.isVisible() and not routed.general:
            self.banner.setText("Fix the marked fields in Advanced: " + ", ".join(hidden))
            self.banner.show()

    # ---- create --------------------------------------------------------------------------------------

    def create_run(self, *, start: bool = True) -> RunInfo | None:
        """Create the run (and queue it when `start`) if the engine accepts the config; else mark fields."""
        errors = self.validate_now()
        self.name_row.set_error(None)
        if errors:
            return None
        raw = self.build_raw()
        try:
            cfg = validate(raw)
            parent_kwargs: dict[str, Any] = {}
            if self.stage == 2:
                parent_kwargs = {
                    "parent_run_id": self.parent_combo.currentData(),
                    "parent_checkpoint_id": self.checkpoint_combo.currentData(),
                }
            name = self.name.text().strip() or None
            run = self.store.create_run(
                name=name,
                stage=self.stage,
                preset=self.preset_name(),
                config=cfg.to_dict(),
                total_steps=cfg.train.steps or None,
                **parent_kwargs,
            )
        except ULError as exc:
            message = str(exc)
            if "name" in message:
                self.name_row.set_error(message)
            else:
                self.banner.setText(message)
                self.banner.show()
            return None
        self.created_run = run
        started = False
        if start:
            try:
                self.ctx.controller.start(run.id, self.queue_device())
                started = True
            except ULError as exc:
                self.ctx.message.emit(str(exc))
        self.ctx.repo.refresh()
        self.run_created.emit(run.id)
        if started:
            self.run_started.emit(run.id)
        self.accept()
        return run

    # ---- speed estimate ------------------------------------------------------------------------------

    def _speed_choice(self) -> tuple[str, str, int | None]:
        steps = self.form.values().get("train.steps") if self.knobs.by_steps.isChecked() else None
        return self.preset_name(), self.queue_device(), steps if isinstance(steps, int) else None

    def done(self, result: int) -> None:
        self.speed.cancel()
        self.knobs.dataset.cancel()
        super().done(result)
