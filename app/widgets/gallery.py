"""The Generate page's gallery: a grid of samples that fills as they finish; click one to open it."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QApplication, QListView, QListWidget, QListWidgetItem, QWidget

from app.widgets.latent_tiles import load_qimage

PATH_ROLE = Qt.ItemDataRole.UserRole
SEED_ROLE = Qt.ItemDataRole.UserRole + 1


class Gallery(QListWidget):
    """Samples as enlarged thumbnails (crisp pixels), captioned with their seed."""

    sample_clicked = Signal(str)  # the PNG's path

    def __init__(self, parent: QWidget | None = None, thumb: int = 128) -> None:
        super().__init__(parent)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setUniformItemSizes(True)
        self.setSpacing(6)
        self.set_thumb_size(thumb)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setToolTip("Generated samples; click one to open it in Latents, Ctrl/Shift-click to select, "
                        "right-click to save.")  # fmt: skip
        self.itemClicked.connect(self._on_click)

    def _on_click(self, item: QListWidgetItem) -> None:
        """A plain click opens the sample; with Ctrl or Shift it only changes the selection."""
        mods = QApplication.keyboardModifiers()
        if mods & (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier):
            return
        self.sample_clicked.emit(str(item.data(PATH_ROLE)))

    def set_thumb_size(self, side: int) -> None:
        self.thumb = side
        self.setIconSize(QSize(side, side))
        self.setGridSize(QSize(side + 16, side + 30))

    def add_sample(self, path: str, seed: int | None = None, cls: int | None = None) -> QListWidgetItem:
        image = load_qimage(path)
        if not image.isNull():
            factor = max(1, self.thumb // max(image.width(), image.height()))
            image = image.scaled(
                image.width() * factor,
                image.height() * factor,
                Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.FastTransformation,
            )
        caption = f"seed {seed}" if seed is not None else ""
        if cls is not None:  # a class-conditional sample: which class it was drawn for
            caption = f"{caption} · class {cls}" if caption else f"class {cls}"
        item = QListWidgetItem(QIcon(QPixmap.fromImage(image)), caption)
        item.setData(PATH_ROLE, path)
        item.setData(SEED_ROLE, seed)
        item.setToolTip(f"{path}\nClick to open in Latents; right-click to save.")
        self.addItem(item)
        return item

    def paths(self) -> list[str]:
        return [str(self.item(i).data(PATH_ROLE)) for i in range(self.count())]

    def selected_paths(self) -> list[str]:
        """The selected samples, in gallery order."""
        return [str(self.item(i).data(PATH_ROLE)) for i in range(self.count()) if self.item(i).isSelected()]
