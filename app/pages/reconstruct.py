"""The Reconstruct page: drop images (files, folders, pasted images), pick a model and the decoder's
settings, and compare each reconstruction with its input — or with a second model's — side by side, with a
split line, as a difference heatmap, and as the mean and spread of K decodes. Videos go to the Videos tab.

How the work flows (the window never touches torch; background work goes through `run_in_background`):
- Folders are walked off the GUI thread (lazily, so thousands of files show up as they are found and a
  cancel stops the walk).
- One image at a time (`JobQueue`): its header is probed (empty, not an image, a decompression bomb are
  refused here) and its bytes hashed; the cache in the database is looked up with (sha256, checkpoint id,
  params hash); a hit is shown at once with no worker call. Meanwhile its input is decoded and shown.
- A miss goes to the resident session worker as one `image.reconstruct` request; its progress lines
  drive the row's progress bar. Cancel stops sending (the rest of the queue is marked cancelled) and
  creates the request's cancel file, which the worker checks after every decoder step.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QThreadPool, QTimer, Signal
from PySide6.QtGui import QImage, QKeySequence, QShortcut
from PySide6.QtWidgets import QApplication, QLabel, QSplitter, QTabWidget, QVBoxLayout, QWidget

from app.models.jobs import CANCELLED, DONE, ERROR, ImageJob, counts
from app.models.reconstructions import export_jobs, has_result
from app.pages.reconstruct_images import ImageReconstructions, Spec
from app.pages.video_reconstruct import VideoReconstructView
from app.widgets import file_dialogs
from app.widgets.checkpoint_picker import preferred, stage1_models
from app.widgets.compare_views import CompareViews
from app.widgets.image_job_list import ImageJobList
from app.widgets.metrics_table import ImageTableModel
from app.widgets.reconstruct_settings import ReconstructSettings
from app.workers.background import BackgroundTask, run_in_background
from ul_engine.core.media import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, is_video_path
from ul_engine.core.reconstruction import ReconstructParams


class ReconstructPage(QWidget):
    itemFinished = Signal(object)  # an ImageJob that is done, failed or was cancelled
    idle = Signal()  # nothing queued, nothing running, no folder being walked
    exported = Signal(str, int, list)  # folder, images written, problems

    def __init__(self, ctx: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.settings = ctx.settings
        self.table_model = ImageTableModel(self)
        self._export: BackgroundTask[tuple[int, list[str]]] | None = None
        self._run_signature: tuple[Any, ...] | None = None
        self._user_chose = False  # the user picked the row shown: the page no longer moves the selection
        self._paste_count = 0
        self._build()
        self.images = ImageReconstructions(ctx, self._spec, self.picker.current_model, self)
        self.images.changed.connect(self.table_model.changed)
        self.images.started.connect(self._on_started)
        self.images.partial.connect(lambda job: self._follow(job, force=True))
        self.images.finished.connect(self._on_finished)
        self.images.message.connect(self.status.setText)
        self.images.idle.connect(self._maybe_idle)
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
        self.controls = ReconstructSettings(self.settings)
        outer.addWidget(self.controls)
        c = self.controls
        self.picker, self.compare_picker, self.steps, self.sampler = c.picker, c.compare_picker, c.steps, c.sampler
        self.seed, self.samples, self.apply_button = c.seed, c.samples, c.apply_button
        self.apply_button.clicked.connect(self.apply_to_all)
        self.picker.changed.connect(self._on_model_changed)

        self.job_list = ImageJobList(self.table_model)
        j = self.job_list
        self.drop_zone, self.table, self.overall, self.status = j.drop_zone, j.table, j.overall, j.status
        self.cancel_button, self.export_button, self.clear_button = j.cancel_button, j.export_button, j.clear_button
        self.drop_zone.filesDropped.connect(self.add_paths)
        self.drop_zone.imageDropped.connect(self.add_image)
        self.drop_zone.addFilesClicked.connect(self.choose_files)
        self.drop_zone.addFolderClicked.connect(self.choose_folder)
        self.drop_zone.pasteClicked.connect(self.paste_from_clipboard)
        self.cancel_button.clicked.connect(self.cancel)
        self.export_button.clicked.connect(self.choose_export)
        self.clear_button.clicked.connect(self.clear)
        self.table.selectionModel().currentRowChanged.connect(lambda cur, _prev: self._show_row(cur.row()))

        self.views = CompareViews()
        v = self.views
        self.pair, self.tabs, self.side, self.split, self.heatmap = v.pair, v.tabs, v.side, v.split, v.heatmap
        self.samples_stack, self.std_map, self.metrics_panel = v.samples_stack, v.std_map, v.metrics_panel
        self.compare_picker.changed.connect(self._update_pairs)
        self.video_view = VideoReconstructView(self.ctx, self._video_model, self.controls.video_params)
        self.mode_tabs = QTabWidget()
        self.mode_tabs.addTab(self.views, "Images")
        self.mode_tabs.addTab(self.video_view, "Videos")
        self.mode_tabs.setTabToolTip(0, "Compare the selected image with its reconstruction.")
        self.mode_tabs.setTabToolTip(1, "Videos: original and reconstruction in synced players, PSNR per frame.")
        self.mode_tabs.currentChanged.connect(self._on_mode)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(self.job_list)
        self.splitter.addWidget(self.mode_tabs)
        self.splitter.setStretchFactor(0, 2)
        self.splitter.setStretchFactor(1, 3)
        self.splitter.setSizes([480, 700])
        outer.addWidget(self.splitter, 1)

        for keys, action in ((QKeySequence(QKeySequence.StandardKey.Paste), self.paste_from_clipboard),
                             (QKeySequence(Qt.Key.Key_Escape), self.cancel)):  # fmt: skip
            shortcut = QShortcut(keys, self)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(action)

    @property
    def _shown(self) -> ImageJob | None:
        return self.views.shown

    # ---- models ----------------------------------------------------------------------------------------

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        self.refresh_models()  # checkpoints saved since (a run's status changes refresh it too)

    def _stage1_signature(self) -> tuple[Any, ...]:
        rows = self.ctx.repo.ordered() if hasattr(self.ctx, "repo") else []
        return tuple((r.id, r.info.status) for r in rows if r.info.stage == 1)

    def _on_repo_changed(self) -> None:
        if self._stage1_signature() != self._run_signature:
            self.refresh_models()

    def refresh_models(self) -> None:
        """Re-read the stage-1 runs with checkpoints; keep the choices; preselect on first fill."""
        self._run_signature = self._stage1_signature()
        models = stage1_models(self.ctx.store)
        select: tuple[int, int | None] | None = None
        if not self.picker.models:
            saved = self.controls.saved_model()
            if saved is not None and any(m.run_id == saved[0] for m in models):
                select = saved
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
        elif self.images.queue.waiting and self.images.queue.current is None:
            self.images.pump()

    def _on_model_changed(self) -> None:
        self.video_view.pump()

    def _update_pairs(self) -> None:
        self.views.update_pairs(self.compare_picker.current() is not None)

    def params(self) -> ReconstructParams:
        return self.controls.params()

    def _video_model(self) -> tuple[Any, dict[str, Any] | None]:
        return self.picker.current_model(), self.picker.current()

    # ---- adding images -----------------------------------------------------------------------------------

    def _on_mode(self, index: int) -> None:
        """Videos need room for two players and the plot; images keep the list wide."""
        total = sum(self.splitter.sizes()) or self.width()
        left = 300 if self.mode_tabs.widget(index) is self.video_view else 480
        self.splitter.setSizes([left, max(1, total - left)])

    def add_paths(self, paths: list[str]) -> None:
        """Files are queued as given (a bad one gets its message in place); folders are walked; video files
        go to the Videos tab."""
        videos = [str(p) for p in paths if is_video_path(p) and not Path(p).is_dir()]
        if videos:
            self.mode_tabs.setCurrentWidget(self.video_view)
            self.video_view.add(videos)
        jobs = []
        for p in paths:
            if str(p) in videos:
                continue
            if Path(p).is_dir():
                self._start_scan(str(p))
            else:
                jobs.append(ImageJob(str(p)))
        self._enqueue(jobs)

    def _enqueue(self, jobs: list[ImageJob]) -> None:
        if not jobs:
            return
        self.table_model.add(jobs)
        self._update_overall()
        self.images.add(jobs)

    def _start_scan(self, folder: str) -> None:
        self.images.scan(folder, self._enqueue)
        self._update_overall()

    def choose_files(self) -> None:
        exts = " ".join(f"*{e}" for e in IMAGE_EXTENSIONS)
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
        if not image.convertToFormat(QImage.Format.Format_RGB888).save(str(path)):  # the format follows the .png suffix
            self.status.setText(f"Could not save the pasted image to {path}.")
            return
        self.add_paths([str(path)])

    # ---- processing ----------------------------------------------------------------------------------

    def _spec(self) -> Spec:
        return self.picker.current(), self.compare_picker.current(), self.params()

    def _on_started(self, job: ImageJob) -> None:
        self.cancel_button.setEnabled(True)
        self.table_model.changed(job)
        self._follow(job)

    def _on_finished(self, job: ImageJob) -> None:
        if job.compare is not None and job.compare.get("ok"):
            self.job_list.show_compare_columns(True)
        self._follow(job, force=True)
        self.itemFinished.emit(job)
        self._update_overall()

    def _follow(self, job: ImageJob, *, force: bool = False) -> None:
        """Show `job` when the user has not picked a row and what is shown has no result: the running
        image's input while it decodes, then the first reconstruction. A shown job is redrawn (`force`)."""
        if job not in self.table_model.items:
            return
        shown = self._shown
        if shown is job:
            if force:
                self.views.show_job(job, force=True)
            return
        if self._user_chose and self.table.currentIndex().row() >= 0:
            return
        if job.finished and not has_result(job):
            return  # a failure does not take the place of what is shown
        if shown is None or not has_result(shown):
            self._select(job)

    def _select(self, job: ImageJob) -> None:
        """Select (and so show) a row on the page's own account."""
        user_chose = self._user_chose
        self.table.selectRow(self.table_model.items.index(job))
        self._user_chose = user_chose

    def _maybe_idle(self) -> None:
        if self.is_busy():
            return
        self.cancel_button.setEnabled(False)
        self._update_overall()
        items = self.table_model.items
        if items and not self.images.queue.cancel_requested:
            n = counts(items)
            cached = sum(1 for i in items if i.state == DONE and i.cached)
            self.status.setText(
                f"{n[DONE]} reconstructed ({cached} from the cache), {n[ERROR]} could not be read"
                + (f", {n[CANCELLED]} cancelled" if n[CANCELLED] else "")
                + "."
            )
        self.idle.emit()

    def is_busy(self) -> bool:
        return self.images.busy()

    @property
    def worker_calls(self) -> int:
        return self.images.worker_calls

    @property
    def _scans(self) -> dict[Any, str]:
        return self.images.scans

    def cancel(self) -> None:
        """Stop walking folders, drop the queue (marked cancelled), and stop the image in the worker."""
        self.video_view.cancel()
        if not self.is_busy():
            return
        n = len(self.images.cancel())
        self.table_model.changed_rows(0, len(self.table_model.items) - 1)
        self.status.setText(f"Cancelled: {n:,} queued image{'s' if n != 1 else ''} not processed.")
        self._maybe_idle()

    def apply_to_all(self) -> None:
        """Queue every image that is not running again with the current settings."""
        self.images.requeue(self.table_model.items)
        self.table_model.changed_rows(0, len(self.table_model.items) - 1)
        self.views.show_job(self._shown, force=True)
        self.images.pump()

    def clear(self) -> None:
        if self.is_busy():
            self.cancel()
        self.images.queue.waiting.clear()
        self.table_model.clear()
        self.job_list.show_compare_columns(False)
        self._user_chose = False
        self.views.show_job(None)
        self._update_overall()

    def _update_overall(self) -> None:
        items = self.table_model.items
        finished = sum(1 for i in items if i.finished)
        self.overall.setRange(0, max(1, len(items)))
        self.overall.setValue(finished)
        self.overall.setFormat("%v / %m images" if items else "No images: drop images here")
        self.cancel_button.setEnabled(self.is_busy())

    # ---- showing one image -----------------------------------------------------------------------------

    def _show_row(self, row: int) -> None:
        items = self.table_model.items
        self._user_chose = True
        self.views.show_job(items[row] if 0 <= row < len(items) else None)

    def select(self, job: ImageJob) -> None:
        self.table.selectRow(self.table_model.items.index(job))

    # ---- export ----------------------------------------------------------------------------------------

    def choose_export(self) -> None:
        folder = file_dialogs.existing_folder(self, "Export reconstructions to", "export")
        if folder:
            self.export_to(Path(folder))

    def export_to(self, folder: Path) -> BackgroundTask[tuple[int, list[str]]] | None:
        jobs = [i for i in self.table_model.items if i.state in (DONE, ERROR)]
        if not jobs:
            self.status.setText("Nothing to export yet.")
            return None
        self.export_button.setEnabled(False)
        self.status.setText(f"Exporting {len(jobs):,} images to {folder}…")
        self._export = run_in_background(
            lambda _task: export_jobs(Path(folder), jobs),
            done=lambda result: self._on_exported(str(folder), *result),
            failed=lambda message: self._on_exported(str(folder), 0, [message]),
        )
        return self._export

    def _on_exported(self, folder: str, written: int, problems: list[str]) -> None:
        self._export = None
        self.export_button.setEnabled(True)
        text = f"Exported {written:,} images, comparison strips and metrics.csv to {folder}."
        if problems:
            text += f" {len(problems)} could not be written: {problems[0]}"
        self.status.setText(text)
        self.exported.emit(folder, written, problems)

    # ---- lifetime --------------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop background work (the window is closing)."""
        self.images.stop_scans()
        self._count_timer.stop()
        QThreadPool.globalInstance().waitForDone(2000)
