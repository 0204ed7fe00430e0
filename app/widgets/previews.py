"""The Monitor's previews: the images of the shown preview as thumbnails (≥ 96 px, wrapped to the width), a
slider back through the run's earlier previews, a caption, and one image at full size on a click (input and
reconstruction side by side with their difference for stage 1). Cutting and captions: `app.models.previews`."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from app.models.previews import PreviewImage, preview_caption, preview_title, split_preview, stacked, thumb_fit
from app.widgets.image_views import HeatmapView, SideBySide, ZoomView, array_from_qimage, qimage_from_array
from ul_engine.core.reconstruction import abs_difference
from ul_engine.store import ArtifactInfo


class PreviewThumb(QLabel):
    """One preview image (stage 1: its input above its reconstruction), enlarged in whole pixels; a click
    opens it at full size."""

    clicked = Signal(int)

    def __init__(self, index: int, item: PreviewImage, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.index = index
        image = stacked(item)
        k = thumb_fit(item.image.shape[0], image.shape[1])
        qimage = qimage_from_array(image)
        size = QSize(round(image.shape[1] * k), round(image.shape[0] * k))
        mode = Qt.TransformationMode.FastTransformation if k >= 1 else Qt.TransformationMode.SmoothTransformation
        self.setPixmap(QPixmap.fromImage(qimage.scaled(size, Qt.AspectRatioMode.KeepAspectRatio, mode)))
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setToolTip("Click to open at full size" + (" with its input and the difference" if item.input is not None
                                                         else ""))  # fmt: skip
        self.setFrameShape(QFrame.Shape.StyledPanel)

    def mouseReleaseEvent(self, event: Any) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self.clicked.emit(self.index)
        super().mouseReleaseEvent(event)


class PreviewDialog(QDialog):
    """A preview image at full size: input and reconstruction side by side in linked zoom views and their
    per-pixel difference as a heatmap (the Reconstruct page's views); a sample on its own."""

    def __init__(self, item: PreviewImage, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.resize(900, 560 if item.input is not None else 520)
        layout = QVBoxLayout(self)
        self.side: SideBySide | None = None
        self.heatmap: HeatmapView | None = None
        self.view: ZoomView | None = None
        if item.input is not None:
            row = QHBoxLayout()
            self.side = SideBySide()
            self.side.set_images(qimage_from_array(item.input), "Input", qimage_from_array(item.image),
                                 "Reconstruction")  # fmt: skip
            row.addWidget(self.side, 2)
            self.heatmap = HeatmapView()
            diff = abs_difference(item.input, item.image)
            self.heatmap.set_data(diff, f"|input − reconstruction| per pixel, mean {diff.mean():.2f} levels", "levels")
            row.addWidget(self.heatmap, 1)
            layout.addLayout(row, 1)
        else:
            self.view = ZoomView()
            self.view.set_image(qimage_from_array(item.image))
            layout.addWidget(self.view, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)


class PreviewStrip(QScrollArea):
    """The images of one preview as thumbnails (≥ 96 px each), wrapped into rows that fit the width."""

    opened = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setMinimumSize(160, 120)
        self.host = QWidget()
        self.grid = QGridLayout(self.host)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setSpacing(4)
        self.setWidget(self.host)
        self.placeholder = QLabel("No preview yet: the worker writes one at each checkpoint, or press Sample now.")
        self.placeholder.setWordWrap(True)
        self.placeholder.setObjectName("hint")
        self.thumbs: list[PreviewThumb] = []
        self.items: list[PreviewImage] = []
        self._columns = 0
        self.set_items([])

    def set_items(self, items: list[PreviewImage]) -> None:
        self.items = items
        for thumb in self.thumbs:
            thumb.deleteLater()
        self.thumbs = []
        for i, item in enumerate(items):
            thumb = PreviewThumb(i, item)
            thumb.clicked.connect(self.opened)
            self.thumbs.append(thumb)
        self._columns = 0
        self._arrange()
        QTimer.singleShot(0, self._rearrange)  # once laid out, the width is known

    def _rearrange(self) -> None:
        if self.thumbs and self._columns_for_width() != self._columns:
            self._arrange()

    def _columns_for_width(self) -> int:
        width = max(t.pixmap().width() for t in self.thumbs) + self.grid.spacing() + 4
        return max(1, (self.viewport().width() - 4) // width)

    def _arrange(self) -> None:
        while self.grid.count():
            self.grid.takeAt(0)
        if not self.thumbs:
            self.grid.addWidget(self.placeholder, 0, 0)
            self.placeholder.show()
            return
        self.placeholder.hide()
        self._columns = self._columns_for_width()
        for i, thumb in enumerate(self.thumbs):
            self.grid.addWidget(thumb, i // self._columns, i % self._columns, Qt.AlignmentFlag.AlignLeft)
        self.grid.setRowStretch(len(self.thumbs) // self._columns + 1, 1)

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        self._rearrange()

    def sizeHint(self) -> QSize:
        return QSize(320, 240)


class PreviewPanel(QGroupBox):
    """The strip, the slider through the run's previews and the caption; remembers the shown run's previews."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Previews", parent)
        self.setToolTip("The worker's images of a fixed validation batch, comparable from step to step.")
        layout = QVBoxLayout(self)
        self.strip = PreviewStrip()
        self.strip.setObjectName("previewImages")
        self.strip.opened.connect(self.open)
        layout.addWidget(self.strip, 1)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setObjectName("previewSlider")
        self.slider.setToolTip("Go back through earlier previews.")
        self.slider.setRange(0, 0)
        self.slider.valueChanged.connect(self.show_index)
        layout.addWidget(self.slider)
        self.caption = QLabel("")
        self.caption.setObjectName("hint")
        self.caption.setWordWrap(True)
        layout.addWidget(self.caption)
        self.artifacts: list[ArtifactInfo] = []
        self.stage = 1
        self.dialog: PreviewDialog | None = None

    def reset(self) -> None:
        """Another run is shown: its previews start at the newest."""
        self.artifacts = []
        self.slider.setRange(0, 0)

    def clear(self) -> None:
        self.artifacts = []
        self.strip.set_items([])
        self.caption.setText("")

    def set_artifacts(self, artifacts: list[ArtifactInfo], stage: int) -> None:
        """The run's previews, oldest first; the slider stays on the newest when it was there."""
        self.stage = stage
        if [p.id for p in artifacts] == [p.id for p in self.artifacts]:
            return
        at_end = self.slider.value() >= len(self.artifacts) - 1
        self.artifacts = artifacts
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(0, len(artifacts) - 1))
        if at_end or self.slider.value() >= len(artifacts):
            self.slider.setValue(max(0, len(artifacts) - 1))
        self.slider.blockSignals(False)
        self.slider.setEnabled(len(artifacts) > 1)
        self.show_index(self.slider.value())

    def show_index(self, index: int) -> None:
        if not self.artifacts:
            self.strip.set_items([])
            self.caption.setText("")
            return
        index = max(0, min(index, len(self.artifacts) - 1))
        art = self.artifacts[index]
        image = QImage(str(art.path))
        self.strip.set_items([] if image.isNull() else split_preview(array_from_qimage(image), art.params))
        self.caption.setText(preview_caption(art.step, index, len(self.artifacts), self.stage, len(self.strip.items)))

    def open(self, index: int) -> PreviewDialog | None:
        """One image of the shown preview at full size (with its input and the difference for stage 1)."""
        if not 0 <= index < len(self.strip.items):
            return None
        art = self.artifacts[max(0, min(self.slider.value(), len(self.artifacts) - 1))]
        if self.dialog is not None:
            self.dialog.close()
        dialog = PreviewDialog(self.strip.items[index], preview_title(art.step, index, len(self.strip.items)), self)
        dialog.finished.connect(lambda _code, d=dialog: self._forget_dialog(d))
        self.dialog = dialog
        dialog.show()
        return dialog

    def _forget_dialog(self, dialog: PreviewDialog) -> None:
        if self.dialog is dialog:
            self.dialog = None
        dialog.deleteLater()
