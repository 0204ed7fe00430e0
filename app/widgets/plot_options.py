"""The Monitor's plot options (smoothing, log axes, legends, step or wall-time x), remembered in the settings."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLabel, QSlider, QWidget

from app.plots import PlotPanel
from app.settings import Settings


class PlotOptions(QWidget):
    changed = Signal()  # any option changed (and was saved)

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        label = QLabel("Smoothing")
        label.setToolTip("Exponential moving average with debias, computed on every raw value; 0 is off.")
        row.addWidget(label)
        self.smoothing = QSlider(Qt.Orientation.Horizontal)
        self.smoothing.setObjectName("smoothing")
        self.smoothing.setRange(0, 99)
        self.smoothing.setFixedWidth(160)
        self.smoothing.setToolTip(label.toolTip())
        self.smoothing.setValue(round(settings.smoothing() * 100))
        self.smoothing_value = QLabel()
        self.smoothing_value.setMinimumWidth(32)
        row.addWidget(self.smoothing)
        row.addWidget(self.smoothing_value)
        row.addSpacing(16)
        self.log_x = QCheckBox("log x")
        self.log_x.setToolTip("Logarithmic step (or time) axis: early training gets as much room as late.")
        self.log_x.setChecked(settings.plot_flag("log_x"))
        self.log_y = QCheckBox("log y")
        self.log_y.setToolTip("Logarithmic value axis, for losses that fall over orders of magnitude.")
        self.log_y.setChecked(settings.plot_flag("log_y"))
        row.addWidget(self.log_x)
        row.addWidget(self.log_y)
        self.legends = QCheckBox("Legends")
        self.legends.setObjectName("legends")
        self.legends.setToolTip("A line under each plot naming its curves (it never covers the data).")
        self.legends.setChecked(settings.plot_flag("legends", True))
        row.addWidget(self.legends)
        row.addSpacing(16)
        row.addWidget(QLabel("x axis"))
        self.x_axis = QComboBox()
        self.x_axis.setToolTip("Plot against optimizer steps or wall-clock time since the run started.")
        self.x_axis.addItem("Step", "step")
        self.x_axis.addItem("Wall time", "time")
        self.x_axis.setCurrentIndex(max(0, self.x_axis.findData(settings.x_axis())))
        row.addWidget(self.x_axis)
        row.addStretch(1)
        self.smoothing.valueChanged.connect(self._on_change)
        self.log_x.toggled.connect(self._on_change)
        self.log_y.toggled.connect(self._on_change)
        self.legends.toggled.connect(self._on_change)
        self.x_axis.currentIndexChanged.connect(self._on_change)
        self._show_smoothing()

    def smoothing_weight(self) -> float:
        return self.smoothing.value() / 100.0

    def x_mode(self) -> str:
        return str(self.x_axis.currentData())

    def configure(self, panel: PlotPanel) -> None:
        """Apply the options to one plot."""
        panel.set_smoothing(self.smoothing_weight())
        panel.set_log(self.log_x.isChecked(), self.log_y.isChecked())
        panel.set_x_mode(self.x_mode())
        panel.set_legend_visible(self.legends.isChecked())

    def _on_change(self, *_args: Any) -> None:
        self._show_smoothing()
        self.settings.set_smoothing(self.smoothing_weight())
        self.settings.set_plot_flag("log_x", self.log_x.isChecked())
        self.settings.set_plot_flag("log_y", self.log_y.isChecked())
        self.settings.set_plot_flag("legends", self.legends.isChecked())
        self.settings.set_x_axis(self.x_mode())
        self.changed.emit()

    def _show_smoothing(self) -> None:
        w = self.smoothing_weight()
        self.smoothing_value.setText("off" if w == 0 else f"{w:.2f}")
