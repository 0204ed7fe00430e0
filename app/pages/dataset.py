"""The dataset chooser: built-in shapes, or a folder of images with a live count of the readable ones and
a few thumbnails. The folder is scanned off the GUI thread (`run_in_background`) with the engine's own
torch-free readers (header probes for the count, full decodes for the thumbnails); the GUI only receives the
results, and a newer path's scan makes an older one's answer stale."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from PySide6.QtCore import QThreadPool, QTimer, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QButtonGroup,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from app.widgets import file_dialogs
from app.workers.background import BackgroundTask, run_in_background
from ul_engine.core.errors import DataError
from ul_engine.core.image_folder import ImageFolderSource
from ul_engine.core.media import fit_square, load_image_rgb, probe_image

THUMBS = 6
THUMB_SIZE = 56


def scan_image_folder(
    path: str,
    resolution: int,
    progress: Callable[[int, int], None] = lambda checked, readable: None,
    cancelled: Callable[[], bool] = lambda: False,
) -> dict[str, Any]:
    """Counts the readable images under a folder and decodes the first few as thumbnails (off the GUI thread;
    `progress(files checked, readable)` every 250 files)."""
    result: dict[str, Any] = {"path": path, "readable": 0, "skipped": {}, "files": 0, "thumbs": []}
    try:
        source = ImageFolderSource(path, max(8, resolution))
    except DataError as exc:
        result["error"] = str(exc)
        return result
    files = source.files
    result["files"] = len(files)
    readable = 0
    for i, f in enumerate(files):
        if cancelled():
            break
        try:
            probe_image(f)
            readable += 1
            if len(result["thumbs"]) < THUMBS:
                arr = load_image_rgb(f, min_size=THUMB_SIZE).array
                result["thumbs"].append((f.name, fit_square(arr, THUMB_SIZE, "center", None)))
        except DataError as exc:
            if len(result["skipped"]) < 50:
                result["skipped"][f.name] = str(exc).split(": ", 1)[-1]
        if i % 250 == 249:
            progress(i + 1, readable)
    result["readable"] = readable
    return result


def _to_pixmap(arr: np.ndarray) -> QPixmap:
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    h, w, _ = arr.shape
    image = QImage(arr.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
    return QPixmap.fromImage(image)


class DatasetChooser(QWidget):
    """Emits `changed(kind, path)`; `kind` is "shapes" or "image-folder"."""

    changed = Signal(str, str)
    scanned = Signal(dict)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.resolution = 32
        self._scan: BackgroundTask[dict[str, Any]] | None = None
        self.last_result: dict[str, Any] | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.shapes = QRadioButton("Built-in shapes")
        self.shapes.setToolTip("Procedural coloured shapes generated on the fly: no download, any resolution.")
        self.folder = QRadioButton("Image folder")
        self.folder.setToolTip("Your own images: a folder searched recursively for PNG, JPEG, WebP, TIFF and BMP.")
        group = QButtonGroup(self)
        group.addButton(self.shapes)
        group.addButton(self.folder)
        self.shapes.setChecked(True)
        row.addWidget(self.shapes)
        row.addWidget(self.folder)
        row.addStretch(1)
        layout.addLayout(row)
        path_row = QHBoxLayout()
        self.path = QLineEdit()
        self.path.setPlaceholderText("folder of training images")
        self.path.setToolTip("The folder of training images (data.path); subfolders are included.")
        self.path.setObjectName("field:data.path")
        self.browse = QPushButton("Browse…")
        self.browse.setToolTip("Choose the folder of training images.")
        path_row.addWidget(self.path, 1)
        path_row.addWidget(self.browse)
        layout.addLayout(path_row)
        self.count = QLabel("")
        self.count.setObjectName("hint")
        self.count.setWordWrap(True)
        layout.addWidget(self.count)
        self.thumb_row = QHBoxLayout()
        self.thumb_row.setSpacing(4)
        self.thumbs: list[QLabel] = []
        for _ in range(THUMBS):
            label = QLabel()
            label.setFixedSize(THUMB_SIZE, THUMB_SIZE)
            label.hide()
            self.thumbs.append(label)
            self.thumb_row.addWidget(label)
        self.thumb_row.addStretch(1)
        layout.addLayout(self.thumb_row)
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(350)
        self._debounce.timeout.connect(self.rescan)
        self.shapes.toggled.connect(self._on_kind)
        self.path.textEdited.connect(self._on_path)
        self.browse.clicked.connect(self._browse)
        self._on_kind()

    # ---- state ---------------------------------------------------------------------------------------

    def kind(self) -> str:
        return "shapes" if self.shapes.isChecked() else "image-folder"

    def set_state(self, kind: str, path: str) -> None:
        if kind == self.kind() and (path or "") == self.path.text():
            return
        self.path.setText(path or "")
        (self.shapes if kind == "shapes" else self.folder).setChecked(True)
        self._on_kind(emit=False)
        if kind != "shapes" and path:
            self.rescan()

    def set_resolution(self, resolution: int) -> None:
        self.resolution = int(resolution) if isinstance(resolution, int) else 32

    def _on_kind(self, *_args: Any, emit: bool = True) -> None:
        folder = not self.shapes.isChecked()
        for w in (self.path, self.browse):
            w.setEnabled(folder)
        if not folder:
            self._stop_scan()
            self.count.setText("Shapes are generated on the fly; every step sees new images.")
            self._show_thumbs([])
        elif self.path.text().strip():
            self._debounce.start()
        else:
            self.count.setText("Choose a folder of images.")
        if emit:
            self.changed.emit(self.kind(), self.path.text())

    def _on_path(self, _text: str) -> None:
        self._stop_scan()
        self.count.setText("Counting readable images…")
        self.changed.emit(self.kind(), self.path.text())
        self._debounce.start()

    def _browse(self) -> None:
        folder = file_dialogs.existing_folder(self, "Folder of training images", "training", self.path.text())
        if folder:
            self.path.setText(folder)
            self._on_path(folder)

    # ---- scanning ------------------------------------------------------------------------------------

    def _stop_scan(self) -> None:
        """A scan of the previous text or kind is stale now: it delivers nothing more."""
        if self._scan is not None:
            self._scan.cancel()
            self._scan = None

    def rescan(self) -> None:
        text = self.path.text().strip()
        if self.shapes.isChecked() or not text:
            return
        self._stop_scan()
        self.count.setText("Counting readable images…")
        resolution = self.resolution
        self._scan = run_in_background(
            lambda task: scan_image_folder(
                text, resolution, lambda checked, readable: task.report((checked, readable)), lambda: task.cancelled
            ),
            report=self._on_progress,
            done=self._on_done,
            failed=lambda message: self._on_done({"path": text, "error": message}),
        )

    def _on_progress(self, counted: tuple[int, int]) -> None:
        checked, readable = counted
        self.count.setText(f"Counting… {readable:,} readable of {checked:,} files checked")

    def _on_done(self, result: dict[str, Any]) -> None:
        self._scan = None
        self.last_result = result
        if "error" in result:
            self.count.setText(result["error"])
            self._show_thumbs([])
        else:
            n, files, skipped = result["readable"], result["files"], result["skipped"]
            text = f"{n:,} readable image{'s' if n != 1 else ''}"
            if skipped:
                name, reason = next(iter(skipped.items()))
                text += f" · {files - n:,} skipped (e.g. {name}: {reason})"
            self.count.setText(text)
            self._show_thumbs(result["thumbs"])
        self.scanned.emit(result)

    def _show_thumbs(self, thumbs: list) -> None:
        for i, label in enumerate(self.thumbs):
            if i < len(thumbs):
                name, arr = thumbs[i]
                label.setPixmap(_to_pixmap(arr))
                label.setToolTip(name)
                label.show()
            else:
                label.clear()
                label.hide()

    def wait_idle(self, ms: int = 5000) -> bool:
        return QThreadPool.globalInstance().waitForDone(ms)

    def cancel(self) -> None:
        self._stop_scan()
        self._debounce.stop()
