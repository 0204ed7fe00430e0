"""Pixel images (tiny latents and decodes enlarged with crisp square pixels) and the Latents page's channel
tiles: every channel of a latent on one shared colour scale, with a colour bar and per-channel statistics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QLinearGradient, QMouseEvent, QPainter, QPaintEvent
from PySide6.QtWidgets import QGridLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

# The engine's diverging ramp (ul_engine.inference.latents._DIVERGING), for the colour bar: −scale … 0 … +scale.
DIVERGING_STOPS = ((5, 48, 97), (67, 147, 195), (247, 247, 247), (214, 96, 77), (103, 0, 31))
SEQUENTIAL_STOPS = ((0, 0, 4), (59, 15, 112), (140, 41, 129), (222, 73, 104), (254, 159, 109), (252, 253, 191))


def load_qimage(path: str | Path | None) -> QImage:
    """An image file read afresh (never from a pixmap cache: frames are rewritten while scrubbing)."""
    if not path:
        return QImage()
    try:
        data = Path(path).read_bytes()
    except OSError:
        return QImage()
    image = QImage()
    image.loadFromData(data)
    return image


class PixelImage(QWidget):
    """Shows an image as large as fits, keeping its aspect, enlarged with nearest-neighbour sampling."""

    clicked = Signal()

    def __init__(self, parent: QWidget | None = None, *, min_side: int = 48, placeholder: str = "") -> None:
        super().__init__(parent)
        self._image = QImage()
        self.path: str | None = None
        self.placeholder = placeholder
        self._min_side = min_side
        self.setMinimumSize(min_side, min_side)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.selected = False

    def set_path(self, path: str | Path | None) -> None:
        self.path = str(path) if path else None
        self.set_qimage(load_qimage(path))

    def set_qimage(self, image: QImage) -> None:
        self._image = image
        self.update()

    def image(self) -> QImage:
        return self._image

    def has_image(self) -> bool:
        return not self._image.isNull()

    def sizeHint(self) -> QSize:
        return QSize(max(self._min_side, 128), max(self._min_side, 128))

    def target_rect(self) -> QRect:
        if self._image.isNull():
            return QRect()
        w, h = self._image.width(), self._image.height()
        avail = self.rect().adjusted(1, 1, -1, -1)
        scale = min(avail.width() / w, avail.height() / h)
        if scale >= 1:
            scale = max(1, int(scale))  # whole multiples keep every latent pixel the same size
        tw, th = max(1, int(w * scale)), max(1, int(h * scale))
        return QRect(avail.x() + (avail.width() - tw) // 2, avail.y() + (avail.height() - th) // 2, tw, th)

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        if self._image.isNull():
            if self.placeholder:
                p.setPen(self.palette().placeholderText().color())
                p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self.placeholder)
            p.end()
            return
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
        rect = self.target_rect()
        p.drawImage(rect, self._image)
        if self.selected:
            p.setPen(self.palette().highlight().color())
            p.drawRect(rect.adjusted(-1, -1, 0, 0))
        p.end()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self.clicked.emit()
        super().mousePressEvent(event)


class ColorBar(QWidget):
    """A horizontal colour ramp with its end values: what a tile's colour means."""

    def __init__(self, stops: tuple[tuple[int, int, int], ...] = DIVERGING_STOPS, parent: QWidget | None = None):
        super().__init__(parent)
        self.stops = stops
        self.low, self.high, self.middle = "", "", ""
        self.setMinimumHeight(30)
        self.setMaximumHeight(34)

    def set_range(self, low: str, high: str, middle: str = "") -> None:
        self.low, self.high, self.middle = low, high, middle
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        bar = QRect(4, 2, self.width() - 8, 12)
        gradient = QLinearGradient(bar.left(), 0, bar.right(), 0)
        for i, rgb in enumerate(self.stops):
            gradient.setColorAt(i / (len(self.stops) - 1), QColor(*rgb))
        p.fillRect(bar, gradient)
        p.setPen(self.palette().windowText().color())
        text = QRect(4, 15, self.width() - 8, self.height() - 15)
        p.drawText(text, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop, self.low)
        p.drawText(text, Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop, self.middle)
        p.drawText(text, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop, self.high)
        p.end()


class LatentTiles(QWidget):
    """Every channel of a latent as a tile on one shared diverging scale; click a tile to pick its channel."""

    channel_clicked = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.grid_host = QWidget()
        self.grid = QGridLayout(self.grid_host)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setSpacing(4)
        layout.addWidget(self.grid_host, 1)
        self.colorbar = ColorBar()
        self.colorbar.setToolTip("The shared colour scale: blue is negative, white zero, red positive.")
        layout.addWidget(self.colorbar)
        self.tiles: list[PixelImage] = []
        self.captions: list[QLabel] = []
        self.empty = QLabel("No latent yet")
        self.empty.setObjectName("hint")
        self.grid.addWidget(self.empty, 0, 0)

    def clear(self) -> None:
        while self.grid.count():
            item = self.grid.takeAt(0)
            w = item.widget() if item is not None else None
            if w is not None and w is not self.empty:
                w.deleteLater()
        self.tiles, self.captions = [], []

    def set_latent(self, tiles: list[str], stats: list[dict[str, Any]], scale: float) -> None:
        self.clear()
        n = len(tiles)
        cols = n if n <= 4 else min(8, max(4, round(n**0.5 + 0.49)))
        side = 88 if n <= 4 else 64 if n <= 16 else 40
        for i, (path, st) in enumerate(zip(tiles, stats, strict=False)):
            tile = PixelImage(min_side=side)
            tile.setFixedSize(side, side)
            tile.set_path(path)
            tip = (
                f"Channel {i}: mean {st['mean']:+.3f}, std {st['std']:.3f}, "
                f"min {st['min']:+.3f}, max {st['max']:+.3f}\nClick to edit this channel."
            )
            tile.setToolTip(tip)
            tile.clicked.connect(lambda i=i: self.channel_clicked.emit(i))
            caption = QLabel(f"c{i}  σ {st['std']:.2f}")
            caption.setObjectName("hint")
            caption.setAlignment(Qt.AlignmentFlag.AlignHCenter)
            caption.setToolTip(tip)
            r, c = divmod(i, cols)
            self.grid.addWidget(tile, 2 * r, c)
            self.grid.addWidget(caption, 2 * r + 1, c)
            self.tiles.append(tile)
            self.captions.append(caption)
        self.empty.setVisible(n == 0)
        if n == 0:
            self.grid.addWidget(self.empty, 0, 0)
        rows = 2 * ((n + cols - 1) // cols) if n else 1
        for r in range(rows + 1):
            self.grid.setRowStretch(r, 1 if r == rows else 0)
        for c in range(cols + 1):
            self.grid.setColumnStretch(c, 1 if c == cols else 0)
        self.colorbar.set_range(f"−{scale:.2f}", f"+{scale:.2f}", "0")

    def set_selected(self, channel: int) -> None:
        for i, tile in enumerate(self.tiles):
            tile.selected = i == channel
            tile.update()
