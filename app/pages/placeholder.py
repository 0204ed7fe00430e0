"""A page that says what will be there (Reconstruct, Latents and Generate arrive in later issues)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

PLANNED = {
    "reconstruct": (
        "Reconstruct",
        "Drop images here to encode them into a run's latent and decode them back.",
        [
            "Side-by-side, swipe and difference views of input and reconstruction",
            "PSNR, SSIM and the bits the latent costs, per image",
            "Decoder steps and sampler, with results cached per checkpoint",
        ],
    ),
    "latents": (
        "Latents",
        "Look inside a run's latent space.",
        [
            "Latent channels as images, with their statistics",
            "Scrub the noise level of the latent and watch the decoder's output change",
            "Interpolate between two images in latent space",
        ],
    ),
    "generate": (
        "Generate",
        "Sample new images with a stage-2 run.",
        [
            "An image grid with seeds, classes and guidance",
            "Videos of the sampling trajectory, with a player",
            "Export images and videos",
        ],
    ),
}


class PlaceholderPage(QWidget):
    def __init__(self, page_id: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        title, summary, items = PLANNED[page_id]
        layout = QVBoxLayout(self)
        layout.setContentsMargins(32, 28, 32, 28)
        heading = QLabel(title)
        heading.setObjectName("pageTitle")
        layout.addWidget(heading)
        intro = QLabel(summary)
        intro.setWordWrap(True)
        font = intro.font()
        font.setPointSizeF(font.pointSizeF() * 1.15)
        intro.setFont(font)
        layout.addWidget(intro)
        bullets = "".join(f"<li>{item}</li>" for item in items)
        body = QLabel(f"<p>Coming in a later version of UL Studio:</p><ul>{bullets}</ul>")
        body.setObjectName("hint")
        body.setWordWrap(True)
        body.setTextFormat(Qt.TextFormat.RichText)
        layout.addWidget(body)
        layout.addStretch(1)
