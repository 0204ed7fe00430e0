"""The Latents page's views: an image slot (A or B), the inspected latent (rate, maps, channel tiles), the decode
settings, the export bar, and the two sides of the page that hold them. They show what the page hands them; the
page sends the requests (through `app.models.latents_requests`). A slot reads its picture's size itself, off the GUI
thread, to say how the picture is fitted to the model."""

from __future__ import annotations

from pathlib import Path

import shiboken6
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QButtonGroup,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.models import latents as model
from app.widgets.latent_tiles import SEQUENTIAL_STOPS, ColorBar, LatentTiles, PixelImage
from app.workers.background import BackgroundTask, run_in_background


def dropped_files(event: QDropEvent) -> list[str]:
    return [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]


def hint_label(text: str = "") -> QLabel:
    label = QLabel(text)
    label.setObjectName("hint")
    label.setWordWrap(True)
    return label


class ImageSlot(QWidget):
    """Image A or B: the fitted input, its decode, an Open button, and what was done to fit the picture to the
    model (a visible line: a photo larger than the run's crop is seen by the encoder as one model-sized square)."""

    open_clicked = Signal()
    dropped = Signal(str)

    def __init__(self, name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAcceptDrops(True)
        layout = QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(3)
        self.title = QLabel(f"<b>{name}</b>")
        self.open_button = QPushButton("Open…")
        self.open_button.setToolTip(f"Choose image {name} (or drop an image file here).")
        self.open_button.clicked.connect(self.open_clicked)
        self.input = PixelImage(min_side=64, placeholder="drop an image")
        self.input.setToolTip(f"Image {name} as the encoder sees it (fitted to the run's resolution).")
        self.decoded = PixelImage(min_side=64)
        self.decoded.setToolTip(f"Image {name} decoded from its latent (full decoder steps).")
        self.caption = hint_label()
        self.fit_note = hint_label()
        self.fit_note.setObjectName("fitNote")
        self.fit_note.setToolTip("What the encoder gets from this picture: the run's square crop, not the whole photo.")
        self.fit_note.hide()
        self._probe: BackgroundTask[tuple[int, int] | None] | None = None
        layout.addWidget(self.title, 0, 0)
        layout.addWidget(self.open_button, 0, 1, Qt.AlignmentFlag.AlignRight)
        layout.addWidget(self.input, 1, 0)
        layout.addWidget(self.decoded, 1, 1)
        layout.addWidget(self.fit_note, 2, 0, 1, 2)
        layout.addWidget(self.caption, 3, 0, 1, 2)

    def probe(self, path: str, resolution: int, *, tiled: bool) -> None:
        """Read the picture's size off the GUI thread, then say how it is fitted to the run's `resolution`."""
        if self._probe is not None:
            self._probe.cancel()
        self._set_note("")

        def done(size: tuple[int, int] | None) -> None:
            if shiboken6.isValid(self):  # the page may have closed while the header was read
                self._probe = None
                self._set_note(model.fit_note(size, resolution, tiled=tiled))

        self._probe = run_in_background(lambda _task: model.source_size(path), done=done)

    def _set_note(self, text: str) -> None:
        self.fit_note.setText(text)
        self.fit_note.setVisible(bool(text))

    def show_result(self, path: str, result: model.Result | None, error: str = "") -> None:
        """The analysis of `path` (None: it failed with `error`)."""
        self.input.set_path(result["input"] if result else None)
        self.decoded.set_path(result["decoded"] if result else None)
        if result is None:
            self.caption.setText(f"{Path(path).name}: {error}")
            return
        self.caption.setText(model.caption(path, result))
        self.caption.setToolTip("\n".join([path, *result.get("notices", [])]))

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        files = dropped_files(event)
        if files:
            self.dropped.emit(files[0])
            event.acceptProposedAction()


class LatentView(QWidget):
    """The inspected latent: its rate, the rate per position, PCA → RGB, and one tile per channel."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.rate_label = QLabel("Rate: –")
        self.rate_label.setWordWrap(True)
        self.rate_label.setToolTip(
            "What the latent costs under the prior: its unweighted ELBO (bits), averaged over stratified "
            "noise levels. Per pixel divides by the image's pixels, per dim by the latent's numbers."
        )
        layout.addWidget(self.rate_label)
        maps = QGridLayout()
        self.rate_view = PixelImage(min_side=96)
        self.rate_view.setToolTip("Bits per latent position: the prior's ELBO terms summed over the channels.")
        self.pca_view = PixelImage(min_side=96)
        self.pca_view.setToolTip("The latent's three main directions (PCA over positions) as red, green and blue.")
        maps.addWidget(QLabel("Rate per position"), 0, 0)
        maps.addWidget(QLabel("PCA → RGB"), 0, 1)
        maps.addWidget(self.rate_view, 1, 0)
        maps.addWidget(self.pca_view, 1, 1)
        self.rate_bar = ColorBar(SEQUENTIAL_STOPS)
        self.rate_bar.setToolTip("Bits per position: dark is cheap, bright is expensive.")
        maps.addWidget(self.rate_bar, 2, 0)
        layout.addLayout(maps, 1)
        layout.addWidget(QLabel("Channels (one shared colour scale)"))
        self.tiles = LatentTiles()
        layout.addWidget(self.tiles)

    def show_result(self, result: model.Result | None) -> None:
        self.rate_label.setText(model.rate_text(result))
        if not result:
            self.rate_view.set_path(None)
            self.pca_view.set_path(None)
            self.tiles.set_latent([], [], 1.0)
            return
        self.rate_view.set_path(result["rate_map"])
        self.rate_bar.set_range("0", f"{model.rate_max_bits(result):.1f} bits")
        self.pca_view.set_path(result["pca"])
        self.tiles.set_latent(result["tiles"], result["stats"], result["scale"])


class DecodeSettings(QWidget):
    """Decoder steps while dragging and after letting go, and the seed every frame shares."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        self.preview_steps = QSpinBox()
        self.preview_steps.setRange(1, 64)
        self.preview_steps.setValue(4)
        self.preview_steps.setToolTip("Decoder steps of the previews while a slider moves (fewer is faster).")
        self.full_steps = QSpinBox()
        self.full_steps.setRange(1, 4096)
        self.full_steps.setValue(64)
        self.full_steps.setToolTip("Decoder steps of the decode when you let go of a slider, and of exports.")
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setToolTip("Seed of the fixed noise every frame shares (z0's noise and the decoder's).")
        for label, w in (("Preview steps", self.preview_steps), ("Full steps", self.full_steps), ("Seed", self.seed)):
            row.addWidget(QLabel(label))
            row.addWidget(w)
        row.addStretch(1)


class ExportBar(QWidget):
    """Frames and fps of an export, its button, and a bar that counts decoded frames, then says it writes."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        self.frames = QSpinBox()
        self.frames.setRange(2, 600)
        self.frames.setValue(24)
        self.frames.setToolTip("Frames of the exported video, evenly spread over the slider's range.")
        self.fps = QSpinBox()
        self.fps.setRange(1, 60)
        self.fps.setValue(12)
        self.button = QPushButton("Export MP4 + GIF…")
        self.button.setToolTip("Decode the current scrub in full and save it as an MP4 and a GIF.")
        self.status = hint_label()
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(160)
        self.progress.setToolTip("Frames decoded out of the frames asked for, then writing the files.")
        self.progress.hide()
        row.addWidget(QLabel("Frames"))
        row.addWidget(self.frames)
        row.addWidget(QLabel("fps"))
        row.addWidget(self.fps)
        row.addWidget(self.button)
        row.addWidget(self.progress)
        row.addWidget(self.status, 1)
        self.steps: list[tuple[int, int, str]] = []  # every progress step shown (tests)

    def step(self, done: int, total: int, text: str) -> None:
        self.progress.show()
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)
        self.progress.setFormat(f"{done} / {total}")
        self.status.setText(text)
        self.steps.append((done, total, text))

    def writing(self, n: int, text: str) -> None:
        self.step(n, n, text)
        self.progress.setRange(0, 0)  # busy: the encoder reports no steps

    def finish(self, text: str | None = None) -> None:
        self.button.setEnabled(True)
        self.progress.hide()
        if text is not None:
            self.status.setText(text)


class InspectPanel(QScrollArea):
    """The left side: images A and B, which one's latent is shown, and that latent."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        panel = QWidget()
        layout = QVBoxLayout(panel)
        layout.setContentsMargins(0, 0, 8, 0)
        row = QHBoxLayout()
        self.slots: dict[str, ImageSlot] = {}
        for slot in model.SLOTS:
            self.slots[slot] = w = ImageSlot(slot.upper())
            w.setMinimumHeight(150)
            row.addWidget(w)
        layout.addLayout(row)
        pick = QHBoxLayout()
        pick.addWidget(QLabel("Show the latent of"))
        self.group = QButtonGroup(self)
        self.buttons: dict[str, QPushButton] = {}
        for slot in model.SLOTS:
            self.buttons[slot] = b = QPushButton(slot.upper())
            b.setCheckable(True)
            b.setMaximumWidth(44)
            b.setToolTip(f"Show image {slot.upper()}'s latent; the noise-level and channel scrubbers use it too.")
            self.group.addButton(b)
            pick.addWidget(b)
        self.buttons["a"].setChecked(True)
        pick.addStretch(1)
        layout.addLayout(pick)
        self.latent = LatentView()
        layout.addWidget(self.latent, 1)
        self.setWidgetResizable(True)
        self.setWidget(panel)
        self.setMinimumWidth(360)
