"""The New run dialog: preset, dataset, the main knobs, and an Advanced section with every config field.

Validation is the engine's own (`ul_engine.core.config.field_errors`): a rejected field is marked and shows the
engine's message under it, and no run is created until the config is valid. The same dialog duplicates a
run (its config forked) and sets up stage 2 on a stage-1 run's checkpoint.
"""

from __future__ import annotations

import math
import re
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QScrollArea,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app import format as fmt
from app import glossary
from app.pages.config_form import ConfigForm, deep_merge, flatten, unflatten
from app.pages.dataset import DatasetChooser
from ul_engine.core.config import RunConfig, field_errors, list_presets, load_preset, validate
from ul_engine.core.errors import ULError
from ul_engine.store import RunInfo

DOWNSAMPLING = (2, 4, 8, 16, 32)
STAGE1_ONLY = ("data.", "model.encoder.", "model.prior.", "model.decoder.", "model.latent_channels", "loss.")
STAGE2_LOSS = ("loss.base_sigmoid_bias", "loss.base_weighting")


def preset_values(name: str) -> dict[str, Any]:
    """The schema defaults overlaid with a preset (valid or not: folder presets lack data.path).

    A folder preset's placeholder path (".") is cleared: the app's working folder means nothing to the
    user, who chooses the folder in the form."""
    raw = deep_merge(RunConfig().to_dict(), load_preset(name))
    if raw["data"].get("kind") == "image-folder" and raw["data"].get("path") in (".", "./"):
        raw["data"]["path"] = ""
    return raw


def stage2_values(parent_config: dict[str, Any], preset: str) -> dict[str, Any]:
    """Stage 2 keeps the stage-1 data and model; the preset supplies the base model and optimisation."""
    p = load_preset(preset)
    raw = deep_merge(RunConfig().to_dict(), parent_config)
    for section in ("optim", "ema", "train", "sampling"):
        if section in p:
            raw[section] = {**raw.get(section, {}), **p[section]}
    raw["model"]["base"] = {**raw["model"].get("base", {}), **p.get("model", {}).get("base", {})}
    raw["stage"] = 2
    raw["preset"] = preset
    return raw


def downsampling_of(flat: dict[str, Any]) -> int | None:
    try:
        return int(flat["model.encoder.patch"]) * 2 ** (len(flat["model.encoder.channels"]) - 1)
    except (KeyError, TypeError, ValueError):
        return None


