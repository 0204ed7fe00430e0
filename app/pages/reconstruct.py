"""The Reconstruct page: drop images (files, folders, pasted images), pick a model and the decoder's
settings, and compare each reconstruction with its input — or with a second model's — side by side, with a
split line, as a difference heatmap, and as the mean and spread of K decodes.

How the work flows (the window never touches torch):
- Folders are walked on a thread-pool thread (lazily, so thousands of files show up as they are found
  and a cancel stops the walk).
- One image at a time: a thread-pool task reads its header (the engine's torch-free reader: empty, not an
  image, a decompression bomb are refused here) and hashes its bytes; the cache in the database is looked
  up with (sha256, checkpoint id, params hash); a hit is shown at once with no worker call.
- A miss goes to the resident session worker as one `image.reconstruct` request; its progress lines
  drive the row's progress bar. Cancel stops sending (the rest of the queue is marked cancelled) and
  creates the request's cancel file, which the worker checks after every decoder step.
"""

from __future__ import annotations

import collections
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, QTimer, Signal
from PySide6.QtGui import QImage, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app import glossary
from app.pages.video_reconstruct import VideoReconstructView, is_video_config, video_model_refusal
from app.widgets import file_dialogs
from app.widgets.checkpoint_picker import CheckpointPicker, preferred, stage1_models
from app.widgets.drop_zone import DropZone
from app.widgets.image_views import HeatmapView, SideBySide, SplitView, ViewSync, ZoomView, qimage_from_array, titled
from app.widgets.metrics_table import (
    CANCELLED,
    CHECKING,
    COMPARE_COLUMNS,
    DONE,
    ERROR,
    QUEUED,
    RUNNING,
    ImageItem,
    ImageTableModel,
    ProgressDelegate,
    metrics_panel,
)
from ul_engine.core.errors import ULError
from ul_engine.core.media import VIDEO_EXTENSIONS, is_video_path
from ul_engine.core.protocol import ImageReconstruction, Partial, Progress, ReconstructImage
from ul_engine.core.reconstruction import (
    MAX_SAMPLES,
    ReconstructParams,
    abs_difference,
    cached_entry,
    csv_row,
    entry_strip,
    file_sha256,
    iter_inputs,
    write_metrics_csv,
)
from ul_engine.core.samplers import SAMPLERS

SCAN_BATCH = 200
MAX_SESSION_RESTARTS = 3

PAIRS = (
    ("input-a", "Input ↔ reconstruction"),
    ("input-b", "Input ↔ B's reconstruction"),
    ("a-b", "Reconstruction A ↔ B"),
    ("input-mean", "Input ↔ mean of K decodes"),
)


# ----------------------------------------------------------------------------------------------
# Background tasks (thread pool; they report through signals, the GUI thread does the rest)


class _ScanSignals(QObject):
    found = Signal(int, list)  # token, paths
    finished = Signal(int, int)  # token, files found


class FolderScan(QRunnable):
    """Walks a folder for image files, emitting them in batches; stops once `cancelled(token)`."""

    def __init__(self, token: int, folder: str, cancelled: Any) -> None:
        super().__init__()
        self.token, self.folder, self.cancelled = token, folder, cancelled
        self.signals = _ScanSignals()

    def run(self) -> None:
        batch: list[str] = []
        count = 0
        last = time.monotonic()
        for path in iter_inputs([self.folder], cancelled=lambda: self.cancelled(self.token)):
            batch.append(str(path))
            count += 1
            if len(batch) >= SCAN_BATCH or time.monotonic() - last > 0.2:
                self.signals.found.emit(self.token, batch)
                batch, last = [], time.monotonic()
        if batch and not self.cancelled(self.token):
            self.signals.found.emit(self.token, batch)
        self.signals.finished.emit(self.token, count)


class _CheckSignals(QObject):
    done = Signal(object, object, object)  # item, sha256 or None, error or None


class CheckInput(QRunnable):
    """The header probe (the reader's own refusals, no decoding) and the sha256 of the file's bytes."""

    def __init__(self, item: ImageItem) -> None:
        super().__init__()
        self.item = item
        self.signals = _CheckSignals()

    def run(self) -> None:
        from ul_engine.core.media import probe_image

        path = self.item.path
        try:
            probe_image(path)
            sha = file_sha256(path)
        except ULError as exc:
            self.signals.done.emit(self.item, None, str(exc))
            return
        except OSError as exc:
            self.signals.done.emit(self.item, None, f"{path}: cannot read ({exc.strerror or exc})")
            return
        self.signals.done.emit(self.item, sha, None)


class _ExportSignals(QObject):
    done = Signal(str, int, list)  # folder, images written, problems


