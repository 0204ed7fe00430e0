"""Where the app's files live: icons and style sheets under the repository's `resources/` folder."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QIcon

RESOURCES_DIR = Path(__file__).resolve().parent.parent / "resources"
ICONS_DIR = RESOURCES_DIR / "icons"
STYLE_DIR = RESOURCES_DIR / "style"
APP_ICON_SVG = ICONS_DIR / "ul-studio.svg"


def app_icon() -> QIcon:
    """The app icon: the SVG plus whatever rendered PNG sizes exist beside it."""
    icon = QIcon()
    for png in sorted(ICONS_DIR.glob("ul-studio-*.png")):
        icon.addFile(str(png))
    if APP_ICON_SVG.is_file():
        icon.addFile(str(APP_ICON_SVG))
    return icon


def style_sheet(name: str = "app.qss") -> str:
    """A style sheet from resources/style/ ('' when missing, so a broken install still starts)."""
    path = STYLE_DIR / name
    return path.read_text(encoding="utf-8") if path.is_file() else ""
