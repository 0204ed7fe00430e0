"""The Monitor's run choice: the shown run, a "Compare with…" menu of runs whose curves are overlaid, and a
line naming the compared runs in their colours. It says what was chosen; the page decides what to show."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QMenu, QToolButton, QWidget


class RunPicker(QWidget):
    chosen = Signal(int)  # a run picked in the list
    overlay_toggled = Signal(int, bool)  # a run added to (or taken off) the comparison
    overlays_cleared = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        self.combo = QComboBox()
        self.combo.setObjectName("monitorRun")
        self.combo.setMinimumWidth(260)
        self.combo.setToolTip("The run whose curves, previews and log are shown.")
        self.combo.activated.connect(self._on_combo)
        row.addWidget(self.combo)
        self.overlay_button = QToolButton()
        self.overlay_button.setText("Compare with…")
        self.overlay_button.setToolTip("Overlay other runs' curves on the same plots, each in its own colour.")
        self.overlay_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.overlay_menu = QMenu(self)
        self.overlay_button.setMenu(self.overlay_menu)
        row.addWidget(self.overlay_button)
        self.overlay_label = QLabel("")
        self.overlay_label.setObjectName("hint")
        row.addWidget(self.overlay_label, 1)
        self._items: list[tuple[int, str]] = []

    def set_rows(self, rows: list[Any], run_id: int | None, overlays: list[int]) -> None:
        """The runs to choose from (oldest first, listed newest first), with `run_id` chosen."""
        items = [(r.id, f"{r.info.name}  ·  {r.info.status}") for r in reversed(rows)]
        if items != self._items:
            self._items = items
            self.combo.blockSignals(True)
            self.combo.clear()
            for item_id, text in items:
                self.combo.addItem(text, item_id)
            if run_id is not None:
                self.combo.setCurrentIndex(max(0, self.combo.findData(run_id)))
            else:
                self.combo.setCurrentIndex(-1)
                self.combo.setPlaceholderText("choose a run")
            self.combo.blockSignals(False)
            self._rebuild_menu(rows, run_id, overlays)
        wanted = self.combo.findData(run_id) if run_id is not None else -1
        if self.combo.currentIndex() != wanted:
            self.combo.blockSignals(True)
            self.combo.setCurrentIndex(wanted)
            self.combo.blockSignals(False)
            self._rebuild_menu(rows, run_id, overlays)

    def show_compared(self, names: list[tuple[str, str]]) -> None:
        """(colour, name) of every shown run while some are compared; empty: no comparison."""
        if not names:
            self.overlay_label.setText("")
            return
        self.overlay_label.setText("  ".join(f"<span style='color:{c}'>■</span> {n}" for c, n in names))

    def _rebuild_menu(self, rows: list[Any], run_id: int | None, overlays: list[int]) -> None:
        self.overlay_menu.clear()
        for row in reversed(rows):
            if row.id == run_id:
                continue
            act = QAction(f"{row.info.name} (stage {row.info.stage}, {row.info.status})", self.overlay_menu)
            act.setCheckable(True)
            act.setChecked(row.id in overlays)
            act.toggled.connect(lambda on, r=row.id: self.overlay_toggled.emit(r, on))
            self.overlay_menu.addAction(act)
        if overlays:
            self.overlay_menu.addSeparator()
            clear = QAction("Clear comparison", self.overlay_menu)
            clear.triggered.connect(self.overlays_cleared)
            self.overlay_menu.addAction(clear)

    def _on_combo(self, index: int) -> None:
        run_id = self.combo.itemData(index)
        if run_id is not None:
            self.chosen.emit(int(run_id))