class ExportTask(QRunnable):
    """Writes each finished image's reconstruction(s), its comparison strip, and metrics.csv."""

    def __init__(self, folder: Path, items: list[ImageItem]) -> None:
        super().__init__()
        self.folder, self.items = Path(folder), items
        self.signals = _ExportSignals()

    def run(self) -> None:
        from ul_engine.core.imaging import save_png

        rows: list[dict[str, Any]] = []
        problems: list[str] = []
        written = 0
        stems: dict[str, int] = {}
        self.folder.mkdir(parents=True, exist_ok=True)
        for item in self.items:
            if item.entry is None:
                if item.error:
                    rows.append(csv_row({"input": item.path, "error": item.error}))
                continue
            entry, compare = item.entry, item.compare
            rows.append(csv_row(entry, "A"))
            if compare is not None:
                rows.append(csv_row(compare, "B"))
            if not entry.get("ok"):
                continue
            stem = Path(item.path).stem
            stems[stem] = stems.get(stem, 0) + 1
            if stems[stem] > 1:
                stem = f"{stem}-{stems[stem]}"
            try:
                files = entry["files"]
                shutil.copyfile(files["reconstruction"], self.folder / f"{stem}.recon.png")
                if files.get("mean"):
                    shutil.copyfile(files["mean"], self.folder / f"{stem}.mean.png")
                    shutil.copyfile(files["std_png"], self.folder / f"{stem}.std.png")
                if compare is not None and compare.get("ok"):
                    shutil.copyfile(compare["files"]["reconstruction"], self.folder / f"{stem}.recon-B.png")
                save_png(self.folder / f"{stem}.compare.png", entry_strip(entry, compare))
                written += 1
            except (OSError, KeyError, ValueError) as exc:
                problems.append(f"{item.path}: {exc}")
        try:
            write_metrics_csv(self.folder / "metrics.csv", rows)
        except OSError as exc:
            problems.append(f"metrics.csv: {exc}")
        self.signals.done.emit(str(self.folder), written, problems)


def _read_rgb(path: str) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


# ----------------------------------------------------------------------------------------------
# The page


