"""The New run form's speed line: how long 1 000 steps of the preset take on the chosen device (measured once
per preset and device by a short trial in a worker process, then remembered), and this run's time from it."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QWidget

from app import glossary
from app.models.run_form import estimate_text, preset_values
from app.settings import Settings
from app.workers.trial import SpeedTrial

Choice = Callable[[], tuple[str, str, int | None]]  # → (preset, device, the run's steps or None)


class SpeedEstimate(QWidget):
    def __init__(self, settings: Settings, choice: Choice, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.choice = choice
        self.trial: SpeedTrial | None = None
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        self.estimate = QLabel()
        self.estimate.setWordWrap(True)
        self.estimate.setToolTip(glossary.tip("speed"))
        self.measure = QPushButton("Measure")
        self.measure.setToolTip(glossary.tip("measure"))
        self.measure.clicked.connect(self.measure_speed)
        row.addWidget(self.estimate, 1)
        row.addWidget(self.measure)

    def refresh(self) -> None:
        """Show the remembered speed for the current choice (unless a trial is measuring now)."""
        if self.trial is not None:
            return
        preset, device, steps = self.choice()
        cached = self.settings.estimate(preset, device)
        if cached is None:
            self.estimate.setText(f"not measured on {device} yet")
            self.measure.setText("Measure")
            return
        self.estimate.setText(estimate_text(float(cached["seconds_per_1000"]), device, steps))
        self.measure.setText("Measure again")

    def measure_speed(self) -> None:
        if self.trial is not None:
            return
        preset, device, _steps = self.choice()
        trial = SpeedTrial(preset_values(preset), device, parent=self)
        self.trial = trial
        self.measure.setEnabled(False)
        trial.progress.connect(self.estimate.setText)

        def finish() -> None:
            self.trial = None
            self.measure.setEnabled(True)
            trial.deleteLater()

        def done(per_1000: float) -> None:
            self.settings.set_estimate(preset, device, per_1000)
            finish()
            self.refresh()

        def failed(message: str) -> None:
            finish()
            self.estimate.setText(f"measuring failed: {message}")

        trial.done.connect(done)
        trial.failed.connect(failed)
        trial.start()

    def cancel(self) -> None:
        """The form closes: stop a running trial."""
        if self.trial is not None:
            self.trial.cancel()
            self.trial = None
