"""The Reconstruct page's settings row: the model (and a second one to compare with) and the decoder's
settings; the seed and K are remembered, the steps and sampler follow the chosen run's own defaults."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QComboBox, QGridLayout, QHBoxLayout, QLabel, QPushButton, QSpinBox, QWidget

from app import glossary
from app.widgets.checkpoint_picker import CheckpointPicker
from ul_engine.core.reconstruction import MAX_SAMPLES, ReconstructParams
from ul_engine.core.samplers import SAMPLERS


class ReconstructSettings(QWidget):
    """Model A, model B, decoder steps, sampler, seed, K and "Apply to all"; `params()` reads them."""

    def __init__(self, settings: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self._steps_run: int | None = None
        self.picker = CheckpointPicker()
        self.picker.setToolTip("The model: a stage-1 run and one of its checkpoints (the latest first).")
        self.compare_picker = CheckpointPicker(allow_none=True, none_text="nothing (input vs reconstruction)")
        self.compare_picker.setToolTip(
            "Reconstruct each image with a second run or checkpoint too, with the same seeds and settings."
        )
        self.steps = QSpinBox()
        self.steps.setRange(1, 4096)
        self.steps.setToolTip("Decoder sampling steps (noise → image). More steps: slower, usually sharper.")
        self.sampler = QComboBox()
        self.sampler.addItems(list(SAMPLERS))
        self.sampler.setToolTip(glossary.tip("sampler"))
        glossary.tip_items(self.sampler, list(SAMPLERS))
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setValue(int(settings.get("reconstruct/seed", 0, int)))
        self.seed.setToolTip("Seed of the latent noise and the decoder's noise: the same seed gives the same result.")
        self.samples = QSpinBox()
        self.samples.setRange(1, min(16, MAX_SAMPLES))
        self.samples.setValue(int(settings.get("reconstruct/samples", 1, int)))
        self.samples.setToolTip(glossary.tip("samples_k"))
        self.apply_button = QPushButton("Apply to all")
        self.apply_button.setToolTip(
            "Reconstruct every image in the list again with these settings (cached ones at once)."
        )
        self._layout()
        self.picker.changed.connect(self._on_model_changed)
        self.samples.valueChanged.connect(lambda v: settings.set("reconstruct/samples", int(v)))
        self.seed.valueChanged.connect(lambda v: settings.set("reconstruct/seed", int(v)))

    def _layout(self) -> None:
        controls = QGridLayout(self)
        controls.setContentsMargins(0, 0, 0, 0)
        controls.setHorizontalSpacing(8)
        controls.addWidget(QLabel("Model"), 0, 0)
        controls.addWidget(self.picker, 0, 1, 1, 3)
        controls.addWidget(QLabel("Compare with"), 0, 4)
        controls.addWidget(self.compare_picker, 0, 5, 1, 4)
        knobs = QHBoxLayout()
        for label, widget in (
            ("Decoder steps", self.steps), ("Sampler", self.sampler), ("Seed", self.seed), ("Samples K", self.samples)
        ):  # fmt: skip
            knobs.addWidget(QLabel(label))
            knobs.addWidget(widget)
            knobs.addSpacing(10)
        knobs.addStretch(1)
        knobs.addWidget(self.apply_button)
        controls.addLayout(knobs, 1, 0, 1, 9)
        controls.setColumnStretch(1, 3)
        controls.setColumnStretch(5, 3)

    def saved_model(self) -> tuple[int, int] | None:
        """The (run id, checkpoint id) chosen last time, if any."""
        saved = str(self.settings.get("reconstruct/model", "") or "")
        ids = [int(v) for v in saved.split(":") if v.isdigit()] if saved else []
        return (ids[0], ids[1]) if len(ids) == 2 else None

    def _on_model_changed(self) -> None:
        choice = self.picker.current_model()
        ids = self.picker.current_ids()
        if ids is not None:
            self.settings.set("reconstruct/model", f"{ids[0]}:{ids[1]}")
        run_id = choice.run_id if choice else None
        if choice is not None and run_id != self._steps_run:
            self._steps_run = run_id
            if choice.decoder_steps:
                self.steps.setValue(choice.decoder_steps)
            if choice.sampler in SAMPLERS:
                self.sampler.setCurrentText(choice.sampler)

    def params(self) -> ReconstructParams:
        return ReconstructParams(
            decoder_steps=self.steps.value(),
            sampler=self.sampler.currentText(),
            seed=self.seed.value(),
            samples=self.samples.value(),
        )

    def video_params(self) -> dict[str, Any]:
        return {"decoder_steps": self.steps.value(), "seed": self.seed.value()}
