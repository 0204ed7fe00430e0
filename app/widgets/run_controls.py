"""The Monitor's status row: the run's status, a progress bar, speed and ETA, and Pause/Resume, Stop, Sample now
and Save now. What it shows is decided in `app.models.run_progress.status_view`."""

from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget

from app import theme
from app.models.run_progress import StatusView

ETA_TIP = "Speed and estimated time left, from the worker's progress reports."


class RunControls(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        self.status = QLabel("–")
        self.status.setObjectName("monitorStatus")
        self.status.setMinimumWidth(90)
        row.addWidget(self.status)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(True)
        self.progress.setToolTip("Steps done out of the run's budget.")
        row.addWidget(self.progress, 1)
        self.eta = QLabel("")
        self.eta.setMinimumWidth(230)
        self.eta.setToolTip(ETA_TIP)
        row.addWidget(self.eta)
        self.pause_button = QPushButton("Pause")
        self.pause_button.setToolTip("Pause after the current step; the model stays loaded (Resume continues).")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Save a checkpoint and end training; Resume later continues from it.")
        self.sample_button = QPushButton("Sample now")
        self.sample_button.setToolTip("Write a preview of the fixed validation batch after the current step.")
        self.save_button = QPushButton("Save now")
        self.save_button.setToolTip("Save a resumable checkpoint after the current step.")
        for b in self.buttons():
            row.addWidget(b)

    def buttons(self) -> tuple[QPushButton, ...]:
        return (self.pause_button, self.stop_button, self.sample_button, self.save_button)

    def show_none(self) -> None:
        self.status.setText("–")
        self.progress.setValue(0)
        self.progress.setFormat("")
        self.eta.setText("")
        for b in self.buttons():
            b.setEnabled(False)

    def show_view(self, view: StatusView) -> None:
        color = theme.STATUS_COLORS.get(view.status, "#7a7a7a")
        self.status.setText(f"<b style='color:{color}'>{view.status}</b>")
        self.progress.setValue(view.progress)
        self.progress.setFormat(view.progress_text)
        self.eta.setText(view.eta)
        self.eta.setToolTip(view.eta_tip or ETA_TIP)
        self.pause_button.setText(view.pause_text)
        self.pause_button.setEnabled(view.can_pause)
        self.stop_button.setEnabled(view.can_stop)
        self.sample_button.setEnabled(view.can_sample)
        self.save_button.setEnabled(view.can_save)
