"""The Reconstruct page's table: one row per image with its state (a progress bar while it runs, the
message in place when it fails) and its metrics; a B column group when two models are compared."""

from __future__ import annotations

import math
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QLabel,
    QSizePolicy,
)

from app.models.jobs import CANCELLED, DONE, ERROR, RUNNING, ImageJob

PROGRESS_ROLE = Qt.ItemDataRole.UserRole + 1

COLUMNS = (
    ("file", "File", "The image file"),
    ("status", "Status", "Progress, or what happened to this image"),
    ("psnr", "PSNR dB", "Peak signal-to-noise ratio of the reconstruction: higher is closer to the input"),
    ("ssim", "SSIM", "Structural similarity (Wang et al. 2004, 11×11 Gaussian window): 1 is identical"),
    ("bits_per_pixel", "bits/px", "What the latent costs under the run's prior, per image pixel"),
    ("bits_per_dim", "bits/dim", "What the latent costs under the run's prior, per latent dimension"),
    ("decode_seconds", "decode s", "Seconds per decode (the diffusion decoder's sampling)"),
    ("psnr_b", "PSNR B", "PSNR of the second model's reconstruction"),
    ("ssim_b", "SSIM B", "SSIM of the second model's reconstruction"),
    ("bits_per_pixel_b", "bits/px B", "Bits per pixel under the second model's prior"),
)
COMPARE_COLUMNS = tuple(i for i, c in enumerate(COLUMNS) if c[0].endswith("_b"))


def _num(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}"


class ImageTableModel(QAbstractTableModel):
    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.items: list[ImageJob] = []

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.items)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation != Qt.Orientation.Horizontal:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section][1]
        if role == Qt.ItemDataRole.ToolTipRole:
            return COLUMNS[section][2]
        return None

    def add(self, items: list[ImageJob]) -> None:
        if not items:
            return
        start = len(self.items)
        self.beginInsertRows(QModelIndex(), start, start + len(items) - 1)
        self.items.extend(items)
        self.endInsertRows()

    def clear(self) -> None:
        self.beginResetModel()
        self.items.clear()
        self.endResetModel()

    def changed(self, item: ImageJob) -> None:
        try:
            row = self.items.index(item)
        except ValueError:
            return
        self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1))

    def changed_rows(self, first: int, last: int) -> None:
        if self.items and first <= last:
            self.dataChanged.emit(self.index(first, 0), self.index(last, len(COLUMNS) - 1))

    def value(self, item: ImageJob, key: str) -> Any:
        entry = item.compare if key.endswith("_b") else item.entry
        if entry is None or not entry.get("ok"):
            return None
        return (entry.get("metrics") or {}).get(key.removesuffix("_b"))

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        item = self.items[index.row()]
        key = COLUMNS[index.column()][0]
        if role == Qt.ItemDataRole.DisplayRole:
            if key == "file":
                return item.name
            if key == "status":
                return item.status_text()
            digits = {"psnr": 2, "ssim": 4, "bits_per_pixel": 4, "bits_per_dim": 3, "decode_seconds": 2}
            return _num(self.value(item, key), digits.get(key.removesuffix("_b"), 3))
        if role == Qt.ItemDataRole.ToolTipRole:
            if key == "file":
                return item.path
            if key == "status":
                lines = [item.error] if item.error else []
                lines += item.notices
                return "\n".join(lines) or item.status_text()
            return None
        if role == Qt.ItemDataRole.ForegroundRole and key == "status":
            if item.state == ERROR:
                return QColor("#d32f2f")
            if item.state == DONE and item.notices:
                return QColor("#b26a00")
            if item.state == CANCELLED:
                return QColor("#7a7a7a")
        if role == Qt.ItemDataRole.TextAlignmentRole and key not in ("file", "status"):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == PROGRESS_ROLE:
            return item.progress() if item.state == RUNNING else None
        return None


def metrics_panel() -> QLabel:
    """The fixed-width, selectable rich-text column beside a reconstruction (images and videos alike)."""
    panel = QLabel()
    panel.setObjectName("metricsPanel")
    panel.setTextFormat(Qt.TextFormat.RichText)
    panel.setWordWrap(True)
    panel.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
    panel.setFixedWidth(210)
    panel.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Expanding)
    panel.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return panel
