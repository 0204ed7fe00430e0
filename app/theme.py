"""Light and dark palettes that follow the system's colour scheme, and the colours plots use.

Qt ≥ 6.5 reports the scheme (`QStyleHints.colorScheme`) and signals changes; where it is unknown
(offscreen, some X11 desktops) the light palette is used. Fusion keeps both palettes looking the same on
every platform.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

from app.resources import style_sheet

LIGHT = "light"
DARK = "dark"

# Categorical colours for runs in overlaid plots (Okabe–Ito, readable by colour-blind users), first = primary.
RUN_COLORS_LIGHT = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#6a3d9a", "#000000"]
RUN_COLORS_DARK = ["#56B4E9", "#E69F00", "#2fd3a0", "#f0a3d0", "#f5d142", "#ff7f50", "#b99cff", "#dddddd"]

STATUS_COLORS = {
    "running": "#2e9d4f",
    "paused": "#c98a00",
    "stopping": "#c96a00",
    "queued": "#3b7dd8",
    "completed": "#2e7d32",
    "failed": "#d32f2f",
    "interrupted": "#b5482e",
    "stopped": "#7a7a7a",
    "created": "#7a7a7a",
}


def system_scheme() -> str:
    hints = QGuiApplication.styleHints()
    scheme = getattr(hints, "colorScheme", None)
    if scheme is not None and scheme() == Qt.ColorScheme.Dark:
        return DARK
    return LIGHT


def _palette(scheme: str) -> QPalette:
    p = QPalette()
    if scheme == DARK:
        colors = {
            QPalette.ColorRole.Window: "#202124",
            QPalette.ColorRole.WindowText: "#e8eaed",
            QPalette.ColorRole.Base: "#17181a",
            QPalette.ColorRole.AlternateBase: "#25272b",
            QPalette.ColorRole.ToolTipBase: "#2d2f33",
            QPalette.ColorRole.ToolTipText: "#e8eaed",
            QPalette.ColorRole.PlaceholderText: "#8a8d93",
            QPalette.ColorRole.Text: "#e8eaed",
            QPalette.ColorRole.Button: "#2b2d31",
            QPalette.ColorRole.ButtonText: "#e8eaed",
            QPalette.ColorRole.BrightText: "#ff6b6b",
            QPalette.ColorRole.Link: "#8ab4f8",
            QPalette.ColorRole.Highlight: "#3d6fd1",
            QPalette.ColorRole.HighlightedText: "#ffffff",
            QPalette.ColorRole.Mid: "#3a3d42",
            QPalette.ColorRole.Dark: "#121314",
            QPalette.ColorRole.Light: "#3f4247",
        }
        disabled = "#6d7077"
    else:
        colors = {
            QPalette.ColorRole.Window: "#f3f4f6",
            QPalette.ColorRole.WindowText: "#1f2328",
            QPalette.ColorRole.Base: "#ffffff",
            QPalette.ColorRole.AlternateBase: "#f6f8fa",
            QPalette.ColorRole.ToolTipBase: "#ffffe8",
            QPalette.ColorRole.ToolTipText: "#1f2328",
            QPalette.ColorRole.PlaceholderText: "#8c959f",
            QPalette.ColorRole.Text: "#1f2328",
            QPalette.ColorRole.Button: "#eceef1",
            QPalette.ColorRole.ButtonText: "#1f2328",
            QPalette.ColorRole.BrightText: "#d32f2f",
            QPalette.ColorRole.Link: "#0969da",
            QPalette.ColorRole.Highlight: "#2f6fde",
            QPalette.ColorRole.HighlightedText: "#ffffff",
            QPalette.ColorRole.Mid: "#c9ccd1",
            QPalette.ColorRole.Dark: "#a0a4aa",
            QPalette.ColorRole.Light: "#ffffff",
        }
        disabled = "#9aa0a6"
    for role, value in colors.items():
        p.setColor(role, QColor(value))
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
        p.setColor(QPalette.ColorGroup.Disabled, role, QColor(disabled))
    return p


def apply(app: QApplication, scheme: str | None = None) -> str:
    """Fusion style, the palette for `scheme` (default: the system's), and the app's style sheet."""
    scheme = scheme or system_scheme()
    app.setStyle("Fusion")
    app.setPalette(_palette(scheme))
    app.setProperty("ul_scheme", scheme)
    app.setStyleSheet(style_sheet("app.qss") + (style_sheet("dark.qss") if scheme == DARK else ""))
    return scheme


def current_scheme() -> str:
    app = QApplication.instance()
    value = app.property("ul_scheme") if app is not None else None
    return value if value in (LIGHT, DARK) else LIGHT


def run_colors(scheme: str | None = None) -> list[str]:
    return RUN_COLORS_DARK if (scheme or current_scheme()) == DARK else RUN_COLORS_LIGHT


def plot_colors(scheme: str | None = None) -> dict[str, str]:
    """Background, axis/text colour and grid alpha for pyqtgraph plots."""
    if (scheme or current_scheme()) == DARK:
        return {"background": "#17181a", "foreground": "#c8cbd0", "muted": "#8a8d93"}
    return {"background": "#ffffff", "foreground": "#3c4043", "muted": "#80868b"}


class ThemeWatcher(QObject):
    """Re-applies the palette when the system switches between light and dark; emits the new scheme."""

    changed = Signal(str)

    def __init__(self, app: QApplication) -> None:
        super().__init__(app)
        self._app = app
        hints = QGuiApplication.styleHints()
        if hasattr(hints, "colorSchemeChanged"):
            hints.colorSchemeChanged.connect(self._on_change)

    def _on_change(self, *_args: object) -> None:
        self.changed.emit(apply(self._app))
