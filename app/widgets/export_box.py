"""The message after `ul export` of a run finished: where the bundle went (with a button that opens the
folder), or why it failed."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QMessageBox, QWidget


def export_box(parent: QWidget, name: str, out: Path, ok: bool, message: str) -> QMessageBox:
    """A window-modal box, deleted when closed; the caller opens it."""
    box = QMessageBox(parent)
    box.setWindowModality(Qt.WindowModality.WindowModal)
    if ok:
        box.setIcon(QMessageBox.Icon.Information)
        box.setWindowTitle("Export finished")
        box.setText(f"{name} was exported to\n{out}")
        box.setInformativeText("The folder holds the model's weights (safetensors) and their JSON settings.")
        opener = box.addButton("Open folder", QMessageBox.ButtonRole.ActionRole)
        opener.clicked.connect(lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(str(out))))
    else:
        box.setIcon(QMessageBox.Icon.Warning)
        box.setWindowTitle("Export failed")
        box.setText(f"{name} could not be exported to {out}:\n{message}")
    box.addButton(QMessageBox.StandardButton.Ok)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    return box
