"""The main window's menu bar (File, View, Run, Help) and the windows it opens (shortcuts, about).

The Run menu holds the Runs page's actions, so a shortcut acts the same from every page."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from PySide6.QtCore import QUrl
from PySide6.QtGui import QAction, QDesktopServices, QKeySequence
from PySide6.QtWidgets import QMainWindow, QMessageBox, QWidget

from app import APP_NAME, __version__
from app.models.window import PAGES
from app.pages.runs import RunsPage


def build_menus(
    window: QMainWindow, runs: RunsPage, home: Path, show_page: Callable[[str], None], refresh: Callable[[], None],
    shortcuts: Callable[[], list[tuple[str, str]]],
) -> None:  # fmt: skip
    """Fill `window`'s menu bar; every action with a shortcut is added to the window, so it works anywhere."""

    def action(text: str, slot: Callable[[], object], shortcut: str | None = None, tip: str = "") -> QAction:
        act = QAction(text, window)
        act.triggered.connect(lambda _checked=False: slot())
        if shortcut:
            act.setShortcut(QKeySequence(shortcut))
            window.addAction(act)
        if tip:
            act.setToolTip(tip)
            act.setStatusTip(tip)
        return act

    file_menu = window.menuBar().addMenu("&File")
    file_menu.addAction(runs.act_new)
    tip = "Open the folder holding the database and the runs."
    file_menu.addAction(action("Open data folder", lambda: open_folder(home), tip=tip))
    file_menu.addSeparator()
    file_menu.addAction(action("Quit", window.close, "Ctrl+Q"))

    view = window.menuBar().addMenu("&View")
    for i, (page_id, title, page_tip) in enumerate(PAGES):
        view.addAction(action(title, partial(show_page, page_id), f"Ctrl+{i + 1}", page_tip))
    view.addSeparator()
    view.addAction(action("Refresh", refresh, "F5"))

    run_menu = window.menuBar().addMenu("&Run")
    for act in (runs.act_start, runs.act_pause, runs.act_resume, runs.act_stop, None, runs.act_duplicate,
                runs.act_stage2, runs.act_compare, None, runs.act_folder, runs.act_export,
                runs.act_delete):  # fmt: skip
        run_menu.addSeparator() if act is None else run_menu.addAction(act)  # fmt: skip

    help_menu = window.menuBar().addMenu("&Help")
    help_menu.addAction(action("Keyboard shortcuts", lambda: show_shortcuts(window, shortcuts()), "F1"))
    help_menu.addAction(action(f"About {APP_NAME}", lambda: show_about(window, home)))


def open_folder(folder: Path) -> bool:
    return QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))


def show_shortcuts(parent: QWidget, rows: list[tuple[str, str]]) -> None:
    table = "".join(f"<tr><td><b>{k}</b></td><td>&nbsp;&nbsp;{t}</td></tr>" for k, t in rows)
    QMessageBox.information(parent, "Keyboard shortcuts", f"<table>{table}</table>")


def show_about(parent: QWidget, home: Path) -> None:
    QMessageBox.about(
        parent,
        f"About {APP_NAME}",
        f"<b>{APP_NAME}</b> {__version__}<br>Train and explore Unified Latents (Heek et al. 2026).<br>"
        f"Data folder: {home}",
    )
