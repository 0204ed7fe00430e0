"""The New run form's main knobs (data, model and loss, training budget and device), bound to the Advanced
section's editors: a knob writes its config field there, and `sync_from` shows the fields' values again.

The knobs never judge a value; the dialog asks the engine and `show_errors` marks what it rejected.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app import glossary
from app.models.run_form import (
    DOWNSAMPLING,
    budget_is_minutes,
    budget_values,
    device_setting,
    downsampling_of,
    latent_shape_text,
    shape_error,
    with_downsampling,
)
from app.pages.config_form import ConfigForm
from app.pages.dataset import DatasetChooser
from app.widgets.field_row import FieldRow, spin_box


class RunKnobs(QWidget):
    edited = Signal()  # a knob wrote the form: validate again, estimate again

    def __init__(self, form: ConfigForm, gpus: list[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.form = form
        self.rows: dict[str, FieldRow] = {}  # config path → the knob's row
        self._syncing = False
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self._build_data(self._group(layout, "Data"))
        self._build_model(self._group(layout, "Model and loss"))
        self._build_training(self._group(layout, "Training"), gpus)

    @staticmethod
    def _group(layout: QVBoxLayout, title: str) -> QFormLayout:
        box = QGroupBox(title)
        form = QFormLayout(box)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        layout.addWidget(box)
        return form

    def _build_data(self, form: QFormLayout) -> None:
        self.dataset = DatasetChooser()
        self.dataset.changed.connect(self._on_dataset)
        form.addRow("Images", self.dataset)
        self.resolution = self._bind("data.resolution", spin_box(0, 100000, step=8), form, "Resolution (px)",
                                     "resolution")  # fmt: skip

    def _build_model(self, form: QFormLayout) -> None:
        self.loss_factor = self._bind("loss.loss_factor", spin_box(-1000, 1000, 3, 0.1), form, "Loss factor (c_lf)",
                                      "loss_factor")  # fmt: skip
        self.expect = QLabel()
        self.expect.setObjectName("hint")
        self.expect.setWordWrap(True)
        self.expect.setToolTip("What to expect from this loss factor (measured on the small presets).")
        form.addRow("", self.expect)
        self.sigmoid_bias = self._bind("loss.sigmoid_bias", spin_box(-1000, 1000, 2, 0.5), form, "Sigmoid bias (b)",
                                       "sigmoid_bias")  # fmt: skip
        self.latent_channels = self._bind("model.latent_channels", spin_box(0, 100000), form, "Latent channels",
                                          "latent_channels")  # fmt: skip
        self.downsampling = QComboBox()
        self.downsampling.setObjectName("knob:downsampling")
        self.downsampling.setToolTip(glossary.tip("downsampling"))
        for factor in DOWNSAMPLING:
            self.downsampling.addItem(f"×{factor}", factor)
        self.downsampling.currentIndexChanged.connect(self._on_downsampling)
        self.downsampling_row = FieldRow(self.downsampling)
        form.addRow("Downsampling", self.downsampling_row)
        self.latent_shape = QLabel()
        self.latent_shape.setObjectName("hint")
        form.addRow("", self.latent_shape)

    def _build_training(self, form: QFormLayout, gpus: list[str]) -> None:
        budget = QWidget()
        row = QHBoxLayout(budget)
        row.setContentsMargins(0, 0, 0, 0)
        self.by_steps = QRadioButton("Steps")
        self.by_minutes = QRadioButton("Minutes")
        group = QButtonGroup(self)
        for button in (self.by_steps, self.by_minutes):
            button.setToolTip(glossary.tip("budget"))
            group.addButton(button)
        self.steps = spin_box(-1, 10**9, step=100)
        self.steps.setObjectName("knob:train.steps")
        self.steps.setToolTip(glossary.tip("steps"))
        self.minutes = QDoubleSpinBox()
        self.minutes.setRange(-1, 10**6)
        self.minutes.setDecimals(1)
        self.minutes.setObjectName("knob:train.minutes")
        self.minutes.setToolTip(glossary.tip("minutes"))
        for widget, stretch in ((self.by_steps, 0), (self.steps, 1), (self.by_minutes, 0), (self.minutes, 1)):
            row.addWidget(widget, stretch)
        self.budget_row = FieldRow(budget)
        form.addRow("Budget", self.budget_row)
        self.by_steps.setChecked(True)
        for button in (self.by_steps, self.by_minutes):
            button.toggled.connect(self._on_budget)
        self.steps.valueChanged.connect(self._on_budget)
        self.minutes.valueChanged.connect(self._on_budget)
        self.batch = self._bind("optim.batch_size", spin_box(0, 10**7), form, "Batch size", "batch_size")
        self.device = QComboBox()
        self.device.setObjectName("knob:device")
        self.device.setToolTip(glossary.tip("device"))
        self.device.addItem("Automatic (a GPU if there is one)", "auto")
        self.device.addItem("CPU", "cpu")
        for i, name in enumerate(gpus):
            self.device.addItem(f"GPU {i}: {name}", f"cuda:{i}")
        self.device.currentIndexChanged.connect(self._on_device)
        self.device_row = FieldRow(self.device)
        form.addRow("Device", self.device_row)

    def _bind(
        self, path: str, widget: QSpinBox | QDoubleSpinBox, form: QFormLayout, label: str, tip: str
    ) -> QSpinBox | QDoubleSpinBox:
        widget.setObjectName(f"knob:{path}")
        widget.setToolTip(glossary.tip(tip))
        row = FieldRow(widget)
        self.rows[path] = row
        form.addRow(label, row)
        widget.valueChanged.connect(lambda value, p=path: self._on_knob(p, value))
        return widget

    # ---- form → knobs --------------------------------------------------------------------------------

    def sync_from(self, values: dict[str, Any]) -> None:
        """Show the form's values on the knobs (without writing them back)."""
        self._syncing = True
        try:
            for path, row in self.rows.items():
                value, spin = values.get(path), row.widget
                if isinstance(value, bool) or not isinstance(value, int | float):
                    continue
                if isinstance(spin, QSpinBox) and isinstance(value, int):
                    spin.setValue(value)
                elif isinstance(spin, QDoubleSpinBox):
                    spin.setValue(float(value))
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
            by_minutes = budget_is_minutes(values)
            (self.by_minutes if by_minutes else self.by_steps).setChecked(True)
            self.steps.setEnabled(not by_minutes)
            self.minutes.setEnabled(by_minutes)
            self.dataset.set_resolution(values.get("data.resolution") or 32)
            self.update_expectation(values)
            self.dataset.set_state(str(values.get("data.kind")), str(values.get("data.path") or ""))
            device = values.get("train.device")
            if device in ("auto", "cpu"):
                self.device.setCurrentIndex(max(0, self.device.findData(device)))
            elif device == "cuda" and self.device.findData("cuda:0") >= 0:
                self.device.setCurrentIndex(self.device.findData("cuda:0"))
            self.latent_shape.setText(latent_shape_text(values))
        finally:
            self._syncing = False

    def lock_stage1(self) -> None:
        """Stage 2: the data and the stage-1 model are the parent's."""
        for w in (self.dataset, self.resolution, self.loss_factor, self.sigmoid_bias, self.latent_channels,
                  self.downsampling):  # fmt: skip
            w.setEnabled(False)

    def update_expectation(self, values: dict[str, Any]) -> None:
        lf, res = values.get("loss.loss_factor"), values.get("data.resolution")
        factor = float(lf) if isinstance(lf, int | float) and not isinstance(lf, bool) else None
        self.expect.setText(glossary.expectation(factor, res if isinstance(res, int) else None))

    def show_errors(self, by_field: dict[str, str], stage: int) -> None:
        for path, row in self.rows.items():
            row.set_error(by_field.get(path))
        self.budget_row.set_error(by_field.get("train.steps") or by_field.get("train.minutes"))
        self.device_row.set_error(by_field.get("train.device"))
        self.downsampling_row.set_error(shape_error(by_field) if stage == 1 else None)

    # ---- knobs → form --------------------------------------------------------------------------------

    def _on_knob(self, path: str, value: Any) -> None:
        if self._syncing:
            return
        self.form.set_value(path, value)
        if path == "data.resolution":
            self.dataset.set_resolution(int(value))
            self.latent_shape.setText(latent_shape_text(self.form.values()))
        if path in ("loss.loss_factor", "data.resolution"):
            self.update_expectation(self.form.values())
        self.edited.emit()

    def _on_downsampling(self, _i: int) -> None:
        if self._syncing:
            return
        factor = self.downsampling.currentData()
        if factor:
            self.form.set_values(with_downsampling(self.form.values(), int(factor)))
        self.latent_shape.setText(latent_shape_text(self.form.values()))
        self.edited.emit()

    def _on_budget(self, *_args: Any) -> None:
        if self._syncing:
            return
        by_minutes = self.by_minutes.isChecked()
        self.steps.setEnabled(not by_minutes)
        self.minutes.setEnabled(by_minutes)
        self.form.set_values(budget_values(by_minutes, int(self.steps.value()), float(self.minutes.value())))
        self.edited.emit()

    def _on_device(self, _i: int) -> None:
        if self._syncing:
            return
        self.form.set_value("train.device", device_setting(str(self.device.currentData())))
        self.edited.emit()

    def _on_dataset(self, kind: str, path: str) -> None:
        if self._syncing:
            return
        self.form.set_values({"data.kind": kind, "data.path": path})
        self.edited.emit()
