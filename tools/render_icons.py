"""Render resources/icons/ul-studio.svg to PNGs (16–512 px) with QSvgRenderer: `python -m tools.render_icons`."""

from __future__ import annotations

import os
import sys

SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def main() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    from app.resources import APP_ICON_SVG, ICONS_DIR

    _app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    renderer = QSvgRenderer(str(APP_ICON_SVG))
    if not renderer.isValid():
        print(f"cannot read {APP_ICON_SVG}", file=sys.stderr)
        return 1
    for size in SIZES:
        image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        renderer.render(painter)
        painter.end()
        out = ICONS_DIR / f"ul-studio-{size}.png"
        image.save(str(out))
        print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
