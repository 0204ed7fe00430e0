"""The Latents page's four scrubber tabs: interpolate A → B (with a film strip), push the latent to a noise level and
denoise it back, edit one channel, and step through a generated sample's trajectory. Each tab holds its controls
and its `Scrubber`; the page passes in the function that decodes a value."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from PySide6.QtGui import QStandardItemModel
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app import glossary
from app.models import latents as model
from app.pages.latents_views import DecodeSettings, ExportBar, hint_label
from app.widgets.scrubber import DecodeFn, Done, FilmStrip, Scrubber
from ul_engine.core.protocol import Trajectory


def _row(*pairs: tuple[str, QWidget]) -> QHBoxLayout:
    row = QHBoxLayout()
    for label, widget in pairs:
        row.addWidget(QLabel(label))
        row.addWidget(widget)
    return row


class InterpolateTab(QWidget):
    def __init__(self, decode: DecodeFn, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        self.mode = QComboBox()
        self.mode.addItem("slerp (spherical)", "slerp")
        self.mode.addItem("lerp (straight line)", "lerp")
        self.mode.setToolTip("slerp keeps the latent's norm along the way; lerp's midpoints shrink towards zero.")
        self.strip_frames = QSpinBox()
        self.strip_frames.setRange(2, 32)
        self.strip_frames.setValue(8)
        self.strip_frames.setToolTip("Frames in the film strip (full decodes from A to B).")
        row = _row(("Path", self.mode), ("Film strip frames", self.strip_frames))
        row.addStretch(1)
        layout.addLayout(row)
        self.scrub = Scrubber(
            decode,
            positions=model.INTERP_POSITIONS,
            value_of=lambda p: p / model.INTERP_POSITIONS,
            label_of=lambda t: f"A {1 - t:.0%} · B {t:.0%}",
            placeholder="Open two images, A and B, to interpolate between their latents.",
        )
        self.scrub.slider.setToolTip("Drag from A (left) to B (right); the decode follows.")
        layout.addWidget(self.scrub, 1)
        self.strip = FilmStrip()
        self.strip.frame_clicked.connect(self._strip_clicked)
        layout.addWidget(self.strip)

    def _strip_clicked(self, index: int) -> None:
        n = max(2, len(self.strip.frames))
        self.scrub.slider.setValue(round(model.INTERP_POSITIONS * index / (n - 1)))


class NoiseTab(QWidget):
    def __init__(self, decode: DecodeFn, value_of: Callable[[int], float], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        self.denoiser = QComboBox()
        self.denoiser.addItem("the prior (stage 1)", "prior")
        self.denoiser.addItem("the base model (stage 2)", "base")
        self.denoiser.setToolTip("Which model denoises the latent from λ back to λ = 5 (the base model: stage-2 runs).")
        row = _row(("Denoise with", self.denoiser))
        row.addStretch(1)
        layout.addLayout(row)
        layout.addWidget(hint_label(
            "Left: the latent drowned in noise and re-imagined by the model. Right (λ = 5): the latent as it is. "
            "What survives at each λ is what the latent keeps at that rate."
        ))  # fmt: skip
        self.scrub = Scrubber(
            decode,
            positions=model.NOISE_POSITIONS,
            value_of=value_of,
            label_of=model.noise_label,
            placeholder="Open an image to push its latent into noise.",
        )
        self.scrub.slider.setValue(model.NOISE_POSITIONS)
        self.scrub.value_label.setToolTip(glossary.tip("noise_level"))
        self.scrub.slider.setToolTip("The log-SNR λ the latent is pushed to before the model denoises it back.")
        layout.addWidget(self.scrub, 1)
        self.denoiser.currentIndexChanged.connect(lambda _i: self.scrub.refresh())

    def set_stage(self, stage: int) -> None:
        """The base model denoises only for stage-2 runs."""
        items = cast(QStandardItemModel, self.denoiser.model())  # a plain QComboBox's model
        items.item(1).setEnabled(stage == 2)
        if stage != 2 and self.denoiser.currentIndex() == 1:
            self.denoiser.setCurrentIndex(0)


class ChannelTab(QWidget):
    def __init__(self, decode: DecodeFn, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        self.channel = QSpinBox()
        self.channel.setRange(0, 0)
        self.channel.setToolTip("The channel to edit (or click its tile on the left).")
        self.scale = QDoubleSpinBox()
        self.scale.setRange(-10.0, 10.0)
        self.scale.setSingleStep(0.1)
        self.scale.setValue(1.0)
        self.scale.setToolTip("Multiply the channel by this (0 removes it, −1 flips it).")
        row = _row(("Channel", self.channel), ("Scale", self.scale))
        row.addStretch(1)
        layout.addLayout(row)
        self.scrub = Scrubber(
            decode,
            positions=model.CHANNEL_POSITIONS,
            value_of=model.channel_offset,
            label_of=lambda v: f"offset {v:+.2f}",
            placeholder="Open an image to edit its latent's channels.",
        )
        self.scrub.slider.setValue(model.CHANNEL_POSITIONS // 2)
        self.scrub.slider.setToolTip("Add this offset to every position of the channel.")
        layout.addWidget(self.scrub, 1)
        self.scale.valueChanged.connect(lambda _v: self.scrub.refresh())


class TrajectoryTab(QWidget):
    """A stage-2 sample recorded step by step (`frames`: the worker's, each with its PNG), and a slider over them."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.frames: list[dict[str, Any]] = []
        self.params: dict[str, Any] = dict.fromkeys(model.TRAJECTORY_PARAMS)  # a sample's sampler, guidance, class
        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setToolTip("The sample's seed (as on the Generate page).")
        self.base_steps = QSpinBox()
        self.base_steps.setRange(1, 1024)
        self.base_steps.setValue(64)
        self.decoder_steps = QSpinBox()
        self.decoder_steps.setRange(1, 1024)
        self.decoder_steps.setValue(64)
        row = _row(("Seed", self.seed), ("Base steps", self.base_steps), ("Decoder steps", self.decoder_steps))
        self.record_button = QPushButton("Record trajectory")
        self.record_button.setToolTip(
            "Sample with the stage-2 run and keep the prediction of every step: first the base model's "
            "latent (decoded with the preview steps), then the decoder's image."
        )
        row.addWidget(self.record_button)
        row.addStretch(1)
        form.addRow(row)
        layout.addLayout(form)
        self.scrub = Scrubber(
            self._decode,
            positions=0,
            value_of=float,
            label_of=lambda value: model.trajectory_label(self.frames, value),
            placeholder="Choose a stage-2 run and record a sample's trajectory "
            "(or click a sample on the Generate page).",
        )
        layout.addWidget(self.scrub, 1)

    def configure(self, run: model.RunSettings) -> None:
        """A run was chosen: its steps, recording only for stage 2, and no trajectory yet."""
        self.base_steps.setValue(run.base_steps)
        self.decoder_steps.setValue(run.decoder_steps)
        self.record_button.setEnabled(run.stage == 2)
        self.frames = []
        self.scrub.slider.setRange(0, 0)
        self.scrub.clear()

    def apply(self, found: model.TrajectorySettings) -> None:
        """A sample's settings: the trajectory records that very sample."""
        if found.seed is not None and found.seed <= self.seed.maximum():
            self.seed.setValue(found.seed)
        if found.base_steps:
            self.base_steps.setValue(found.base_steps)
        if found.decoder_steps:
            self.decoder_steps.setValue(found.decoder_steps)
        self.params = dict(found.params)

    def request(self, preview_steps: int) -> dict[str, Any]:
        """What the recording asks the worker for (TraceSample's fields; a sample's own sampler, guidance and
        class, where it carries them)."""
        p = self.params
        return {"seed": self.seed.value(), "base_steps": self.base_steps.value(),
                "decoder_steps": self.decoder_steps.value(), "preview_steps": preview_steps,
                "sampler": p.get("sampler"), "guidance": p.get("guidance"), "class_label": p.get("class")}  # fmt: skip

    def recording(self) -> None:
        self.record_button.setEnabled(False)
        self.scrub.timing.setText("Recording…")

    def recorded(self, ok: bool, result: Trajectory | str) -> bool:
        """The worker's answer: the slider spans the frames, on the last (the sample)."""
        self.record_button.setEnabled(True)
        if not isinstance(result, Trajectory):
            self.scrub.timing.setText(f"Could not record: {result}")
            return False
        self.frames = result.frames
        slider = self.scrub.slider
        slider.blockSignals(True)
        slider.setRange(0, max(0, len(self.frames) - 1))
        slider.setValue(len(self.frames) - 1)
        slider.blockSignals(False)
        self.scrub.refresh()
        self.scrub.timing.setText(f"{len(self.frames)} frames in {result.seconds or 0.0:.1f} s")
        return True

    def _decode(self, value: float, preview: bool, done: Done) -> bool:
        i = int(value)
        if not 0 <= i < len(self.frames):
            return False
        done(True, {"image": self.frames[i]["image"]})  # recorded frames: no decode needed
        return True


class ScrubPanel(QWidget):
    """The right side: the decode settings, the four scrubber tabs and the export bar."""

    def __init__(self, interp: InterpolateTab, noise: NoiseTab, channel: ChannelTab, trajectory: TrajectoryTab,
                 parent: QWidget | None = None) -> None:  # fmt: skip
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 0, 0, 0)
        self.settings = DecodeSettings()
        layout.addWidget(self.settings)
        self.tabs = QTabWidget()
        for tab, name in ((interp, "Interpolate"), (noise, "Noise level"), (channel, "Channel"),
                          (trajectory, "Trajectory")):  # fmt: skip
            self.tabs.addTab(tab, name)
        layout.addWidget(self.tabs, 1)
        self.export = ExportBar()
        layout.addWidget(self.export)
