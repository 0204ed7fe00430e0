"""The first-launch welcome on the Runs page: what UL is, and three ways to start.

Shown while the user has no runs of their own (the shipped demo run does not count), so a new user never
meets an empty table. The panel only says what was asked for; the Runs page and the main window do it.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ul_engine.core.config import load_preset
from ul_engine.core.demo import is_shipped

ABOUT = (
    "<b>Unified Latents</b> (UL) trains an encoder, a diffusion prior and a diffusion decoder together, so every "
    "image gets a latent whose cost in bits the prior measures exactly. A second-stage base model then learns "
    "to generate those latents, and the decoder turns them into new images."
)


# The shapes-32 preset's stage-1 duration as its description states it (tests/app/test_first_run.py checks they agree).
SHAPES_START = "Train on shapes (about 16 minutes on 2 CPU cores)"


def own_runs(rows: list[Any]) -> list[Any]:
    """The user's runs: every run except the models that came with UL Studio."""
    return [r for r in rows if not is_shipped(r.info)]


def demo_run(rows: list[Any]) -> Any:
    """The shipped demo run's row, if registered."""
    return next((r for r in rows if is_shipped(r.info)), None)


class WelcomePanel(QFrame):
    reconstruct_demo = Signal(int)  # the demo run's id
    train_shapes = Signal()
    train_folder = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("card")
        self._demo_id: int | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 12, 16, 12)
        title = QLabel("Welcome to UL Studio")
        title.setObjectName("pageTitle")
        layout.addWidget(title)
        about = QLabel(ABOUT)
        about.setWordWrap(True)
        layout.addWidget(about)
        buttons = QHBoxLayout()
        self.reconstruct_button = QPushButton("Reconstruct a photo")
        self.reconstruct_button.setObjectName("welcome:reconstruct")
        self.shapes_button = QPushButton(SHAPES_START)
        self.shapes_button.setObjectName("welcome:shapes")
        self.shapes_button.setToolTip(
            "A new run with the shapes-32 preset. " + str(load_preset("shapes-32").get("description", ""))
        )
        self.folder_button = QPushButton("Train on my folder…")
        self.folder_button.setObjectName("welcome:folder")
        self.folder_button.setToolTip("Choose a folder of your images; a folder-64 run trains on it.")
        for b in (self.reconstruct_button, self.shapes_button, self.folder_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        layout.addLayout(buttons)
        self.hint = QLabel()
        self.hint.setObjectName("hint")
        self.hint.setWordWrap(True)
        layout.addWidget(self.hint)
        self.reconstruct_button.clicked.connect(self._on_reconstruct)
        self.shapes_button.clicked.connect(self.train_shapes)
        self.folder_button.clicked.connect(self.train_folder)
        self.set_demo(None)

    def set_demo(self, run_id: int | None) -> None:
        """Enable "Reconstruct a photo" when the demo model is there (it needs a model to reconstruct with)."""
        self._demo_id = run_id
        self.reconstruct_button.setEnabled(run_id is not None)
        if run_id is not None:
            self.reconstruct_button.setToolTip("Open Reconstruct with the demo model; drop any photo there.")
            self.hint.setText(
                "The demo model was trained on 64×64 crops of a few public-domain photos; it is the run "
                "'demo' on every page and in the CLI (ul reconstruct --run demo photo.jpg)."
            )
        else:
            self.reconstruct_button.setToolTip("The demo model is not installed (resources/models/demo/).")
            self.hint.setText("The demo model is not installed; train a run to reconstruct your photos.")

    def _on_reconstruct(self) -> None:
        if self._demo_id is not None:
            self.reconstruct_demo.emit(self._demo_id)
