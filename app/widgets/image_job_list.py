"""The Reconstruct page's left side for images: the drop zone, one table row per image (state, progress,
metrics), the overall progress and the Cancel / Export / Clear buttons, and the status line."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.widgets.drop_zone import DropZone
from app.widgets.metrics_table import COMPARE_COLUMNS, PROGRESS_ROLE, ImageTableModel
from app.widgets.progress_delegate import ProgressDelegate


class ImageJobList(QWidget):
    """Layout only: the page connects the buttons and the drop zone and keeps the rows in `table_model`."""

    def __init__(self, table_model: ImageTableModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.table_model = table_model
        lv = QVBoxLayout(self)
        lv.setContentsMargins(0, 0, 0, 0)
        self.drop_zone = DropZone()
        self.drop_zone.label.setText("Drop images, videos or folders here")
        lv.addWidget(self.drop_zone)
        self.table = self._table()
        lv.addWidget(self.table, 1)
        bottom = QHBoxLayout()
        self.overall = QProgressBar()
        self.overall.setRange(0, 1)
        self.overall.setValue(0)
        self.overall.setFormat("No images: drop images here")
        self.overall.setToolTip("Images finished (done, failed or cancelled) out of all in the list.")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip(
            "Stop: the image being decoded stops after its current step; the rest are not sent (Esc)."
        )
        self.cancel_button.setEnabled(False)
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip(
            "Write the reconstructions, a comparison strip per image and metrics.csv to a folder."
        )
        self.clear_button = QPushButton("Clear")
        self.clear_button.setToolTip("Empty the list (cached results stay in the database).")
        bottom.addWidget(self.overall, 1)
        for button in (self.cancel_button, self.export_button, self.clear_button):
            bottom.addWidget(button)
        lv.addLayout(bottom)
        self.status = QLabel("Drop images to reconstruct them with the chosen model.")
        self.status.setObjectName("hint")
        self.status.setWordWrap(True)
        lv.addWidget(self.status)

    def _table(self) -> QTableView:
        table = QTableView()
        table.setModel(self.table_model)
        table.setItemDelegateForColumn(1, ProgressDelegate(PROGRESS_ROLE, table))
        table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        table.verticalHeader().setVisible(False)
        table.verticalHeader().setDefaultSectionSize(24)
        table.setWordWrap(False)
        header = table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(False)
        table.setColumnWidth(0, 130)
        table.setColumnWidth(1, 170)
        for col in range(2, self.table_model.columnCount()):
            table.setColumnWidth(col, 66)
        for col in COMPARE_COLUMNS:
            table.setColumnHidden(col, True)
        return table

    def show_compare_columns(self, on: bool) -> None:
        """The B column group appears once a comparison has a result."""
        for col in COMPARE_COLUMNS:
            self.table.setColumnHidden(col, not on)
