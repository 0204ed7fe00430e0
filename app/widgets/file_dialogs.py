"""File dialogs that start where the user keeps pictures and remember the last folder, per kind of file.

Every open/save/folder dialog of the app goes through here. The first time, a dialog opens in the user's
Pictures folder (QStandardPaths.PicturesLocation; the home folder when there is none), never in the process's
working folder; after that, in the folder last used for the same kind ("images", "video", "export", …),
remembered in QSettings under `dialogs/<kind>`.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings, QStandardPaths
from PySide6.QtWidgets import QFileDialog, QWidget

KEY = "dialogs/"


def default_folder() -> Path:
    """The user's Pictures folder if it exists, else the home folder."""
    pictures = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.PicturesLocation)
    if pictures and Path(pictures).is_dir():
        return Path(pictures)
    return Path.home()


def start_folder(kind: str) -> Path:
    """Where a dialog of `kind` opens: the folder last used for it while it exists, else `default_folder()`."""
    last = QSettings().value(KEY + kind)
    if last and Path(str(last)).is_dir():
        return Path(str(last))
    return default_folder()


def remember(kind: str, path: str | Path) -> None:
    """Remember the folder of `path` (or `path` itself when it is a folder) for the next dialog of `kind`."""
    if not path:
        return
    p = Path(path)
    folder = p if p.is_dir() else p.parent
    settings = QSettings()
    settings.setValue(KEY + kind, str(folder))
    settings.sync()


def open_file(parent: QWidget | None, title: str, kind: str, filters: str = "") -> str:
    path, _ = QFileDialog.getOpenFileName(parent, title, str(start_folder(kind)), filters)
    remember(kind, path)
    return path


def open_files(parent: QWidget | None, title: str, kind: str, filters: str = "") -> list[str]:
    paths, _ = QFileDialog.getOpenFileNames(parent, title, str(start_folder(kind)), filters)
    if paths:
        remember(kind, paths[0])
    return list(paths)


def save_file(parent: QWidget | None, title: str, kind: str, name: str, filters: str = "") -> tuple[str, str]:
    """(path, chosen filter) of a save dialog opening on `name` in the start folder; ("", "") when cancelled."""
    path, chosen = QFileDialog.getSaveFileName(parent, title, str(start_folder(kind) / name), filters)
    remember(kind, path)
    return path, chosen


def existing_folder(parent: QWidget | None, title: str, kind: str, start: str | Path | None = None) -> str:
    """A folder chosen by the user ("" when cancelled); `start`, when it is a folder, overrides the memory."""
    begin = Path(start) if start and Path(start).is_dir() else start_folder(kind)
    folder = QFileDialog.getExistingDirectory(parent, title, str(begin))
    remember(kind, folder)
    return folder
