"""The Generate page: sample images with a stage-2 run.

Choose the run, how many samples, the first seed, the base-model and decoder steps, the sampler, the
guidance scale and (for a class-conditional run) the class. Samples are drawn a few at a time by the
session worker, so the gallery fills while the rest are still sampling; Cancel stops between two sampler
steps. Each PNG carries the run, its checkpoint's sha256, the seed and the parameters (as `ul sample`
writes them): dropping one back onto this page restores those settings, checkpoint included, so
Generate draws the same image again. Click a sample to open it in Latents.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import QHBoxLayout, QLabel, QMenu, QProgressBar, QStackedWidget, QVBoxLayout, QWidget

from app.models import generate as model
from app.pages.generate_form import GenerateForm, gallery_menu
from app.pages.video_generate import VideoSamplingView
from app.pages.video_reconstruct import is_video_config
from app.widgets import file_dialogs
from app.widgets.gallery import Gallery
from app.widgets.run_combo import RunCombo
from ul_engine.core.errors import ULError
from ul_engine.core.media import is_video_path
from ul_engine.core.protocol import ImageSamples, Partial, Progress
from ul_engine.store.paths import samples_dir


class GeneratePage(QWidget):
    open_in_latents = Signal(str, int)  # the sample's path, its run
    sample_added = Signal(str)
    finished = Signal(dict)  # {"samples", "seconds", "cancelled"}

    def __init__(self, ctx: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setAcceptDrops(True)
        self.tmp = tempfile.mkdtemp(prefix="ul-generate-")
        self.destroyed.connect(lambda _=None, d=self.tmp: shutil.rmtree(d, ignore_errors=True))
        self.checkpoint_step: int | None = None  # pinned by a dropped PNG; None: the latest
        self._job: model.SampleJob | None = None
        self._video_started: float | None = None  # a video run's sampling (one request for all clips)
        self._token = 0

        root = QVBoxLayout(self)
        root.setContentsMargins(16, 12, 16, 8)
        root.addLayout(self._build_header())
        body = QHBoxLayout()
        self.form = GenerateForm()
        body.addWidget(self.form)
        body.addLayout(self._build_results(), 1)
        root.addLayout(body, 1)
        self._alias_form()
        self._connect()

        ctx.repo.changed.connect(self.runs.refresh)
        self.runs.refresh()
        self._on_run(self.runs.run_id() or 0)

    def _build_header(self) -> QHBoxLayout:
        header = QHBoxLayout()
        title = QLabel("Generate")
        title.setObjectName("pageTitle")
        header.addWidget(title)
        header.addSpacing(16)
        header.addWidget(QLabel("Run:"))
        self.runs = RunCombo(self.ctx.store, stage=2)
        self.runs.setObjectName("generateRun")
        self.runs.setToolTip("A stage-2 run: its base model samples latents, its stage-1 decoder makes the images.")
        header.addWidget(self.runs)
        self.status = QLabel("")
        self.status.setObjectName("hint")
        self.status.setWordWrap(True)
        header.addWidget(self.status, 1)
        return header

    def _build_results(self) -> QVBoxLayout:
        right = QVBoxLayout()
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setFormat("")
        self.progress.setTextVisible(True)
        self.progress.setToolTip("Samples done out of those asked for.")
        right.addWidget(self.progress)
        self.gallery = Gallery()
        self.gallery.setObjectName("gallery")
        self.gallery.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.video = VideoSamplingView()
        self.views = QStackedWidget()
        self.views.addWidget(self.gallery)
        self.views.addWidget(self.video)
        right.addWidget(self.views, 1)
        return right

    def _alias_form(self) -> None:
        """The form's fields by the names the page (and its tests) use."""
        f = self.form
        self.n, self.seed, self.base_steps, self.decoder_steps = f.n, f.seed, f.base_steps, f.decoder_steps
        self.sampler, self.guidance, self.class_combo = f.sampler, f.guidance, f.class_combo
        self.generate_button, self.cancel_button, self.save_button = f.generate_button, f.cancel_button, f.save_button
        self.checkpoint_label, self.act_save_selected, self.act_save_all = (
            f.checkpoint_label,
            f.act_save_selected,
            f.act_save_all,
        )

    def _connect(self) -> None:
        self.generate_button.clicked.connect(self.generate)
        self.cancel_button.clicked.connect(self.cancel)
        self.act_save_selected.triggered.connect(self.save_selected)
        self.act_save_all.triggered.connect(self.save_all)
        QShortcut(QKeySequence("Ctrl+Return"), self, self.generate)
        QShortcut(QKeySequence(Qt.Key.Key_Escape), self, self.cancel)
        self.gallery.sample_clicked.connect(self._open_sample)
        self.gallery.customContextMenuRequested.connect(self._gallery_menu)
        self.gallery.itemSelectionChanged.connect(self._update_save)
        self.sample_added.connect(lambda _p: self._update_save())
        self.video.progressed.connect(self._on_video_progress)
        self.video.finished.connect(self._on_video_finished)
        self.runs.run_selected.connect(self._on_run)

    # ---- run and settings ----------------------------------------------------------------------------

    def run_id(self) -> int | None:
        return self.runs.run_id()

    def _on_run(self, run_id: int) -> None:
        self.checkpoint_step = None
        info = self.runs.info()
        cfg = dict(info.config) if info is not None else {}
        form = model.run_form(cfg, video=is_video_config(cfg))
        self.form.apply_run(form, model.size_note(form, info.name) if info is not None else "")
        self.views.setCurrentWidget(self.video if form.video else self.gallery)
        if form.video:
            self.video.configure(cfg)
        self.generate_button.setEnabled(info is not None and not self.busy())
        if info is None:
            self.status.setText("No stage-2 run with a checkpoint yet: train one (Runs → Train stage 2).")
        elif not self.busy():
            self.status.setText("")

    def settings(self) -> dict[str, Any]:
        """What Generate will send (the run, checkpoint step, seeds and the `ul-params` keys)."""
        return {"run": self.run_id(), "checkpoint": self.checkpoint_step, **self.form.values()}

    def load_settings_from_png(self, path: str | Path) -> bool:
        """Restore the settings a sample PNG carries; n becomes 1, so Generate redraws that very image.

        The whole record is checked first (its values, its run, its class, its seed against this page's
        range); only then is anything changed, so a bad PNG leaves the form exactly as it was."""
        path = Path(path)
        try:
            found = model.sample_settings(path)
            if found is None:
                raise ULError(f"{path.name} carries no UL Studio sample settings (made by Generate or ul sample).")
            self.runs.refresh()
            info = model.run_of(found, self.runs.infos.values(), path.name)
            model.check_fits(found, info, path.name, self.seed.maximum())
        except ULError as exc:
            self._refuse(str(exc))
            return False
        self.runs.select(info.id)
        self._on_run(info.id)
        self.form.apply_params(int(found["seed"]), found["params"])
        pin = model.pin_checkpoint(self._checkpoints(info.id), found["checkpoint_sha256"])
        self.checkpoint_step = pin.step
        self.checkpoint_label.setText(pin.label)
        self.status.setText(f"Settings of {path.name} restored (run {info.name}, seed {found['seed']}). {pin.note}")
        return True

    def _checkpoints(self, run_id: int) -> list[Any]:
        try:
            return [c for c in self.ctx.store.list_checkpoints(run_id) if c.path.is_file()]
        except Exception:  # a locked database: the latest is used
            return []

    def _refuse(self, message: str) -> None:
        """Nothing was applied or written: say why here and in the status bar."""
        self.status.setText(f"Nothing changed: {message}")
        self.ctx.message.emit(message)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        files = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if files:
            event.acceptProposedAction()
            if is_video_path(files[0]):
                self.video.set_context(files[0])  # a clip to continue (video runs)
            else:
                self.load_settings_from_png(files[0])

    def samples_folder(self) -> Path:
        """Where the chosen run's samples go: samples/<run name>/ in the data folder."""
        info = self.runs.info()
        name = info.name if info is not None else f"run {self.run_id()}"
        return samples_dir(self.ctx.store.home, name)

    def is_video_run(self) -> bool:
        info = self.runs.info()
        return info is not None and is_video_config(dict(info.config))

    # ---- generating ----------------------------------------------------------------------------------

    def busy(self) -> bool:
        return self._job is not None or self._video_started is not None

    def generate(self) -> bool:
        if self.busy():
            return False
        session = getattr(self.ctx, "session", None)
        if session is None:
            self.status.setText("The session worker is not running: Generate needs it to sample.")
            return False
        settings = self.settings()
        if settings["run"] is None:
            self.status.setText("Choose a stage-2 run first.")
            return False
        if self.is_video_run():
            return self._generate_video(session, settings)
        self._token += 1
        job = self._job = model.SampleJob(self._token, settings, str(self.samples_folder()), Path(self.tmp))
        self.gallery.clear()
        self._update_save()
        self.generate_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        self.progress.setFormat(f"0 / {job.total}")
        self.status.setText(f"Sampling {job.total} images…")
        self._send_next()
        return True

    def _generate_video(self, session: Any, settings: dict[str, Any]) -> bool:
        """Video runs: one `video.sample` request for all clips; the gallery shows players."""
        folder = self.samples_folder()
        self._token += 1
        if not self.video.start(session, settings, folder, Path(self.tmp) / f"cancel-{self._token}"):
            self.status.setText(self.video.message.text())
            return False
        self._video_started = time.perf_counter()
        self.generate_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        self.progress.setFormat("")
        self.status.setText(self.video.message.text())
        return True

    def _on_video_progress(self, done: int, total: int) -> None:
        self.progress.setValue(int(1000 * done / max(1, total)))
        self.progress.setFormat(f"step {done} / {total}")

    def _on_video_finished(self, summary: dict) -> None:
        self._video_started = None
        self.cancel_button.setEnabled(False)
        self.status.setText(summary["message"])
        self.generate_button.setEnabled(self.run_id() is not None)
        self.progress.setValue(1000 if summary["ok"] else 0)
        self.progress.setFormat(f"{summary['clips']} clips")
        cancelled = summary["message"].startswith("Cancelled")
        self.finished.emit({"samples": summary["clips"], "seconds": summary["seconds"], "cancelled": cancelled})

    def _send_next(self) -> None:
        job = self._job
        assert job is not None
        token = job.token
        self.ctx.session.call(
            job.request(job.next_chunk()),
            lambda ok, result: self._on_chunk(token, ok, result),
            on_event=lambda event: self._on_chunk_progress(token, event),
        )

    def _on_chunk_progress(self, token: int, event: Progress | Partial) -> None:
        job = self._job
        if job is None or token != job.token or not isinstance(event, Progress):
            return
        self._show_progress(event.done / max(1, event.total))

    def _on_chunk(self, token: int, ok: bool, result: ImageSamples | str) -> None:
        job = self._job
        if job is None or token != job.token:
            return
        if not isinstance(result, ImageSamples):
            self._finish(f"Could not generate: {result}")
            return
        for item in result.outputs:
            self.gallery.add_sample(item["path"], item["seed"], item.get("class"))
            job.done += 1
            self.sample_added.emit(item["path"])
        self._show_progress(0.0)
        if result.cancelled or job.cancelled:
            self._finish(f"Cancelled: {job.done} of {job.total} samples.", cancelled=True)
        elif job.more():
            self._send_next()
        else:
            self._finish(job.summary())

    def _show_progress(self, chunk_fraction: float) -> None:
        if self._job is not None:
            value, text = self._job.bar(chunk_fraction)
            self.progress.setValue(value)
            self.progress.setFormat(text)

    # ---- saving --------------------------------------------------------------------------------------

    def _update_save(self) -> None:
        paths, selected = self.gallery.paths(), self.gallery.selected_paths()
        self.save_button.setEnabled(bool(paths))
        self.act_save_selected.setEnabled(bool(selected))
        self.act_save_selected.setText(f"Save selected ({len(selected)})…" if selected else "Save selected…")
        self.act_save_all.setText(f"Save all ({len(paths)})…" if paths else "Save all…")

    def _gallery_menu(self, pos: Any) -> QMenu | None:
        menu = gallery_menu(self, self.gallery, pos, self.save_selected, self.save_all, self._open_sample)
        self.last_menu = menu
        return menu

    def save_selected(self) -> list[Path]:
        return self.save_samples(self.gallery.selected_paths())

    def save_all(self) -> list[Path]:
        return self.save_samples(self.gallery.paths())

    def save_samples(self, paths: list[str]) -> list[Path]:
        """Copy samples (PNG files with their `ul-*` settings chunks) to a file or folder the user chooses."""
        if not paths:
            self.status.setText("Nothing to save: generate samples first.")
            return []
        if len(paths) == 1:
            target, _ = file_dialogs.save_file(self, "Save the sample", "samples", Path(paths[0]).name,
                                               "PNG image (*.png)")  # fmt: skip
            if not target:
                return []
            target_path = Path(target) if Path(target).suffix else Path(target + ".png")
            folder, names, overwrite = target_path.parent, [target_path.name], True
        else:
            chosen = file_dialogs.existing_folder(self, f"Save {len(paths)} samples to", "samples")
            if not chosen:
                return []
            folder, names, overwrite = Path(chosen), None, False
        try:
            written = model.copy_samples(paths, folder, names=names, overwrite=overwrite)
        except OSError as exc:
            self._refuse(f"could not save to {folder}: {exc.strerror or exc}")
            return []
        message = model.saved_message(written)
        self.status.setText(message)
        self.ctx.message.emit(message)
        return written

    def cancel(self) -> None:
        if self._video_started is not None:
            self.video.cancel()
            self.cancel_button.setEnabled(False)
            self.status.setText("Cancelling after the current step…")
            return
        job = self._job
        if job is None or job.cancelled:
            return
        job.cancel()
        self.cancel_button.setEnabled(False)
        self.status.setText("Cancelling after the current step…")

    def _finish(self, message: str, *, cancelled: bool = False) -> None:
        job = self._job
        self._job = None
        self.status.setText(message)
        self.generate_button.setEnabled(self.run_id() is not None)
        self.cancel_button.setEnabled(False)
        if job is not None:
            value, text = job.bar()
            self.progress.setValue(value)
            self.progress.setFormat(text)
            job.close()
            self.finished.emit({"samples": job.done, "seconds": job.seconds(), "cancelled": cancelled})

    def _open_sample(self, path: str) -> None:
        run_id = self.run_id()
        try:
            found = model.sample_settings(path)
        except ULError:
            found = None
        if found and found["run"] is not None:
            run_id = found["run"]
        self.open_in_latents.emit(path, int(run_id or 0))
