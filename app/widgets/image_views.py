"""Image views for comparing reconstructions: zoomable views kept in step (zoom and pan), an A/B view with a
draggable split line, and a heatmap with its colour bar (the colour map is the engine's, so the app's
heatmaps and the exported ones read the same)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPen,
    QPixmap,
    QResizeEvent,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QFrame,
    QGraphicsPixmapItem,
    QGraphicsScene,
    QGraphicsView,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from ul_engine.core.reconstruction import colormap, colormap_lut, heat_scale

MIN_ZOOM, MAX_ZOOM = 0.02, 64.0


def qimage_from_array(arr: np.ndarray) -> QImage:
    """(H, W, 3) uint8 → a QImage that owns its pixels."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    h, w = arr.shape[:2]
    return QImage(arr.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


def array_from_qimage(image: QImage) -> np.ndarray:
    """A QImage → (H, W, 3) uint8 (a copy)."""
    image = image.convertToFormat(QImage.Format.Format_RGB888)
    w, h, stride = image.width(), image.height(), image.bytesPerLine()
    buf = np.frombuffer(image.constBits(), dtype=np.uint8, count=stride * h).reshape(h, stride)
    return buf[:, : 3 * w].reshape(h, w, 3).copy()


def titled(title: QLabel, body: QWidget) -> QWidget:
    box = QWidget()
    layout = QVBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.setSpacing(2)
    layout.addWidget(title)
    layout.addWidget(body, 1)
    return box


class ZoomView(QGraphicsView):
    """One image: wheel zooms around the pointer, drag pans, double-click fits. Pixels stay crisp when
    enlarged (nearest neighbour), so a reconstruction's detail can be read pixel by pixel."""

    viewChanged = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.item = QGraphicsPixmapItem()
        self.scene().addItem(self.item)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setBackgroundBrush(QColor("#3a3a3a"))
        self.setMinimumSize(120, 120)
        self.setToolTip("Wheel: zoom · drag: pan · double-click: fit")
        self.fitted = True
        self.horizontalScrollBar().valueChanged.connect(self.viewChanged)
        self.verticalScrollBar().valueChanged.connect(self.viewChanged)

    def set_image(self, image: QImage | None) -> None:
        if image is None or image.isNull():
            self.item.setPixmap(QPixmap())
            self.scene().setSceneRect(QRectF())
            return
        same_size = self.item.pixmap().size() == image.size()
        self.item.setPixmap(QPixmap.fromImage(image))
        self.scene().setSceneRect(self.item.boundingRect())
        if self.fitted or not same_size:
            self.fit()

    def has_image(self) -> bool:
        return not self.item.pixmap().isNull()

    def zoom(self) -> float:
        return self.transform().m11()

    def fit(self) -> None:
        self.fitted = True
        if self.has_image():
            self.fitInView(self.item, Qt.AspectRatioMode.KeepAspectRatio)
        self._update_mode()
        self.viewChanged.emit()

    def zoom_by(self, factor: float) -> None:
        target = min(MAX_ZOOM, max(MIN_ZOOM, self.zoom() * factor))
        factor = target / max(self.zoom(), 1e-9)
        self.fitted = False
        self.scale(factor, factor)
        self._update_mode()
        self.viewChanged.emit()

    def _update_mode(self) -> None:
        smooth = self.zoom() < 1.0
        mode = Qt.TransformationMode.SmoothTransformation if smooth else Qt.TransformationMode.FastTransformation
        self.item.setTransformationMode(mode)

    def wheelEvent(self, event: QWheelEvent) -> None:
        steps = event.angleDelta().y() / 120.0
        if steps:
            self.zoom_by(1.25**steps)
        event.accept()

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        self.fit()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if self.fitted:
            self.fit()

    def center(self) -> QPointF:
        return self.mapToScene(self.viewport().rect().center())


class ViewSync:
    """Keeps views at the same zoom and looking at the same place (images of the same size)."""

    def __init__(self, views: Sequence[ZoomView]) -> None:
        self.views = list(views)
        self._busy = False
        for v in self.views:
            v.viewChanged.connect(lambda v=v: self.follow(v))

    def follow(self, source: ZoomView) -> None:
        if self._busy:
            return
        self._busy = True
        try:
            center = source.center()
            for v in self.views:
                if v is source:
                    continue
                v.fitted = source.fitted
                v.setTransform(source.transform())
                v._update_mode()
                v.centerOn(center)
        finally:
            self._busy = False


class SideBySide(QWidget):
    """Two images side by side in synchronised ZoomViews."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.views = [ZoomView(), ZoomView()]
        self.titles = [QLabel(), QLabel()]
        for title, view in zip(self.titles, self.views, strict=True):
            layout.addWidget(titled(title, view), 1)
        self.sync = ViewSync(self.views)

    def set_images(self, left: QImage | None, left_title: str, right: QImage | None, right_title: str) -> None:
        self.titles[0].setText(left_title)
        self.titles[1].setText(right_title)
        self.views[0].set_image(left)
        self.views[1].set_image(right)
        self.sync.follow(self.views[0])


class SplitView(QWidget):
    """A over B with a vertical split line: A shows left of the line, B right of it. Drag the line (or use
    the arrow keys) to wipe between them."""

    splitChanged = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.a: QImage | None = None
        self.b: QImage | None = None
        self.a_label = "A"
        self.b_label = "B"
        self.split = 0.5
        self.setMinimumSize(160, 120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setCursor(Qt.CursorShape.SplitHCursor)
        self.setToolTip("Drag the line (or press ← →) to wipe between the two images.")

    def set_images(self, a: QImage | None, b: QImage | None, a_label: str, b_label: str) -> None:
        self.a, self.b, self.a_label, self.b_label = a, b, a_label, b_label
        self.update()

    def set_split(self, fraction: float) -> None:
        fraction = min(1.0, max(0.0, float(fraction)))
        if fraction != self.split:
            self.split = fraction
            self.splitChanged.emit(fraction)
            self.update()

    def image_rect(self) -> QRectF:
        if self.a is None or self.a.isNull():
            return QRectF()
        w, h = self.a.width(), self.a.height()
        scale = min(self.width() / w, self.height() / h)
        tw, th = w * scale, h * scale
        return QRectF((self.width() - tw) / 2, (self.height() - th) / 2, tw, th)

    def split_x(self) -> float:
        r = self.image_rect()
        return r.left() + self.split * r.width()

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor("#3a3a3a"))
        r = self.image_rect()
        a, b = self.a, self.b
        if r.isEmpty() or a is None or b is None:
            p.setPen(QColor("#dddddd"))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "Select a reconstructed image")
            p.end()
            return
        smooth = r.width() < a.width()
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, smooth)
        x = self.split_x()
        p.save()
        p.setClipRect(QRectF(r.left(), r.top(), x - r.left(), r.height()))
        p.drawImage(r, a)
        p.restore()
        p.save()
        p.setClipRect(QRectF(x, r.top(), r.right() - x, r.height()))
        p.drawImage(r, b)
        p.restore()
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        p.setPen(QPen(QColor(0, 0, 0, 160), 3))
        p.drawLine(QPointF(x, r.top()), QPointF(x, r.bottom()))
        p.setPen(QPen(QColor("white"), 1.5))
        p.drawLine(QPointF(x, r.top()), QPointF(x, r.bottom()))
        p.setBrush(QColor("white"))
        p.setPen(QPen(QColor(0, 0, 0, 160), 1.5))
        p.drawEllipse(QPointF(x, r.center().y()), 7, 7)
        self._label(p, self.a_label, r.topLeft() + QPointF(6, 6), left=True)
        self._label(p, self.b_label, r.topRight() + QPointF(-6, 6), left=False)
        p.end()

    def _label(self, p: QPainter, text: str, at: QPointF, *, left: bool) -> None:
        metrics = p.fontMetrics()
        w, h = metrics.horizontalAdvance(text) + 10, metrics.height() + 4
        box = QRectF(at.x() if left else at.x() - w, at.y(), w, h)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(0, 0, 0, 150))
        p.drawRoundedRect(box, 4, 4)
        p.setPen(QColor("white"))
        p.drawText(box, Qt.AlignmentFlag.AlignCenter, text)

    def _drag(self, event: QMouseEvent) -> None:
        r = self.image_rect()
        if r.width() > 0:
            self.set_split((event.position().x() - r.left()) / r.width())

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self._drag(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if event.buttons() & Qt.MouseButton.LeftButton:
            self._drag(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Left:
            self.set_split(self.split - 0.02)
        elif event.key() == Qt.Key.Key_Right:
            self.set_split(self.split + 0.02)
        else:
            super().keyPressEvent(event)


class ColorBar(QWidget):
    """The heatmap's scale: the colour map from 0 (bottom) to `vmax` (top), with labelled ticks."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.vmax = 1.0
        self.unit = ""
        lut = colormap_lut(256)[::-1]  # top = high
        self._bar = qimage_from_array(np.repeat(lut[:, None, :], 12, axis=1))
        self.setFixedWidth(78)
        self.setMinimumHeight(120)

    def set_scale(self, vmax: float, unit: str) -> None:
        self.vmax, self.unit = float(vmax), unit
        self.setToolTip(f"Colour scale: 0 to {self.vmax:.3g} {unit}; brighter = larger")
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        metrics = p.fontMetrics()
        top, bottom = metrics.height(), self.height() - metrics.height() - 4
        bar = QRectF(4, top, 14, max(10, bottom - top))
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        p.drawImage(bar, self._bar)
        p.setPen(self.palette().windowText().color())
        p.drawRect(bar)
        for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
            y = bar.bottom() - frac * bar.height()
            p.drawLine(QPointF(bar.right(), y), QPointF(bar.right() + 4, y))
            value = frac * self.vmax
            text = f"{value:.3g}" + (" ≥" if frac == 1.0 else "")
            p.drawText(QPointF(bar.right() + 7, y + metrics.ascent() / 2 - 1), text)
        p.drawText(QRectF(0, bottom + 2, self.width(), metrics.height() + 2), Qt.AlignmentFlag.AlignLeft, self.unit)
        p.end()


class HeatmapView(QWidget):
    """A (H, W) map of non-negative values through the colour map, in a ZoomView, with its colour bar."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = QLabel()
        self.view = ZoomView()
        self.bar = ColorBar()
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.view, 1)
        row.addWidget(self.bar)
        body = QWidget()
        body.setLayout(row)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.title)
        layout.addWidget(body, 1)
        self.values: np.ndarray | None = None
        self.vmax = 1.0

    def set_data(self, values: np.ndarray | None, title: str, unit: str, vmax: float | None = None) -> None:
        self.title.setText(title)
        self.values = values
        if values is None:
            self.view.set_image(None)
            return
        self.vmax = heat_scale(values) if vmax is None else float(vmax)
        self.bar.set_scale(self.vmax, unit)
        self.view.set_image(qimage_from_array(colormap(values, self.vmax)))
