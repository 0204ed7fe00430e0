"""The Generate page's form: how many samples, the first seed, the steps, the sampler, the guidance and the class,
which checkpoint, what size the samples are, and the Generate / Cancel / Save… buttons; and the gallery's menu."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from PySide6.QtCore import QPoint
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QMenu,
    QPushButton,
    QSpinBox,
    QWidget,
)

from app import glossary
from app.models.generate import RunForm, sampler_choices
from app.widgets.gallery import Gallery
from ul_engine.core.sample_settings import RANDOM_CLASS

IMAGE_HINT = (
    "Samples are kept in the data folder under samples/<run name>/, each PNG with its run, checkpoint, seed and "
    "settings; Save… (or right-click a sample) copies them where you want. Drop one here to restore its "
    "settings; click one to open it in Latents (Ctrl/Shift-click selects)."
)
VIDEO_HINT = (
    "A video run: clips are kept as MP4s in the data folder under samples/<run name>/. Drop a video here to "
    "continue it from its first k frames; each player exports its clip as MP4 or GIF."
)


def _hint(text: str) -> QLabel:
    label = QLabel(text)
    label.setObjectName("hint")
    label.setWordWrap(True)
    return label


class GenerateForm(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMaximumWidth(340)
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 12, 0)
        self._fields()
        for label, widget in (("Samples", self.n), ("Seed", self.seed), ("Base steps", self.base_steps),
                              ("Decoder steps", self.decoder_steps), ("Sampler", self.sampler),
                              ("Guidance", self.guidance), ("Class", self.class_combo)):  # fmt: skip
            form.addRow(label, widget)
        self.checkpoint_label = _hint("checkpoint: latest")
        form.addRow(self.checkpoint_label)
        self.size_label = _hint("")
        self.size_label.setObjectName("sampleSize")
        self.size_label.setToolTip("The base model generates latents of the run's size; the decoder turns each into "
                                   "an image of the size the run was trained at.")  # fmt: skip
        form.addRow(self.size_label)
        form.addRow(self._buttons())
        self.hint = _hint(IMAGE_HINT)
        form.addRow(self.hint)

    def _fields(self) -> None:
        self.n = QSpinBox()
        self.n.setRange(1, 1024)
        self.n.setValue(8)
        self.n.setToolTip("How many samples to draw (seeds seed, seed + 1, …).")
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setToolTip("The first sample's seed: the same seed and settings give the same image.")
        self.base_steps = QSpinBox()
        self.base_steps.setRange(1, 4096)
        self.base_steps.setToolTip("Sampling steps of the base model (noise → latent).")
        self.decoder_steps = QSpinBox()
        self.decoder_steps.setRange(1, 4096)
        self.decoder_steps.setToolTip("Sampling steps of the decoder (noise → image, given the latent).")
        self.sampler = QComboBox()
        choices = sampler_choices()
        for label, name in choices:
            self.sampler.addItem(label, name)
        self.sampler.setToolTip("Used by both the base model and the decoder. " + glossary.tip("sampler"))
        glossary.tip_items(self.sampler, [name for _label, name in choices])
        self.guidance = QDoubleSpinBox()
        self.guidance.setRange(0.0, 50.0)
        self.guidance.setSingleStep(0.5)
        self.guidance.setValue(1.0)
        self.guidance.setToolTip("Classifier-free guidance scale (1: none; class-conditional runs only).")
        self.class_combo = QComboBox()
        self.class_combo.setToolTip(
            "The class to sample (class-conditional runs only): one class, a class drawn per sample from its seed, "
            "or none (the null label)."
        )

    def _buttons(self) -> QHBoxLayout:
        buttons = QHBoxLayout()
        self.generate_button = QPushButton("Generate")
        self.generate_button.setToolTip("Draw the samples (Ctrl+Return).")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop after the current sampler step (Esc).")
        self.cancel_button.setEnabled(False)
        self.save_button = QPushButton("Save…")
        self.save_button.setToolTip("Save the selected samples (or all) as PNGs with their settings embedded.")
        self.save_menu = QMenu(self.save_button)
        self.act_save_selected = self.save_menu.addAction("Save selected…")
        self.act_save_all = self.save_menu.addAction("Save all…")
        self.save_button.setMenu(self.save_menu)
        self.save_button.setEnabled(False)
        for b in (self.generate_button, self.cancel_button, self.save_button):
            buttons.addWidget(b)
        return buttons

    def apply_run(self, form: RunForm, size_note: str) -> None:
        """A run was chosen: its sampling settings, its classes, and whether it is a video run."""
        self.checkpoint_label.setText("checkpoint: latest")
        self.base_steps.setValue(form.base_steps)
        self.decoder_steps.setValue(form.decoder_steps)
        self.sampler.setCurrentIndex(max(0, self.sampler.findData(form.sampler)))
        self.guidance.setValue(form.guidance)
        self.class_combo.clear()
        self.class_combo.addItem("none (unconditional)", None)
        if form.classes > 0:
            # The default for a class-conditional run: its null label alone draws blurrier, rounder samples
            # (docs/benchmarks.md "Longer still"); each sample's PNG records the class it got.
            self.class_combo.addItem("random (one per sample)", RANDOM_CLASS)
            self.class_combo.setCurrentIndex(1)
        for k in range(form.classes):
            self.class_combo.addItem(f"class {k}", k)
        self.class_combo.setEnabled(form.classes > 0)
        self.guidance.setEnabled(form.classes > 0)
        self.sampler.setEnabled(not form.video)
        self.hint.setText(VIDEO_HINT if form.video else IMAGE_HINT)
        self.size_label.setText(size_note)
        self.size_label.setVisible(bool(size_note))

    def apply_params(self, seed: int, params: dict[str, Any]) -> None:
        """A sample's settings (n becomes 1, so Generate redraws that very image)."""
        self.n.setValue(1)
        self.seed.setValue(seed)
        if params.get("base_steps"):
            self.base_steps.setValue(int(params["base_steps"]))
        if params.get("decoder_steps"):
            self.decoder_steps.setValue(int(params["decoder_steps"]))
        if params.get("sampler"):
            self.sampler.setCurrentIndex(max(0, self.sampler.findData(params["sampler"])))
        if params.get("guidance") is not None:
            self.guidance.setValue(float(params["guidance"]))
        cls = params.get("class")
        self.class_combo.setCurrentIndex(max(0, self.class_combo.findData(cls)) if cls is not None else 0)

    def values(self) -> dict[str, Any]:
        """The seeds and the `ul-params` keys."""
        return {
            "n": self.n.value(),
            "seed": self.seed.value(),
            "base_steps": self.base_steps.value(),
            "decoder_steps": self.decoder_steps.value(),
            "sampler": self.sampler.currentData(),
            "guidance": self.guidance.value(),
            "class": self.class_combo.currentData(),
        }


def gallery_menu(
    parent: QWidget,
    gallery: Gallery,
    pos: QPoint,
    save_selected: Callable[[], object],
    save_all: Callable[[], object],
    open_sample: Callable[[str], None],
) -> QMenu | None:
    """The gallery's right-click menu at `pos`: save this / the selected / all samples, open one in Latents.
    A right-click on an unselected sample selects it alone (it is the one meant)."""
    item = gallery.itemAt(pos)
    if item is not None and not item.isSelected():
        gallery.clearSelection()
        item.setSelected(True)
    paths = gallery.paths()
    if not paths:
        return None
    menu = QMenu(parent)
    selected = gallery.selected_paths()
    if len(selected) == 1:
        menu.addAction("Save this sample…", save_selected)
    elif selected:
        menu.addAction(f"Save {len(selected)} selected…", save_selected)
    menu.addAction(f"Save all ({len(paths)})…", save_all)
    if selected:
        menu.addSeparator()
        menu.addAction("Open in Latents", partial(open_sample, selected[0]))
    menu.popup(gallery.viewport().mapToGlobal(pos))
    return menu