class ReconstructPage(QWidget):
    itemFinished = Signal(object)  # an ImageItem that is done, failed or was cancelled
    idle = Signal()  # nothing queued, nothing running, no folder being walked
    exported = Signal(str, int, list)  # folder, images written, problems

    def __init__(self, ctx: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.settings = ctx.settings
        self.table_model = ImageTableModel(self)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(2)
        self.queue: collections.deque[ImageItem] = collections.deque()
        self.current: ImageItem | None = None
        self.worker_calls = 0  # reconstruct requests sent to the session worker (cache hits send none)
        self._tasks: set[Any] = set()
        self._scan_token = 0
        self._scans: dict[int, str] = {}
        self._scan_found: dict[int, int] = {}
        self._cancelled_scans: set[int] = set()
        self._cancel_file: Path | None = None
        self._cancel_requested = False
        self._restarts = 0
        self._run_signature: tuple[Any, ...] | None = None
        self._shown: ImageItem | None = None
        self._paste_count = 0
        self._build()
        self.refresh_models()
        ctx.repo.changed.connect(self._on_repo_changed)
        self._count_timer = QTimer(self)
        self._count_timer.setInterval(250)
        self._count_timer.timeout.connect(self._update_overall)
        self._count_timer.start()

    # ---- layout --------------------------------------------------------------------------------------

    def _build(self) -> None:
        outer = QVBoxLayout(self)
        outer.setContentsMargins(12, 10, 12, 8)
        heading = QLabel("Reconstruct")
        heading.setObjectName("pageTitle")
        outer.addWidget(heading)

        controls = QGridLayout()
        controls.setHorizontalSpacing(8)
        self.picker = CheckpointPicker()
        self.picker.setToolTip("The model: a stage-1 run and one of its checkpoints (the latest first).")
        self.compare_picker = CheckpointPicker(allow_none=True, none_text="nothing (input vs reconstruction)")
        self.compare_picker.setToolTip(
            "Reconstruct each image with a second run or checkpoint too, with the same seeds and settings."
        )
        self.steps = QSpinBox()
        self.steps.setRange(1, 4096)
        self.steps.setToolTip("Decoder sampling steps (noise → image). More steps: slower, usually sharper.")
        self.sampler = QComboBox()
        self.sampler.addItems(list(SAMPLERS))
        self.sampler.setToolTip(glossary.tip("sampler"))
        glossary.tip_items(self.sampler, list(SAMPLERS))
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setValue(int(self.settings.get("reconstruct/seed", 0, int)))
        self.seed.setToolTip("Seed of the latent noise and the decoder's noise: the same seed gives the same result.")
        self.samples = QSpinBox()
        self.samples.setRange(1, min(16, MAX_SAMPLES))
        self.samples.setValue(int(self.settings.get("reconstruct/samples", 1, int)))
        self.samples.setToolTip(glossary.tip("samples_k"))
        self.apply_button = QPushButton("Apply to all")
        self.apply_button.setToolTip(
            "Reconstruct every image in the list again with these settings (cached ones at once)."
        )
        self.apply_button.clicked.connect(self.apply_to_all)
        controls.addWidget(QLabel("Model"), 0, 0)
        controls.addWidget(self.picker, 0, 1, 1, 3)
        controls.addWidget(QLabel("Compare with"), 0, 4)
        controls.addWidget(self.compare_picker, 0, 5, 1, 4)
        knobs = QHBoxLayout()
        for label, widget in (
            ("Decoder steps", self.steps), ("Sampler", self.sampler), ("Seed", self.seed), ("Samples K", self.samples)
        ):  # fmt: skip
            knobs.addWidget(QLabel(label))
            knobs.addWidget(widget)
            knobs.addSpacing(10)
        knobs.addStretch(1)
        knobs.addWidget(self.apply_button)
        controls.addLayout(knobs, 1, 0, 1, 9)
        controls.setColumnStretch(1, 3)
        controls.setColumnStretch(5, 3)
        outer.addLayout(controls)
        self.picker.changed.connect(self._on_model_changed)
        self.samples.valueChanged.connect(lambda v: self.settings.set("reconstruct/samples", int(v)))
        self.seed.valueChanged.connect(lambda v: self.settings.set("reconstruct/seed", int(v)))

        splitter = QSplitter(Qt.Orientation.Horizontal)
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 0, 0)
        self.drop_zone = DropZone()
        self.drop_zone.label.setText("Drop images, videos or folders here")
        self.drop_zone.filesDropped.connect(self.add_paths)
        self.drop_zone.imageDropped.connect(self.add_image)
        self.drop_zone.addFilesClicked.connect(self.choose_files)
        self.drop_zone.addFolderClicked.connect(self.choose_folder)
        self.drop_zone.pasteClicked.connect(self.paste_from_clipboard)
        lv.addWidget(self.drop_zone)
        self.table = QTableView()
        self.table.setModel(self.table_model)
        self.table.setItemDelegateForColumn(1, ProgressDelegate(self.table))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(24)
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(False)
        self.table.setColumnWidth(0, 130)
        self.table.setColumnWidth(1, 170)
        for col in range(2, self.table_model.columnCount()):
            self.table.setColumnWidth(col, 66)
        for col in COMPARE_COLUMNS:
            self.table.setColumnHidden(col, True)
        self.table.selectionModel().currentRowChanged.connect(lambda cur, _prev: self._show_row(cur.row()))
        lv.addWidget(self.table, 1)
        bottom = QHBoxLayout()
        self.overall = QProgressBar()
        self.overall.setRange(0, 1)
        self.overall.setValue(0)
        self.overall.setFormat("No images: drop images here")
        self.overall.setToolTip("Images finished (done, failed or cancelled) out of all in the list.")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip(
            "Stop: the image being decoded stops after its current step; the rest are not sent (Esc)."
        )
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip(
            "Write the reconstructions, a comparison strip per image and metrics.csv to a folder."
        )
        self.export_button.clicked.connect(self.choose_export)
        self.clear_button = QPushButton("Clear")
        self.clear_button.setToolTip("Empty the list (cached results stay in the database).")
        self.clear_button.clicked.connect(self.clear)
        bottom.addWidget(self.overall, 1)
        bottom.addWidget(self.cancel_button)
        bottom.addWidget(self.export_button)
        bottom.addWidget(self.clear_button)
        lv.addLayout(bottom)
        self.status = QLabel("Drop images to reconstruct them with the chosen model.")
        self.status.setObjectName("hint")
        self.status.setWordWrap(True)
        lv.addWidget(self.status)
        splitter.addWidget(left)

        right = QWidget()
        rv = QVBoxLayout(right)
        rv.setContentsMargins(0, 0, 0, 0)
        pair_row = QHBoxLayout()
        pair_row.addWidget(QLabel("Compare"))
        self.pair = QComboBox()
        for key, text in PAIRS:
            self.pair.addItem(text, key)
        self.pair.setToolTip("Which two images the views compare.")
        self.pair.currentIndexChanged.connect(lambda _=0: self._show(self._shown, force=True))
        self.compare_picker.changed.connect(self._update_pairs)
        pair_row.addWidget(self.pair, 1)
        rv.addLayout(pair_row)
        body = QHBoxLayout()
        self.tabs = QTabWidget()
        self.side = SideBySide()
        self.split = SplitView()
        self.heatmap = HeatmapView()
        samples_page = QWidget()
        sp = QHBoxLayout(samples_page)
        sp.setContentsMargins(0, 0, 0, 0)
        self.mean_title = QLabel("Mean of K decodes")
        self.mean_view = ZoomView()
        self.std_map = HeatmapView()
        sp.addWidget(titled(self.mean_title, self.mean_view), 1)
        sp.addWidget(self.std_map, 1)
        self.samples_sync = ViewSync([self.mean_view, self.std_map.view])
        self.samples_stack = QStackedWidget()
        self.samples_hint = QLabel(
            "Set Samples K to 2 or more: each image is then decoded K times with different seeds, and this tab "
            "shows their mean and the per-pixel standard deviation — the detail the decoder invents rather "
            "than reads from the latent."
        )
        self.samples_hint.setWordWrap(True)
        self.samples_hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.samples_stack.addWidget(self.samples_hint)
        self.samples_stack.addWidget(samples_page)
        self.tabs.addTab(self.side, "Side by side")
        self.tabs.addTab(self.split, "A/B split")
        self.tabs.addTab(self.heatmap, "Difference")
        self.tabs.addTab(self.samples_stack, "Samples (mean / std)")
        self.tabs.setTabToolTip(0, "Both images with zoom and pan kept in step (wheel, drag, double-click to fit).")
        self.tabs.setTabToolTip(1, "One image over the other; drag the line to wipe between them.")
        self.tabs.setTabToolTip(2, "Per-pixel absolute difference (mean over RGB) with its colour scale.")
        self.tabs.setTabToolTip(3, "Mean of K decodes and their per-pixel standard deviation.")
        body.addWidget(self.tabs, 1)
        self.metrics_panel = metrics_panel()
        self.metrics_panel.setToolTip(glossary.metrics_tip())
        body.addWidget(self.metrics_panel)
        rv.addLayout(body, 1)
        self.video_view = VideoReconstructView(self.ctx, self._video_model, self._video_params)
        self.mode_tabs = QTabWidget()
        self.mode_tabs.addTab(right, "Images")
        self.mode_tabs.addTab(self.video_view, "Videos")
        self.mode_tabs.setTabToolTip(0, "Compare the selected image with its reconstruction.")
        self.mode_tabs.setTabToolTip(1, "Videos: original and reconstruction in synced players, PSNR per frame.")
        splitter.addWidget(self.mode_tabs)
        self.splitter = splitter
        self.mode_tabs.currentChanged.connect(self._on_mode)
        splitter.setStretchFactor(0, 2)
        splitter.setStretchFactor(1, 3)
        splitter.setSizes([480, 700])
        outer.addWidget(splitter, 1)

        paste = QShortcut(QKeySequence(QKeySequence.StandardKey.Paste), self)
        paste.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        paste.activated.connect(self.paste_from_clipboard)
        esc = QShortcut(QKeySequence(Qt.Key.Key_Escape), self)
        esc.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        esc.activated.connect(self.cancel)
        self._show(None)

    # ---- models ----------------------------------------------------------------------------------------

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        self.refresh_models()  # checkpoints saved since (a run's status changes refresh it too)

    def _on_repo_changed(self) -> None:
        rows = self.ctx.repo.ordered()
        signature = tuple((r.id, r.info.status) for r in rows if r.info.stage == 1)
        if signature != self._run_signature:
            self.refresh_models()

    def refresh_models(self) -> None:
        """Re-read the stage-1 runs with checkpoints; keep the choices; preselect on first fill."""
        rows = self.ctx.repo.ordered() if hasattr(self.ctx, "repo") else []
        self._run_signature = tuple((r.id, r.info.status) for r in rows if r.info.stage == 1)
        models = stage1_models(self.ctx.store)
        first = not self.picker.models
        select = None
        if first:
            saved = str(self.settings.get("reconstruct/model", "") or "")
            ids = [int(v) for v in saved.split(":") if v.isdigit()] if saved else []
            if len(ids) == 2 and any(m.run_id == ids[0] for m in models):
                select = (ids[0], ids[1])
            elif (best := preferred(models)) is not None:
                select = (best.run_id, None)
        self.picker.set_models(models, select)
        self.compare_picker.set_models(models)
        self._update_pairs()
        if not models:
            self.status.setText(
                "No model yet: train a stage-1 run on the Runs page (the smoke preset takes a minute); "
                "its checkpoints appear here."
            )
        elif self.queue and self.current is None:
            self._pump()

    def _on_model_changed(self) -> None:
        choice = self.picker.current_model()
        ids = self.picker.current_ids()
        if ids is not None:
            self.settings.set("reconstruct/model", f"{ids[0]}:{ids[1]}")
        run_id = choice.run_id if choice else None
        if hasattr(self, "video_view"):
            self.video_view.pump()
        if choice is not None and run_id != getattr(self, "_steps_run", None):
            self._steps_run = run_id
            if choice.decoder_steps:
                self.steps.setValue(choice.decoder_steps)
            if choice.sampler in SAMPLERS:
                self.sampler.setCurrentText(choice.sampler)

    def params(self) -> ReconstructParams:
        return ReconstructParams(
            decoder_steps=self.steps.value(),
            sampler=self.sampler.currentText(),
            seed=self.seed.value(),
            samples=self.samples.value(),
        )

    # ---- adding images -----------------------------------------------------------------------------------

    def _on_mode(self, index: int) -> None:
        """Videos need room for two players and the plot; images keep the list wide."""
        total = sum(self.splitter.sizes()) or self.width()
        left = 300 if self.mode_tabs.widget(index) is self.video_view else 480
        self.splitter.setSizes([left, max(1, total - left)])

    def _video_model(self) -> tuple[Any, dict[str, Any] | None]:
        return self.picker.current_model(), self.picker.current()

    def _video_params(self) -> dict[str, Any]:
        return {"decoder_steps": self.steps.value(), "seed": self.seed.value()}

    def add_paths(self, paths: list[str]) -> None:
        """Files are queued as given (a bad one gets its message in place); folders are walked; video files
        go to the Videos tab."""
        items = []
        videos = [str(p) for p in paths if is_video_path(p) and not Path(p).is_dir()]
        if videos:
            self.mode_tabs.setCurrentWidget(self.video_view)
            self.video_view.add(videos)
        for p in paths:
            if str(p) in videos:
                continue
            if Path(p).is_dir():
                self._start_scan(str(p))
            else:
                items.append(ImageItem(str(p)))
        self._enqueue(items)

    def _enqueue(self, items: list[ImageItem]) -> None:
        if not items:
            return
        self._cancel_requested = False
        self.table_model.add(items)
        self.queue.extend(items)
        self._update_overall()
        self._pump()

    def _start_scan(self, folder: str) -> None:
        self._scan_token += 1
        token = self._scan_token
        self._scans[token] = folder
        self._scan_found[token] = 0
        self._cancel_requested = False
        task = FolderScan(token, folder, lambda t: t in self._cancelled_scans)
        task.signals.found.connect(self._on_scan_found)
        task.signals.finished.connect(self._on_scan_finished)
        self._tasks.add(task)
        task.setAutoDelete(False)
        self.pool.start(task)
        self.status.setText(f"Looking for images in {folder}…")
        self._update_overall()

    def _on_scan_found(self, token: int, paths: list[str]) -> None:
        if token in self._cancelled_scans:
            return
        self._scan_found[token] = self._scan_found.get(token, 0) + len(paths)
        self.status.setText(f"Looking for images in {self._scans.get(token)}: {self._scan_found[token]:,} found…")
        self._enqueue([ImageItem(p) for p in paths])

    def _on_scan_finished(self, token: int, count: int) -> None:
        folder = self._scans.pop(token, "")
        self._tasks = {t for t in self._tasks if not (isinstance(t, FolderScan) and t.token == token)}
        if token in self._cancelled_scans:
            self._cancelled_scans.discard(token)
        elif count == 0:
            self.status.setText(f"{folder}: no image files found (looked for {', '.join(_extensions())}).")
        self._maybe_idle()

    def choose_files(self) -> None:
        exts = " ".join(f"*{e}" for e in _extensions())
        videos = " ".join(f"*{e}" for e in VIDEO_EXTENSIONS)
        paths = file_dialogs.open_files(
            self, "Add images or videos", "images", f"Images and videos ({exts} {videos});;Images ({exts});;"
            f"Videos ({videos});;All files (*)"
        )  # fmt: skip
        if paths:
            self.add_paths(paths)

    def choose_folder(self) -> None:
        folder = file_dialogs.existing_folder(self, "Add a folder of images", "images")
        if folder:
            self.add_paths([folder])

    def paste_from_clipboard(self) -> None:
        md = QApplication.clipboard().mimeData()
        if md is not None and md.hasUrls():
            paths = [u.toLocalFile() for u in md.urls() if u.isLocalFile()]
            if paths:
                self.add_paths(paths)
                return
        image = QApplication.clipboard().image()
        if image.isNull():
            self.status.setText("The clipboard holds no image and no image files.")
            return
        self.add_image(image)

    def add_image(self, image: QImage) -> None:
        """A pasted or dragged image without a file: saved as a PNG in the data folder, then queued."""
        folder = Path(self.ctx.home) / "cache" / "pasted"
        folder.mkdir(parents=True, exist_ok=True)
        self._paste_count += 1
        path = folder / f"pasted-{time.strftime('%Y%m%d-%H%M%S')}-{self._paste_count}.png"
        if not image.convertToFormat(QImage.Format.Format_RGB888).save(str(path), "PNG"):
            self.status.setText(f"Could not save the pasted image to {path}.")
            return
        self.add_paths([str(path)])

    # ---- processing ----------------------------------------------------------------------------------

    def _spec(self) -> tuple[dict[str, Any] | None, dict[str, Any] | None, ReconstructParams]:
        return self.picker.current(), self.compare_picker.current(), self.params()

    def _pump(self) -> None:
        if self.current is not None:
            return
        a, _, _ = self._spec()
        if a is None and self.queue:
            self.status.setText("Choose a model first (no stage-1 run with a checkpoint yet): the images wait.")
            return
        while self.queue:
            item = self.queue.popleft()
            if item.state == QUEUED:
                break
        else:
            self._maybe_idle()
            return
        self.current = item
        item.state, item.error, item.done, item.total = CHECKING, None, 0, 0
        self.cancel_button.setEnabled(True)
        self.table_model.changed(item)
        task = CheckInput(item)
        task.signals.done.connect(self._on_checked)
        task.setAutoDelete(False)
        self._tasks.add(task)
        self.pool.start(task)

    def _on_checked(self, item: ImageItem, sha: str | None, error: str | None) -> None:
        self._tasks = {t for t in self._tasks if not (isinstance(t, CheckInput) and t.item is item)}
        if item is not self.current:
            return
        if self._cancel_requested:
            self._finish(item, CANCELLED)
            return
        if error is not None:
            item.error = error
            self._finish(item, ERROR)
            return
        item.sha256 = sha
        a, b, params = self._spec()
        if a is None:  # the model went away meanwhile
            item.state = QUEUED
            self.queue.appendleft(item)
            self.current = None
            self._pump()
            return
        model = self.picker.current_model()
        if model is not None and is_video_config(model.config):
            item.error = video_model_refusal(model.name, model.config)
            self._finish(item, ERROR)
            return
        item.key = (a["checkpoint_id"], b["checkpoint_id"] if b else None, params.hash())
        hit_a = cached_entry(self.ctx.store, sha, a["checkpoint_id"], params, item.path)
        hit_b = cached_entry(self.ctx.store, sha, b["checkpoint_id"], params, item.path) if b else None
        if hit_a is not None and (b is None or hit_b is not None):
            item.entry, item.compare = hit_a, hit_b
            if hit_b is not None:
                hit_b["label"] = "B"
            self._finish(item, DONE)
            return
        session = getattr(self.ctx, "session", None)
        if session is None:
            item.state = QUEUED
            self.queue.appendleft(item)
            self.current = None
            self.table_model.changed(item)
            self.status.setText("The session worker is not running, so nothing new can be reconstructed; cached "
                                "results still show.")  # fmt: skip
            return
        self._cancel_file = Path(self.ctx.home) / "cache" / "reconstructions" / f".cancel-{id(item)}-{time.time_ns()}"
        request = ReconstructImage(
            path=item.path,
            checkpoint_id=a["checkpoint_id"],
            params=params.as_dict(),
            compare={"checkpoint_id": b["checkpoint_id"]} if b else None,
            cancel_file=str(self._cancel_file),
        )
        item.state, item.what = RUNNING, "waiting for the worker…"
        self.table_model.changed(item)
        self.worker_calls += 1
        session.call(
            request,
            lambda ok, result, item=item: self._on_answer(item, ok, result),
            on_event=lambda event, item=item: self._on_progress(item, event),
        )

    def _on_progress(self, item: ImageItem, event: Progress | Partial) -> None:
        if item.state != RUNNING:
            return
        if isinstance(event, Partial):  # images ready, bits still coming: show them now
            if event.model == 0:
                item.entry = event.entry
            else:
                item.compare = event.entry
            self.table_model.changed(item)
            if item in self.table_model.items and (self._shown is item or self.table.currentIndex().row() < 0):
                if self._shown is item:
                    self._show(item, force=True)
                else:
                    self.table.selectRow(self.table_model.items.index(item))
            return
        item.done, item.total, item.what = event.done, event.total, event.what
        self.table_model.changed(item)

    def _on_answer(self, item: ImageItem, ok: bool, result: ImageReconstruction | str) -> None:
        if self._cancel_file is not None:
            self._cancel_file.unlink(missing_ok=True)
            self._cancel_file = None
        if item is not self.current:
            return
        if not isinstance(result, ImageReconstruction):
            text = str(result)
            item.entry = item.compare = None  # drop a partial result: nothing of this image was kept
            if self._cancel_requested and "cancelled" in text:
                self._finish(item, CANCELLED)
                return
            item.error = f"{item.path}: {text}" if not text.startswith(item.path) else text
            self._finish(item, ERROR)
            if "session worker ended" in text:
                self._restart_session()
            return
        entry, compare = result.entry, result.compare
        item.entry, item.compare = entry, compare
        if not entry or not entry.get("ok"):
            item.error = (entry or {}).get("error") or "no result"
            self._finish(item, ERROR)
            return
        if compare is not None and not compare.get("ok"):
            item.error = f"B: {compare.get('error')}"
        self._finish(item, DONE)

    def _restart_session(self) -> None:
        session = getattr(self.ctx, "session", None)
        if session is None or self._restarts >= MAX_SESSION_RESTARTS:
            self.status.setText("The session worker stopped; the remaining images wait (restart UL Studio).")
            return
        from PySide6.QtCore import QProcess

        self._restarts += 1
        if session.proc.state() == QProcess.ProcessState.NotRunning:
            session.start()

    def _finish(self, item: ImageItem, state: str) -> None:
        item.state = state
        if state == DONE:
            item.done = item.total = 0
        self.table_model.changed(item)
        if self.current is item:
            self.current = None
        if item.compare is not None and item.compare.get("ok"):
            for col in COMPARE_COLUMNS:
                self.table.setColumnHidden(col, False)
        if self.table.currentIndex().row() < 0 and state == DONE and item in self.table_model.items:
            self.table.selectRow(self.table_model.items.index(item))
        elif self._shown is item:
            self._show(item, force=True)
        self.itemFinished.emit(item)
        self._update_overall()
        self._pump()

    def _maybe_idle(self) -> None:
        if self.current is None and not self.queue and not self._scans:
            self.cancel_button.setEnabled(False)
            self._update_overall()
            counts = collections.Counter(i.state for i in self.table_model.items)
            if self.table_model.items and not self._cancel_requested:
                cached = sum(1 for i in self.table_model.items if i.state == DONE and i.cached)
                self.status.setText(
                    f"{counts[DONE]} reconstructed ({cached} from the cache), {counts[ERROR]} could not be read"
                    + (f", {counts[CANCELLED]} cancelled" if counts[CANCELLED] else "")
                    + "."
                )
            self.idle.emit()

    def is_busy(self) -> bool:
        return self.current is not None or bool(self.queue) or bool(self._scans)

    def cancel(self) -> None:
        """Stop walking folders, drop the queue (marked cancelled), and stop the image in the worker."""
        self.video_view.cancel()
        if not self.is_busy():
            return
        self._cancel_requested = True
        self._cancelled_scans.update(self._scans)
        self._scans.clear()
        dropped = 0
        for item in self.queue:
            if item.state == QUEUED:
                item.state = CANCELLED
                dropped += 1
        self.queue.clear()
        self.table_model.changed_rows(0, len(self.table_model.items) - 1)
        if self._cancel_file is not None:
            try:
                self._cancel_file.parent.mkdir(parents=True, exist_ok=True)
                self._cancel_file.touch()
            except OSError:
                pass
        self.status.setText(f"Cancelled: {dropped:,} queued image{'s' if dropped != 1 else ''} not processed.")
        self._maybe_idle()

    def apply_to_all(self) -> None:
        """Queue every image that is not running again with the current settings."""
        again = []
        for item in self.table_model.items:
            if item is self.current or item.state == QUEUED:
                continue
            item.state, item.entry, item.compare, item.error = QUEUED, None, None, None
            again.append(item)
        self._cancel_requested = False
        self.table_model.changed_rows(0, len(self.table_model.items) - 1)
        self.queue.extend(again)
        self._show(self._shown, force=True)
        self._pump()

    def clear(self) -> None:
        if self.is_busy():
            self.cancel()
        self.queue.clear()
        self.table_model.clear()
        for col in COMPARE_COLUMNS:
            self.table.setColumnHidden(col, True)
        self._show(None)
        self._update_overall()

    def _update_pairs(self) -> None:
        """The comparisons with model B are offered only when a model B is chosen."""
        has_b = self.compare_picker.current() is not None
        model = self.pair.model()
        for row in range(self.pair.count()):
            if self.pair.itemData(row) in ("input-b", "a-b"):
                item = model.item(row)
                item.setEnabled(has_b)
                item.setToolTip("" if has_b else "Choose a model in “Compare with” first.")
        if not has_b and self.pair.currentData() in ("input-b", "a-b"):
            self.pair.setCurrentIndex(self.pair.findData("input-a"))

    def _update_overall(self) -> None:
        items = self.table_model.items
        finished = sum(1 for i in items if i.state in (DONE, ERROR, CANCELLED))
        self.overall.setRange(0, max(1, len(items)))
        self.overall.setValue(finished)
        self.overall.setFormat("%v / %m images" if items else "No images: drop images here")
        self.cancel_button.setEnabled(self.is_busy())

    # ---- showing one image -----------------------------------------------------------------------------

    def _show_row(self, row: int) -> None:
        items = self.table_model.items
        self._show(items[row] if 0 <= row < len(items) else None)

    def select(self, item: ImageItem) -> None:
        self.table.selectRow(self.table_model.items.index(item))

    def _pair_images(self, item: ImageItem) -> tuple[np.ndarray | None, str, np.ndarray | None, str]:
        entry, compare = item.entry or {}, item.compare or {}
        files = entry.get("files") or {}
        b_files = compare.get("files") or {} if compare.get("ok") else {}
        a_name = entry.get("run_name", "A")
        b_name = compare.get("run_name", "B")
        a_title = f"A: {a_name} @ step {entry.get('checkpoint_step')}"
        b_title = f"B: {b_name} @ step {compare.get('checkpoint_step')}"
        key = self.pair.currentData()
        if key == "input-b" and b_files:
            return _read_rgb(files["input"]), "Input", _read_rgb(b_files["reconstruction"]), b_title
        if key == "a-b" and b_files:
            return _read_rgb(files["reconstruction"]), a_title, _read_rgb(b_files["reconstruction"]), b_title
        if key == "input-mean" and files.get("mean"):
            k = (entry.get("params") or {}).get("samples")
            return _read_rgb(files["input"]), "Input", _read_rgb(files["mean"]), f"Mean of {k} decodes"
        return _read_rgb(files["input"]), "Input", _read_rgb(files["reconstruction"]), f"Reconstruction ({a_title})"

    def _show(self, item: ImageItem | None, *, force: bool = False) -> None:
        if item is self._shown and not force:
            return
        self._shown = item
        self.metrics_panel.setText(self._metrics_html(item))
        ok = item is not None and item.state in (DONE, RUNNING) and bool(item.entry and item.entry.get("ok"))
        if not ok:
            self.side.set_images(None, "", None, "")
            self.split.set_images(None, None, "", "")
            self.heatmap.set_data(None, "", "")
            self.samples_stack.setCurrentIndex(0)
            return
        assert item is not None and item.entry is not None
        try:
            left, left_title, right, right_title = self._pair_images(item)
        except (OSError, KeyError) as exc:
            self.metrics_panel.setText(self._metrics_html(item) + f"<p style='color:#d32f2f'>{exc}</p>")
            return
        qa, qb = qimage_from_array(left), qimage_from_array(right)
        self.side.set_images(qa, left_title, qb, right_title)
        self.split.set_images(qa, qb, left_title.split(" (")[0], right_title.split(" (")[0])
        diff = abs_difference(left, right)
        self.heatmap.set_data(
            diff,
            f"|{left_title.split(':')[0].split(' (')[0]} − {right_title.split(':')[0].split(' (')[0]}| per pixel, "
            f"mean {diff.mean():.2f} levels",
            "levels",
        )
        files = item.entry.get("files") or {}
        if files.get("mean") and files.get("std"):
            k = (item.entry.get("params") or {}).get("samples")
            std = np.load(files["std"], allow_pickle=False)
            self.mean_title.setText(f"Mean of {k} decodes")
            self.mean_view.set_image(qimage_from_array(_read_rgb(files["mean"])))
            self.std_map.set_data(std, f"Std of {k} decodes per pixel, mean {std.mean():.2f} levels", "levels")
            self.samples_sync.follow(self.mean_view)
            self.samples_stack.setCurrentIndex(1)
        else:
            self.samples_stack.setCurrentIndex(0)

    def _metrics_html(self, item: ImageItem | None) -> str:
        if item is None:
            return "<p><i>Select an image to see its metrics.</i></p>"
        rows = [f"<b>{_esc(item.name)}</b>"]
        if item.state == ERROR and not (item.entry and item.entry.get("ok")):
            return rows[0] + f"<p style='color:#d32f2f'>{_esc(item.message())}</p>"
        if item.state not in (DONE, RUNNING) or not item.entry:
            return rows[0] + f"<p>{_esc(item.status_text())}</p>"
        table = ["<table cellspacing='0' cellpadding='2'>"]

        def block(entry: dict[str, Any], label: str) -> None:
            m = entry.get("metrics") or {}
            table.append(f"<tr><td colspan='2'><b>{label}</b> {_esc(entry.get('run_name', ''))} "
                         f"@ {entry.get('checkpoint_step')}</td></tr>")  # fmt: skip
            if not entry.get("ok"):
                table.append(f"<tr><td colspan='2' style='color:#d32f2f'>{_esc(entry.get('error') or '')}</td></tr>")
                return
            for name, key, fmt in (
                ("PSNR", "psnr", "{:.2f} dB"),
                ("SSIM", "ssim", "{:.4f}"),
                ("bits / pixel", "bits_per_pixel", "{:.4f}"),
                ("bits / latent dim", "bits_per_dim", "{:.3f}"),
                ("latent bits", "bits", "{:,.0f}"),
                ("decode", "decode_seconds", "{:.2f} s"),
                ("PSNR of mean", "psnr_mean", "{:.2f} dB"),
                ("mean std", "std_mean", "{:.2f} levels"),
            ):
                value = m.get(key)
                if value is None and key in ("psnr_mean", "std_mean"):
                    continue
                text = "–" if value is None else fmt.format(value)
                table.append(f"<tr><td>{name}</td><td align='right'>{text}</td></tr>")

        block(item.entry, "A")
        if item.compare is not None:
            block(item.compare, "B")
        table.append("</table>")
        e = item.entry
        p = e.get("params") or {}
        size = f"{e.get('width')}×{e.get('height')}"
        if (e.get("source_width"), e.get("source_height")) != (e.get("width"), e.get("height")):
            size += f" (from {e.get('source_width')}×{e.get('source_height')})"
        info = (f"<p>{size} px · {p.get('decoder_steps')} steps {p.get('sampler')} · seed {p.get('seed')}"
                f" · K = {p.get('samples')}{' · <i>cached</i>' if item.cached else ''}</p>")  # fmt: skip
        notices = "".join(f"<li>{_esc(n)}</li>" for n in item.notices)
        extra = f"<p style='color:#d32f2f'>{_esc(item.error)}</p>" if item.error else ""
        return rows[0] + info + "".join(table) + (f"<p>Notices:</p><ul>{notices}</ul>" if notices else "") + extra

    # ---- export ----------------------------------------------------------------------------------------

    def choose_export(self) -> None:
        folder = file_dialogs.existing_folder(self, "Export reconstructions to", "export")
        if folder:
            self.export_to(Path(folder))

    def export_to(self, folder: Path) -> ExportTask | None:
        items = [i for i in self.table_model.items if i.state in (DONE, ERROR)]
        if not items:
            self.status.setText("Nothing to export yet.")
            return None
        task = ExportTask(Path(folder), items)
        task.signals.done.connect(self._on_exported)
        task.setAutoDelete(False)
        self._tasks.add(task)
        self.export_button.setEnabled(False)
        self.status.setText(f"Exporting {len(items):,} images to {folder}…")
        self.pool.start(task)
        return task

    def _on_exported(self, folder: str, written: int, problems: list) -> None:
        self._tasks = {t for t in self._tasks if not isinstance(t, ExportTask)}
        self.export_button.setEnabled(True)
        text = f"Exported {written:,} images, comparison strips and metrics.csv to {folder}."
        if problems:
            text += f" {len(problems)} could not be written: {problems[0]}"
        self.status.setText(text)
        self.exported.emit(folder, written, problems)

    # ---- lifetime --------------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop background work (the window is closing)."""
        self._cancelled_scans.update(self._scans)
        self._count_timer.stop()
        self.pool.waitForDone(2000)


def _extensions() -> tuple[str, ...]:
    from ul_engine.core.media import IMAGE_EXTENSIONS

    return IMAGE_EXTENSIONS


def _esc(text: Any) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
