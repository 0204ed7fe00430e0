"""What every screenshot tool needs: a themed QApplication, a real main window at 1280×800 on a home
folder, and a way to let the event loop run. One place, so the screenshots in docs/ all look alike."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class ShotWindow:
    qapp: Any
    ctx: Any
    window: Any
    out: Path

    def pump(self, seconds: float) -> None:
        """Run the event loop for `seconds` (workers answer, plots redraw)."""
        end = time.time() + seconds
        while time.time() < end:
            self.qapp.processEvents()
            time.sleep(0.02)

    def wait(self, condition: Any, timeout: float = 300.0) -> None:
        end = time.time() + timeout
        while not condition() and time.time() < end:
            self.pump(0.1)
        if not condition():
            raise SystemExit("timed out waiting for the app")

    def shot(self, widget: Any, name: str) -> Path:
        self.pump(0.4)
        path = self.out / f"{name}.png"
        widget.grab().save(str(path))
        print("wrote", path, flush=True)
        return path


def open_window(home: Path, out: Path, ini_name: str = "screenshots.ini", *, install_demo: bool = False) -> ShotWindow:
    """A light-themed app on `home` with its session worker started, shown at 1280×800."""
    from PySide6.QtCore import QCoreApplication, QSettings
    from PySide6.QtWidgets import QApplication

    from app import APP_NAME, theme
    from app.context import AppContext
    from app.main_window import MainWindow
    from app.resources import app_icon
    from app.settings import Settings

    out.mkdir(parents=True, exist_ok=True)
    QCoreApplication.setOrganizationName("ul-studio-screenshots")
    QCoreApplication.setApplicationName("ul-studio-screenshots")
    qapp = QApplication.instance() or QApplication(sys.argv[:1])
    qapp.setApplicationDisplayName(APP_NAME)
    qapp.setWindowIcon(app_icon())
    theme.apply(qapp, theme.LIGHT)
    settings = Settings(QSettings(str(home / ini_name), QSettings.Format.IniFormat))
    ctx = AppContext(home, settings, start_session=True, install_demo=install_demo)
    window = MainWindow(ctx, restore=False)
    window.resize(1280, 800)
    window.move(0, 0)
    window.show()
    ctx.start()
    return ShotWindow(qapp, ctx, window, out)