def with_downsampling(flat: dict[str, Any], factor: int) -> dict[str, Any]:
    """Encoder/decoder patch and stage lists giving `factor` pixels per latent position (both match)."""
    enc = list(flat.get("model.encoder.channels") or [32, 64, 96])
    dec = list(flat.get("model.decoder.channels") or [32, 64])
    stages = int(math.log2(factor)) + 1
    if stages <= len(enc):
        enc = enc[:stages] if stages < len(enc) else enc
        patch = 1
    else:
        patch = factor // 2 ** (len(enc) - 1)
    levels = len(enc) - 1
    while len(dec) < levels:
        dec.append(dec[-1] if dec else 32)
    dec = dec[:levels] if levels >= 1 else dec[:1]
    if levels == 0:  # a single encoder stage: the decoder still needs one level, so patch makes it up
        enc = enc[:2] if len(enc) >= 2 else [*enc, enc[0]]
        patch = max(1, factor // 2)
        dec = dec[:1]
    return {
        "model.encoder.channels": enc,
        "model.encoder.patch": patch,
        "model.decoder.channels": dec,
        "model.decoder.patch": patch,
    }


class _Row(QWidget):
    """A knob with its inline error line."""

    def __init__(self, widget: QWidget, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(1)
        self.widget = widget
        layout.addWidget(widget)
        self.error = QLabel()
        self.error.setObjectName("fieldError")
        self.error.setWordWrap(True)
        self.error.hide()
        layout.addWidget(self.error)

    def set_error(self, message: str | None) -> None:
        self.widget.setProperty("invalid", bool(message))
        self.widget.style().unpolish(self.widget)
        self.widget.style().polish(self.widget)
        self.error.setText(message or "")
        self.error.setVisible(bool(message))


def _spin(lo: float, hi: float, decimals: int | None = None, step: float = 1.0) -> QSpinBox | QDoubleSpinBox:
    if decimals is None:
        w: Any = QSpinBox()
        w.setRange(int(lo), int(hi))
    else:
        w = QDoubleSpinBox()
        w.setDecimals(decimals)
        w.setRange(lo, hi)
    w.setSingleStep(step)
    w.setKeyboardTracking(False)
    w.setAccelerated(True)
    return w


class NewRunDialog(QDialog):
    run_created = Signal(int)
    run_started = Signal(int)  # created and queued ("Create and start"): the Monitor follows it

    def __init__(
        self,
        ctx: Any,
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
        self._trial: Any = None
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
        self.knobs: dict[str, _Row] = {}

        self._build_run_group(preset, parent_run)
        self._build_data_group()
        self._build_model_group()
        self._build_training_group()
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
        self.create_start.clicked.connect(lambda: self.create(start=True))
        self.create_only.clicked.connect(lambda: self.create(start=False))
        outer.addWidget(buttons)

        self._validate_timer = QTimer(self)
        self._validate_timer.setSingleShot(True)
        self._validate_timer.setInterval(250)
        self._validate_timer.timeout.connect(self.validate_now)

        if base_run is not None:
            self._load_values(deep_merge(RunConfig().to_dict(), base_run.config))
        else:
            self._reload_base()
        self._update_estimate()

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
        self.name_row = _Row(self.name)
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
        est_row = QHBoxLayout()
        self.estimate = QLabel()
        self.estimate.setWordWrap(True)
        self.estimate.setToolTip(glossary.tip("speed"))
        self.measure = QPushButton("Measure")
        self.measure.setToolTip(glossary.tip("measure"))
        self.measure.clicked.connect(self.measure_speed)
        est_row.addWidget(self.estimate, 1)
        est_row.addWidget(self.measure)
        form.addRow("Speed", est_row)
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
            self.checkpoint_row = _Row(self.checkpoint_combo)
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

    def _build_data_group(self) -> None:
        form = self._group("Data")
        self.dataset = DatasetChooser()
        self.dataset.changed.connect(self._on_dataset)
        form.addRow("Images", self.dataset)
        self.resolution = _spin(0, 100000, step=8)
        self.resolution.setToolTip(glossary.tip("resolution"))
        self._bind("data.resolution", self.resolution, form, "Resolution (px)")

    def _build_model_group(self) -> None:
        form = self._group("Model and loss")
        self.loss_factor = _spin(-1000, 1000, 3, 0.1)
        self.loss_factor.setToolTip(glossary.tip("loss_factor"))
        self._bind("loss.loss_factor", self.loss_factor, form, "Loss factor (c_lf)")
        self.expect = QLabel()
        self.expect.setObjectName("hint")
        self.expect.setWordWrap(True)
        self.expect.setToolTip("What to expect from this loss factor (measured on the small presets).")
        form.addRow("", self.expect)
        self.sigmoid_bias = _spin(-1000, 1000, 2, 0.5)
        self.sigmoid_bias.setToolTip(glossary.tip("sigmoid_bias"))
        self._bind("loss.sigmoid_bias", self.sigmoid_bias, form, "Sigmoid bias (b)")
        self.latent_channels = _spin(0, 100000)
        self.latent_channels.setToolTip(glossary.tip("latent_channels"))
        self._bind("model.latent_channels", self.latent_channels, form, "Latent channels")
        self.downsampling = QComboBox()
        self.downsampling.setObjectName("knob:downsampling")
        self.downsampling.setToolTip(glossary.tip("downsampling"))
        for factor in DOWNSAMPLING:
            self.downsampling.addItem(f"×{factor}", factor)
        self.downsampling.currentIndexChanged.connect(self._on_downsampling)
        self.downsampling_row = _Row(self.downsampling)
        form.addRow("Downsampling", self.downsampling_row)
        self.latent_shape = QLabel()
        self.latent_shape.setObjectName("hint")
        form.addRow("", self.latent_shape)

    def _build_training_group(self) -> None:
        form = self._group("Training")
        budget = QWidget()
        row = QHBoxLayout(budget)
        row.setContentsMargins(0, 0, 0, 0)
        self.by_steps = QRadioButton("Steps")
        self.by_steps.setToolTip(glossary.tip("budget"))
        self.by_minutes = QRadioButton("Minutes")
        self.by_minutes.setToolTip(glossary.tip("budget"))
        group = QButtonGroup(self)
        group.addButton(self.by_steps)
        group.addButton(self.by_minutes)
        self.steps = _spin(-1, 10**9, step=100)
        self.steps.setObjectName("knob:train.steps")
        self.steps.setToolTip(glossary.tip("steps"))
        self.minutes = QDoubleSpinBox()
        self.minutes.setRange(-1, 10**6)
        self.minutes.setDecimals(1)
        self.minutes.setObjectName("knob:train.minutes")
        self.minutes.setToolTip(glossary.tip("minutes"))
        row.addWidget(self.by_steps)
        row.addWidget(self.steps, 1)
        row.addWidget(self.by_minutes)
        row.addWidget(self.minutes, 1)
        self.budget_row = _Row(budget)
        form.addRow("Budget", self.budget_row)
        self.by_steps.setChecked(True)
        for w in (self.by_steps, self.by_minutes):
            w.toggled.connect(self._on_budget)
        self.steps.valueChanged.connect(self._on_budget)
        self.minutes.valueChanged.connect(self._on_budget)
        self.batch = _spin(0, 10**7)
        self.batch.setToolTip(glossary.tip("batch_size"))
        self._bind("optim.batch_size", self.batch, form, "Batch size")
        self.device = QComboBox()
        self.device.setObjectName("knob:device")
        self.device.setToolTip(glossary.tip("device"))
        self.device.addItem("Automatic (a GPU if there is one)", "auto")
        self.device.addItem("CPU", "cpu")
        for i, name in enumerate(self.ctx.gpus):
            self.device.addItem(f"GPU {i}: {name}", f"cuda:{i}")
        self.device.currentIndexChanged.connect(self._on_device)
        self.device_row = _Row(self.device)
        form.addRow("Device", self.device_row)

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

    def _bind(self, path: str, widget: QWidget, form: QFormLayout, label: str) -> None:
        widget.setObjectName(f"knob:{path}")
        if not widget.toolTip():
            widget.setToolTip(self.form.editors[path].widget.toolTip().split("\n")[0])
        row = _Row(widget)
        self.knobs[path] = row
        form.addRow(label, row)
        widget.valueChanged.connect(lambda value, p=path: self._on_knob(p, value))

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
            self.form.set_editable(lambda p: not p.startswith(STAGE1_ONLY) or p in STAGE2_LOSS)
            for w in (self.dataset, self.resolution, self.loss_factor, self.sigmoid_bias, self.latent_channels,
                      self.downsampling):  # fmt: skip
                w.setEnabled(False)
        self.schedule_validation()

    def _sync_knobs_from_form(self) -> None:
        self._syncing = True
        try:
            values = self.form.values()
            for path, row in self.knobs.items():
                value = values.get(path)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    row.widget.setValue(value)
            down = downsampling_of(values)
            i = self.downsampling.findData(down)
            if i < 0 and down:
                self.downsampling.addItem(f"×{down}", down)
                i = self.downsampling.count() - 1
            self.downsampling.setCurrentIndex(max(0, i))
            steps, minutes = values.get("train.steps"), values.get("train.minutes")
            if isinstance(steps, int):
                self.steps.setValue(steps)
            if isinstance(minutes, int | float):
                self.minutes.setValue(float(minutes))
            by_minutes = isinstance(steps, int) and steps == 0 and isinstance(minutes, int | float) and minutes > 0
            (self.by_minutes if by_minutes else self.by_steps).setChecked(True)
            self.steps.setEnabled(not by_minutes)
            self.minutes.setEnabled(by_minutes)
            self.dataset.set_resolution(values.get("data.resolution") or 32)
            self._update_expectation(values)
            self.dataset.set_state(str(values.get("data.kind")), str(values.get("data.path") or ""))
            device = values.get("train.device")
            if device in ("auto", "cpu"):
                self.device.setCurrentIndex(max(0, self.device.findData(device)))
            elif device == "cuda" and self.device.findData("cuda:0") >= 0:
                self.device.setCurrentIndex(self.device.findData("cuda:0"))
            self._update_latent_shape()
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
        choice = self.device.currentData()
        if choice == "auto":
            return self.ctx.default_device({"train": {"device": "auto"}})
        return str(choice)

    # ---- reactions -----------------------------------------------------------------------------------

    def _on_preset(self, _i: int) -> None:
        self._reload_base()
        self._update_estimate()

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

    def _on_knob(self, path: str, value: Any) -> None:
        if self._syncing:
            return
        self.form.set_value(path, value)
        if path == "data.resolution":
            self.dataset.set_resolution(int(value))
            self._update_latent_shape()
        if path in ("loss.loss_factor", "data.resolution"):
            self._update_expectation(self.form.values())
        self.schedule_validation()
        self._update_estimate()

    def _on_downsampling(self, _i: int) -> None:
        if self._syncing:
            return
        factor = self.downsampling.currentData()
        if factor:
            self.form.set_values(with_downsampling(self.form.values(), int(factor)))
        self._update_latent_shape()
        self.schedule_validation()

    def _on_budget(self, *_args: Any) -> None:
        if self._syncing:
            return
        by_minutes = self.by_minutes.isChecked()
        self.steps.setEnabled(not by_minutes)
        self.minutes.setEnabled(by_minutes)
        if by_minutes:
            self.form.set_values({"train.steps": 0, "train.minutes": float(self.minutes.value())})
        else:
            self.form.set_values({"train.steps": int(self.steps.value()), "train.minutes": 0.0})
        self.schedule_validation()
        self._update_estimate()

    def _on_device(self, _i: int) -> None:
        if self._syncing:
            return
        choice = str(self.device.currentData())
        self.form.set_value("train.device", "auto" if choice == "auto" else "cpu" if choice == "cpu" else "cuda")
        self.schedule_validation()
        self._update_estimate()

    def _on_dataset(self, kind: str, path: str) -> None:
        if self._syncing:
            return
        self.form.set_values({"data.kind": kind, "data.path": path})
        self.schedule_validation()

    def _update_expectation(self, values: dict[str, Any]) -> None:
        lf, res = values.get("loss.loss_factor"), values.get("data.resolution")
        ok = isinstance(lf, int | float) and not isinstance(lf, bool)
        self.expect.setText(glossary.expectation(float(lf) if ok else None, res if isinstance(res, int) else None))

    def _update_latent_shape(self) -> None:
        values = self.form.values()
        down, res, ch = downsampling_of(values), values.get("data.resolution"), values.get("model.latent_channels")
        if isinstance(res, int) and down and isinstance(ch, int) and res % down == 0:
            side = res // down
            self.latent_shape.setText(f"latent {side}×{side}×{ch} = {side * side * ch:,} numbers per image")
        else:
            self.latent_shape.setText("")

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
        paths = self.form.paths()
        by_field: dict[str, str] = {}
        general: list[str] = []
        for loc, message in errors.items():
            target = self._field_for(loc, paths)
            if target is not None:
                by_field[target] = message
                continue
            mentioned = [p for p in re.findall(r"[a-z_]+(?:\.[a-z_]+)+", message) if p in paths]
            for p in mentioned:
                by_field.setdefault(p, message)
            if loc == "checkpoint":
                continue
            general.append(message if loc == "config" else f"{loc}: {message}")
        self.form.set_errors(by_field)
        for path, row in self.knobs.items():
            row.set_error(by_field.get(path))
        budget = by_field.get("train.steps") or by_field.get("train.minutes")
        self.budget_row.set_error(budget)
        self.device_row.set_error(by_field.get("train.device"))
        down = next((by_field[p] for p in by_field if p.startswith(("model.encoder.", "model.decoder."))), None)
        self.downsampling_row.set_error(down if self.stage == 1 else None)
        if self.stage == 2:
            self.checkpoint_row.set_error(errors.get("checkpoint"))
        if general:
            self.banner.setText("The engine rejects this config: " + "; ".join(general))
            self.banner.show()
        else:
            self.banner.hide()
        hidden = [
            p
            for p in by_field
            if p not in self.knobs and not p.startswith(("train.", "model.encoder", "model.decoder"))
        ]
        if hidden and not self.form.isVisible() and not general:
            self.banner.setText("Fix the marked fields in Advanced: " + ", ".join(hidden))
            self.banner.show()

    @staticmethod
    def _field_for(loc: str, paths: list[str]) -> str | None:
        if loc in paths:
            return loc
        best = None
        for p in paths:
            if loc.startswith(p + ".") and (best is None or len(p) > len(best)):
                best = p
        return best

    # ---- create --------------------------------------------------------------------------------------

    def create(self, *, start: bool = True) -> RunInfo | None:
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

    def _update_estimate(self) -> None:
        device = self.queue_device()
        cached = self.ctx.settings.estimate(self.preset_name(), device)
        if self._trial is not None:
            return
        if cached is None:
            self.estimate.setText(f"not measured on {device} yet")
            self.measure.setText("Measure")
            return
        per_1000 = float(cached["seconds_per_1000"])
        text = f"≈ {fmt.duration(per_1000)} per 1 000 steps on {device}"
        steps = self.form.values().get("train.steps")
        if isinstance(steps, int) and steps > 0 and self.by_steps.isChecked():
            text += f" · this run ≈ {fmt.duration(per_1000 * steps / 1000)}"
        self.estimate.setText(text + " (measured)")
        self.measure.setText("Measure again")

    def measure_speed(self) -> None:
        from app.workers.trial import SpeedTrial

        if self._trial is not None:
            return
        device, preset = self.queue_device(), self.preset_name()
        trial = SpeedTrial(preset_values(preset), device, parent=self)
        self._trial = trial
        self.measure.setEnabled(False)
        trial.progress.connect(self.estimate.setText)

        def finish() -> None:
            self._trial = None
            self.measure.setEnabled(True)
            trial.deleteLater()

        def done(per_1000: float) -> None:
            self.ctx.settings.set_estimate(preset, device, per_1000)
            finish()
            self._update_estimate()

        def failed(message: str) -> None:
            finish()
            self.estimate.setText(f"measuring failed: {message}")

        trial.done.connect(done)
        trial.failed.connect(failed)
        trial.start()

    def done(self, result: int) -> None:
        if self._trial is not None:
            self._trial.cancel()
            self._trial = None
        self.dataset.cancel()
        super().done(result)
