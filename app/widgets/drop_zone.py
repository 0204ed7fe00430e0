"""A drop zone for image files and folders (and images dragged from other apps), with Add and Paste."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDragLeaveEvent, QDragMoveEvent, QDropEvent, QImage
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget


class DropZone(QFrame):
    """Emits `filesDropped(paths)` for dropped local files and folders, `imageDropped(QImage)` for image
    data without a file (dragged from a browser, say). The buttons ask the page to open its dialogs."""

    filesDropped = Signal(list)
    imageDropped = Signal(QImage)
    addFilesClicked = Signal()
    addFolderClicked = Signal()
    pasteClicked = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("dropZone")
        self.setAcceptDrops(True)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setMinimumHeight(84)
        self.setToolTip("Drop image files or folders here (folders are searched recursively), or paste an image.")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 8, 12, 8)
        self.label = QLabel("Drop images or folders here")
        self.label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        font = self.label.font()
        font.setPointSizeF(font.pointSizeF() * 1.1)
        self.label.setFont(font)
        layout.addWidget(self.label)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        self.add_files = QPushButton("Add files…")
        self.add_files.setToolTip("Choose image files to reconstruct.")
        self.add_folder = QPushButton("Add folder…")
        self.add_folder.setToolTip("Choose a folder; every image in it and its subfolders is added.")
        self.paste = QPushButton("Paste")
        self.paste.setToolTip("Add the image (or image files) on the clipboard (Ctrl+V).")
        for b in (self.add_files, self.add_folder, self.paste):
            buttons.addWidget(b)
        buttons.addStretch(1)
        layout.addLayout(buttons)
        self.add_files.clicked.connect(self.addFilesClicked)
        self.add_folder.clicked.connect(self.addFolderClicked)
        self.paste.clicked.connect(self.pasteClicked)
        self._set_hover(False)

    def _set_hover(self, on: bool) -> None:
        self.setProperty("hover", on)
        border = "palette(highlight)" if on else "palette(mid)"
        background = "background: palette(alternate-base);" if on else ""
        self.setStyleSheet(f"#dropZone {{ border: 2px dashed {border}; border-radius: 8px; {background} }}")

    @staticmethod
    def _accepts(event: QDragEnterEvent | QDragMoveEvent | QDropEvent) -> bool:
        md = event.mimeData()
        return md.hasUrls() or md.hasImage()

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if self._accepts(event):
            event.acceptProposedAction()
            self._set_hover(True)
        else:
            event.ignore()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        if self._accepts(event):
            event.acceptProposedAction()

    def dragLeaveEvent(self, event: QDragLeaveEvent) -> None:
        self._set_hover(False)

    def dropEvent(self, event: QDropEvent) -> None:
        self._set_hover(False)
        md = event.mimeData()
        paths = [u.toLocalFile() for u in md.urls() if u.isLocalFile()] if md.hasUrls() else []
        if paths:
            event.acceptProposedAction()
            self.filesDropped.emit(paths)
            return
        if md.hasImage():
            image = QImage(md.imageData())
            if not image.isNull():
                event.acceptProposedAction()
                self.imageDropped.emit(image)
                return
        event.ignore()
