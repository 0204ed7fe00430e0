"""One form control with its inline error line under it: the New run knobs and every Advanced field use it, so
a rejected value looks the same wherever it is entered."""

from __future__ import annotations

from PySide6.QtWidgets import QDoubleSpinBox, QLabel, QSpinBox, QVBoxLayout, QWidget


class FieldRow(QWidget):
    widget: QWidget

    def __init__(self, widget: QWidget | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.row_layout = QVBoxLayout(self)
        self.row_layout.setContentsMargins(0, 0, 0, 0)
        self.row_layout.setSpacing(1)
        self.error = QLabel()
        self.error.setObjectName("fieldError")
        self.error.setWordWrap(True)
        self.error.hide()
        if widget is not None:
            self.set_widget(widget)

    def set_widget(self, widget: QWidget) -> None:
        """The control, above the error line."""
        self.widget = widget
        self.row_layout.insertWidget(0, widget)
        self.row_layout.addWidget(self.error)

    def set_error(self, message: str | None) -> None:
        self.widget.setProperty("invalid", bool(message))
        self.widget.style().unpolish(self.widget)
        self.widget.style().polish(self.widget)
        self.error.setText(message or "")
        self.error.setVisible(bool(message))


def spin_box(lo: float, hi: float, decimals: int | None = None, step: float = 1.0) -> QSpinBox | QDoubleSpinBox:
    """An integer (decimals None) or decimal spin box that reports a value only when editing ends."""
    w: QSpinBox | QDoubleSpinBox
    if decimals is None:
        w = QSpinBox()
        w.setRange(int(lo), int(hi))
        w.setSingleStep(int(step))
    else:
        w = QDoubleSpinBox()
        w.setDecimals(decimals)
        w.setRange(lo, hi)
        w.setSingleStep(step)
    w.setKeyboardTracking(False)
    w.setAccelerated(True)
    return w
