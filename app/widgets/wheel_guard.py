"""The mouse wheel scrolls forms, not the values in them.

A spin box, combo box or slider that the pointer merely passes over while the user scrolls a form would
otherwise change its value (a Latent channels field went from 4 to 0 that way). One event filter on the
QApplication covers every such widget in the app: it gives them `Qt.StrongFocus` (clicked or tabbed to,
never focused by the wheel) and, while one has no focus, hands the wheel event to the scroll area around it
instead, so the page scrolls as the user meant. A focused widget keeps the wheel as usual.
"""

from __future__ import annotations

from typing import TypeGuard

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import (
    QAbstractScrollArea,
    QAbstractSlider,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QScrollBar,
    QWidget,
)

GUARDED = (QAbstractSpinBox, QComboBox, QAbstractSlider)


def _is_value_widget(obj: QObject) -> TypeGuard[QWidget]:
    return isinstance(obj, GUARDED) and not isinstance(obj, QScrollBar)  # scroll bars are for scrolling


def _guarded(obj: QObject) -> QWidget | None:
    """The value widget an event is for (a spin box's inner line edit counts as the spin box)."""
    if _is_value_widget(obj):
        return obj
    parent = obj.parent() if isinstance(obj, QWidget) else None
    return parent if isinstance(parent, QAbstractSpinBox | QComboBox) else None


def _scroll_area(widget: QWidget) -> QAbstractScrollArea | None:
    parent = widget.parentWidget()
    while parent is not None:
        if isinstance(parent, QAbstractScrollArea) and not isinstance(parent, QComboBox):
            return parent
        parent = parent.parentWidget()
    return None


class WheelGuard(QObject):
    """Application-wide event filter: no wheel changes a value widget that has no focus."""

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        kind = event.type()
        if kind == QEvent.Type.Polish and _is_value_widget(obj):
            if obj.focusPolicy() == Qt.FocusPolicy.WheelFocus:
                obj.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
            return False
        if kind != QEvent.Type.Wheel or not isinstance(event, QWheelEvent):
            return False
        widget = _guarded(obj)
        if widget is None or widget.hasFocus() or (isinstance(widget, QAbstractSlider) and widget.isSliderDown()):
            return False
        area = _scroll_area(widget)
        if area is not None:
            viewport = area.viewport()
            pos = viewport.mapFromGlobal(event.globalPosition().toPoint())
            forwarded = QWheelEvent(
                pos.toPointF(), event.globalPosition(), event.pixelDelta(), event.angleDelta(), event.buttons(),
                event.modifiers(), event.phase(), event.inverted(), event.source(),
            )  # fmt: skip
            QApplication.sendEvent(viewport, forwarded)
        event.accept()
        return True  # the value stays as it is


_guard: WheelGuard | None = None


def install_wheel_guard() -> None:
    """Install the filter once on the running QApplication (later calls do nothing)."""
    global _guard
    app = QApplication.instance()
    if app is None or (_guard is not None and _guard.parent() is app):
        return
    _guard = WheelGuard(app)
    app.installEventFilter(_guard)
