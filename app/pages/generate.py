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
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QMenu,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app import glossary
from app.pages.video_generate import VideoSamplingView
from app.pages.video_reconstruct import is_video_config
from app.widgets import file_dialogs
from app.widgets.gallery import Gallery
from app.widgets.run_combo import RunCombo
from ul_engine.core.errors import ULError
from ul_engine.core.media import is_video_path
from ul_engine.core.protocol import ImageSamples, Partial, Progress, SampleImages
from ul_engine.core.sample_settings import read_sample_settings
from ul_engine.store.paths import samples_dir

CHUNK = 4  # samples per session request: the gallery fills at this granularity
IMAGE_HINT = (
    "Samples are kept in the data folder under samples/<run name>/, each PNG with its run, checkpoint, seed and "
    "settings; Save… (or right-click a sample) copies them where you want. Drop one here to restore its "
    "settings; click one to open it in Latents (Ctrl/Shift-click selects)."
)
VIDEO_HINT = (
    "A video run: clips are kept as MP4s in the data folder under samples/<run name>/. Drop a video here to "
    "continue it from its first k frames; each player exports its clip as MP4 or GIF."
)
SAMPLERS = (("ancestral", "ancestral"), ("DDIM", "ddim"), ("DPM-Solver++ (2M)", "dpmpp2m"))


def sample_settings(path: str | Path) -> dict[str, Any] | None:
    """The settings a sample PNG carries (ul-run, ul-run-name, ul-checkpoint-sha256, ul-seed, ul-params),
    validated as a whole (`ul_engine.core.sample_settings`); None when it carries none. Raises DataError when they
    are unusable (a seed out of range, steps the config refuses, an oversized or deeply nested chunk)."""
    found = read_sample_settings(path)
    if found is None:
        return None
    params = found.params.model_dump(by_alias=True, exclude_none=True)
    if "class" not in params:
        params["class"] = None
    return {
        "run": found.run,
        "run_name": found.run_name,
        "checkpoint_sha256": found.checkpoint_sha256,
        "seed": found.seed,
        "params": params,
    }


def copy_samples(
    paths: list[str], folder: Path, *, names: list[str] | None = None, overwrite: bool = False
) -> list[Path]:
    """Copy sample PNGs into `folder` byte for byte (their settings chunks travel with them); an existing file
    is kept and the copy gets " (2)", " (3)", … unless `overwrite` (the user confirmed it in the dialog)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i, src in enumerate(paths):
        target = folder / (names[i] if names else Path(src).name)
        k = 2
        while target.exists() and not overwrite and target.resolve() != Path(src).resolve():
            target = folder / f"{Path(target.name).stem.split(' (')[0]} ({k}){target.suffix}"
            k += 1
        if target.resolve() != Path(src).resolve():
            shutil.copyfile(src, target)
        written.append(target)
    return written


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
        self._job: dict[str, Any] | None = None
        self._token = 0

        root = QVBoxLayout(self)
        root.setContentsMargins(16, 12, 16, 8)
        header = QHBoxLayout()
        title = QLabel("Generate")
        title.setObjectName("pageTitle")
        header.addWidget(title)
        header.addSpacing(16)
        header.addWidget(QLabel("Run:"))
        self.runs = RunCombo(ctx.store, stage=2)
        self.runs.setObjectName("generateRun")
        self.runs.setToolTip("A stage-2 run: its base model samples latents, its stage-1 decoder makes the images.")
        header.addWidget(self.runs)
        self.status = QLabel("")
        self.status.setObjectName("hint")
        self.status.setWordWrap(True)
        header.addWidget(self.status, 1)
        root.addLayout(header)

        body = QHBoxLayout()
        body.addWidget(self._build_form())
        right = QVBoxLayout()
        progress = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setFormat("")
        self.progress.setTextVisible(True)
        self.progress.setToolTip("Samples done out of those asked for.")
        progress.addWidget(self.progress, 1)
        right.addLayout(progress)
        self.gallery = Gallery()
        self.gallery.setObjectName("gallery")
        self.gallery.sample_clicked.connect(self._open_sample)
        self.gallery.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.gallery.customContextMenuRequested.connect(self._gallery_menu)
        self.gallery.itemSelectionChanged.connect(self._update_save)
        self.sample_added.connect(lambda _p: self._update_save())
        self.video = VideoSamplingView()
        self.video.progressed.connect(self._on_video_progress)
        self.video.finished.connect(self._on_video_finished)
        self.views = QStackedWidget()
        self.views.addWidget(self.gallery)
        self.views.addWidget(self.video)
        right.addWidget(self.views, 1)
        body.addLayout(right, 1)
        root.addLayout(body, 1)

        self.runs.run_selected.connect(self._on_run)
        ctx.repo.changed.connect(self.runs.refresh)
        self.runs.refresh()
        self._on_run(self.runs.run_id() or 0)

    def _build_form(self) -> QWidget:
        panel = QWidget()
        panel.setMaximumWidth(340)
        form = QFormLayout(panel)
        form.setContentsMargins(0, 0, 12, 0)
        self.n = QSpinBox()
        self.n.setRange(1, 1024)
        self.n.setValue(8)
        self.n.setToolTip("How many samples to draw (seeds seed, seed + 1, …).")
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setToolTip("The first sample's seed: the same seed and settings give the same image.")
        self.base_steps = QSpinBox()
        self.base_steps.setRange(1, 4096)
        self.base_steps.setToolTip("Sampling steps of the base model (noise → latent).")
        self.decoder_steps = QSpinBox()
        self.decoder_steps.setRange(1, 4096)
        self.decoder_steps.setToolTip("Sampling steps of the decoder (noise → image, given the latent).")
        self.sampler = QComboBox()
        for label, name in SAMPLERS:
            self.sampler.addItem(label, name)
        self.sampler.setToolTip("Used by both the base model and the decoder. " + glossary.tip("sampler"))
        glossary.tip_items(self.sampler, [name for _label, name in SAMPLERS])
        self.guidance = QDoubleSpinBox()
        self.guidance.setRange(0.0, 50.0)
        self.guidance.setSingleStep(0.5)
        self.guidance.setValue(1.0)
        self.guidance.setToolTip("Classifier-free guidance scale (1: none; class-conditional runs only).")
        self.class_combo = QComboBox()
        self.class_combo.setToolTip("The class to sample (class-conditional runs only).")
        form.addRow("Samples", self.n)
        form.addRow("Seed", self.seed)
        form.addRow("Base steps", self.base_steps)
        form.addRow("Decoder steps", self.decoder_steps)
        form.addRow("Sampler", self.sampler)
        form.addRow("Guidance", self.guidance)
        form.addRow("Class", self.class_combo)
        self.checkpoint_label = QLabel("checkpoint: latest")
        self.checkpoint_label.setObjectName("hint")
        self.checkpoint_label.setWordWrap(True)
        form.addRow(self.checkpoint_label)
        buttons = QHBoxLayout()
        self.generate_button = QPushButton("Generate")
        self.generate_button.setToolTip("Draw the samples (Ctrl+Return).")
        self.generate_button.clicked.connect(self.generate)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop after the current sampler step (Esc).")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.save_button = QPushButton("Save…")
        self.save_button.setToolTip("Save the selected samples (or all) as PNGs with their settings embedded.")
        self.save_menu = QMenu(self.save_button)
        self.act_save_selected = self.save_menu.addAction("Save selected…", self.save_selected)
        self.act_save_all = self.save_menu.addAction("Save all…", self.save_all)
        self.save_button.setMenu(self.save_menu)
        self.save_button.setEnabled(False)
        buttons.addWidget(self.generate_button)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.save_button)
        form.addRow(buttons)
        QShortcut(QKeySequence("Ctrl+Return"), self, activated=self.generate)
        QShortcut(QKeySequence(Qt.Key.Key_Escape), self, activated=self.cancel)
        self.hint = QLabel(IMAGE_HINT)
        self.hint.setObjectName("hint")
        self.hint.setWordWrap(True)
        form.addRow(self.hint)
        return panel

    # ---- run and settings ----------------------------------------------------------------------------

    def run_id(self) -> int | None:
        return self.runs.run_id()

    def _on_run(self, run_id: int) -> None:
        self.checkpoint_step = None
        self.checkpoint_label.setText("checkpoint: latest")
        info = self.runs.info()
        cfg = dict(info.config) if info is not None else {}
        sampling = cfg.get("sampling") or {}
        self.base_steps.setValue(int(sampling.get("base_steps", 64)))
        self.decoder_steps.setValue(int(sampling.get("decoder_steps", 64)))
        index = self.sampler.findData(sampling.get("sampler", "ancestral"))
        self.sampler.setCurrentIndex(max(0, index))
        self.guidance.setValue(float(sampling.get("guidance", 1.0)))
        classes = int((cfg.get("data") or {}).get("num_classes", 0) or 0)
        self.class_combo.clear()
        self.class_combo.addItem("any (unconditional)", None)
        for k in range(classes):
            self.class_combo.addItem(f"class {k}", k)
        self.class_combo.setEnabled(classes > 0)
        self.guidance.setEnabled(classes > 0)
        video = is_video_config(cfg)
        self.views.setCurrentWidget(self.video if video else self.gallery)
        self.sampler.setEnabled(not video)
        self.hint.setText(VIDEO_HINT if video else IMAGE_HINT)
        if video:
            self.video.configure(cfg)
        self.generate_button.setEnabled(info is not None and self._job is None)
        if info is None:
            self.status.setText("No stage-2 run with a checkpoint yet: train one (Runs → Train stage 2).")
        elif not self._job:
            self.status.setText("")

    def settings(self) -> dict[str, Any]:
        """What Generate will send (the run, checkpoint step, seeds and the `ul-params` keys)."""
        return {
            "run": self.run_id(),
            "checkpoint": self.checkpoint_step,
            "n": self.n.value(),
            "seed": self.seed.value(),
            "base_steps": self.base_steps.value(),
            "decoder_steps": self.decoder_steps.value(),
            "sampler": self.sampler.currentData(),
            "guidance": self.guidance.value(),
            "class": self.class_combo.currentData(),
        }

    def load_settings_from_png(self, path: str | Path) -> bool:
        """Restore the settings a sample PNG carries; n becomes 1, so Generate redraws that very image.

        The whole record is checked first (its values, its run, its class, its seed against this page's
        range); only then is anything changed, so a bad PNG leaves the form exactly as it was."""
        path = Path(path)
        try:
            found = sample_settings(path)
            if found is None:
                raise ULError(f"{path.name} carries no UL Studio sample settings (made by Generate or ul sample).")
            info = self._run_of(found, path.name)
            self._check_fits(found, info, path.name)
        except ULError as exc:
            self._refuse(str(exc))
            return False
        self.runs.select(info.id)
        self._on_run(info.id)
        params = found["params"]
        self.n.setValue(1)
        self.seed.setValue(int(found["seed"]))
        if params.get("base_steps"):
            self.base_steps.setValue(int(params["base_steps"]))
        if params.get("decoder_steps"):
            self.decoder_steps.setValue(int(params["decoder_steps"]))
        if params.get("sampler"):
            self.sampler.setCurrentIndex(max(0, self.sampler.findData(params["sampler"])))
        if params.get("guidance") is not None:
            self.guidance.setValue(float(params["guidance"]))
        cls = params.get("class")
        self.class_combo.setCurrentIndex(max(0, self.class_combo.findData(cls)) if cls is not None else 0)
        note = self._pin_checkpoint(info.id, found["checkpoint_sha256"])
        self.status.setText(f"Settings of {path.name} restored (run {info.name}, seed {found['seed']}). {note}")
        return True

    def _refuse(self, message: str) -> None:
        """Nothing was applied or written: say why here and in the status bar."""
        self.status.setText(f"Nothing changed: {message}")
        self.ctx.message.emit(message)

    def _run_of(self, found: dict[str, Any], name: str) -> Any:
        self.runs.refresh()
        run_id = found["run"]
        info = self.runs.infos.get(run_id) if run_id is not None else None
        if info is None or (found["run_name"] and info.name != found["run_name"]):
            by_name = [r for r in self.runs.infos.values() if r.name == found["run_name"]]
            info = by_name[0] if by_name else None
        if info is None:
            run = found["run_name"] or f"run {run_id}"
            raise ULError(f"{name} was made by {run}, which is not a stage-2 run in this data folder.")
        return info

    def _check_fits(self, found: dict[str, Any], info: Any, name: str) -> None:
        """What the record asks that this run or this form cannot do."""
        if found["seed"] > self.seed.maximum():
            raise ULError(f"{name}: ul-seed {found['seed']} is above {self.seed.maximum():,}, the largest seed "
                          f"Generate draws (ul sample --seed takes it)")  # fmt: skip
        cls = found["params"].get("class")
        classes = int((dict(info.config).get("data") or {}).get("num_classes", 0) or 0)
        if cls is not None and cls >= classes:
            raise ULError(f"{name}: class {cls} does not exist in run {info.name} ({classes} classes)")

    def _pin_checkpoint(self, run_id: int, sha: str | None) -> str:
        try:
            checkpoints = [c for c in self.ctx.store.list_checkpoints(run_id) if c.path.is_file()]
        except Exception:
            checkpoints = []
        latest = max(checkpoints, key=lambda c: c.step) if checkpoints else None
        match = [c for c in checkpoints if sha and c.sha256 == sha]
        if match:
            self.checkpoint_step = None if latest and match[0].step == latest.step else match[0].step
            label = f"step {match[0].step}" + (" (the latest)" if self.checkpoint_step is None else "")
            self.checkpoint_label.setText(f"checkpoint: {label}, from the PNG")
            return "Generate draws the same image."
        self.checkpoint_step = None
        self.checkpoint_label.setText("checkpoint: latest (the PNG's is not on disk)")
        return "Its checkpoint is no longer on disk: the latest is used, so the image may differ."

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
        return self._job is not None

    def generate(self) -> bool:
        if self._job is not None:
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
        folder = self.samples_folder()
        seeds = list(range(settings["seed"], settings["seed"] + settings["n"]))
        self._job = {
            "token": self._token,
            "settings": settings,
            "seeds": seeds,
            "next": 0,
            "done": 0,
            "chunk": 0,
            "out": str(folder),
            "cancel_file": str(Path(self.tmp) / f"cancel-{self._token}"),
            "started": time.perf_counter(),
            "cancelled": False,
        }
        self.gallery.clear()
        self._update_save()
        self.generate_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        self.progress.setFormat(f"0 / {len(seeds)}")
        self.status.setText(f"Sampling {len(seeds)} images…")
        self._send_next()
        return True

    def _generate_video(self, session: Any, settings: dict[str, Any]) -> bool:
        """Video runs: one `video.sample` request for all clips; the gallery shows players."""
        folder = self.samples_folder()
        self._token += 1
        if not self.video.start(session, settings, folder, Path(self.tmp) / f"cancel-{self._token}"):
            self.status.setText(self.video.message.text())
            return False
        self._job = {"video": True, "started": time.perf_counter()}
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
        self._job = None
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
        chunk = job["seeds"][job["next"] : job["next"] + CHUNK]
        job["next"] += len(chunk)
        job["chunk"] = len(chunk)
        s = job["settings"]
        token = job["token"]
        request = SampleImages(
            run=s["run"], checkpoint=s["checkpoint"], seeds=chunk, base_steps=s["base_steps"],
            decoder_steps=s["decoder_steps"], sampler=s["sampler"], guidance=s["guidance"], class_label=s["class"],
            out=job["out"], cancel_file=job["cancel_file"],
        )  # fmt: skip
        self.ctx.session.call(
            request,
            lambda ok, result: self._on_chunk(token, ok, result),
            on_event=lambda event: self._on_chunk_progress(token, event),
        )

    def _on_chunk_progress(self, token: int, event: Progress | Partial) -> None:
        job = self._job
        if job is None or token != job["token"] or not isinstance(event, Progress):
            return
        self._show_progress(event.done / max(1, event.total))

    def _on_chunk(self, token: int, ok: bool, result: ImageSamples | str) -> None:
        job = self._job
        if job is None or token != job["token"]:
            return
        if not isinstance(result, ImageSamples):
            self._finish(f"Could not generate: {result}")
            return
        for item in result.outputs:
            self.gallery.add_sample(item["path"], item["seed"])
            job["done"] += 1
            self.sample_added.emit(item["path"])
        self._show_progress(0.0)
        if result.cancelled or job["cancelled"]:
            self._finish(f"Cancelled: {job['done']} of {len(job['seeds'])} samples.", cancelled=True)
        elif job["next"] < len(job["seeds"]):
            self._send_next()
        else:
            seconds = time.perf_counter() - job["started"]
            rate = job["done"] / seconds if seconds > 0 else 0.0
            self._finish(f"{job['done']} samples in {seconds:.1f} s ({rate:.2f} samples/s), saved in {job['out']}.")

    def _show_progress(self, chunk_fraction: float) -> None:
        job = self._job
        if job is None:
            return
        total = len(job["seeds"])
        self.progress.setValue(round(1000 * job["done"] / total))  # the bar shows what its label says
        text = f"{job['done']} / {total}"
        if job["next"] > job["done"] and chunk_fraction > 0:
            text += f" · next {job['chunk']}: {100 * min(1.0, chunk_fraction):.0f} %"
        self.progress.setFormat(text)

    # ---- saving --------------------------------------------------------------------------------------

    def _update_save(self) -> None:
        paths, selected = self.gallery.paths(), self.gallery.selected_paths()
        self.save_button.setEnabled(bool(paths))
        self.act_save_selected.setEnabled(bool(selected))
        self.act_save_selected.setText(f"Save selected ({len(selected)})…" if selected else "Save selected…")
        self.act_save_all.setText(f"Save all ({len(paths)})…" if paths else "Save all…")

    def _gallery_menu(self, pos: Any) -> QMenu | None:
        item = self.gallery.itemAt(pos)
        if item is not None and not item.isSelected():  # right-click on another sample: it alone is meant
            self.gallery.clearSelection()
            item.setSelected(True)
        paths = self.gallery.paths()
        if not paths:
            return None
        menu = QMenu(self)
        selected = self.gallery.selected_paths()
        if len(selected) == 1:
            menu.addAction("Save this sample…", self.save_selected)
        elif selected:
            menu.addAction(f"Save {len(selected)} selected…", self.save_selected)
        menu.addAction(f"Save all ({len(paths)})…", self.save_all)
        if selected:
            menu.addSeparator()
            menu.addAction("Open in Latents", lambda p=selected[0]: self._open_sample(p))
        menu.popup(self.gallery.viewport().mapToGlobal(pos))
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
            written = copy_samples(paths, folder, names=names, overwrite=overwrite)
        except OSError as exc:
            self._refuse(f"could not save to {folder}: {exc.strerror or exc}")
            return []
        where = written[0] if len(written) == 1 else written[0].parent if written else None
        message = f"Saved {len(written)} sample{'s' if len(written) != 1 else ''} to {where} (settings embedded)."
        self.status.setText(message)
        self.ctx.message.emit(message)
        return written

    def cancel(self) -> None:
        job = self._job
        if job is not None and job.get("video"):
            self.video.cancel()
            self.cancel_button.setEnabled(False)
            self.status.setText("Cancelling after the current step…")
            return
        if job is None or job["cancelled"]:
            return
        job["cancelled"] = True
        Path(job["cancel_file"]).touch()
        self.cancel_button.setEnabled(False)
        self.status.setText("Cancelling after the current step…")

    def _finish(self, message: str, *, cancelled: bool = False) -> None:
        job = self._job
        self._job = None
        self.status.setText(message)
        self.generate_button.setEnabled(self.run_id() is not None)
        self.cancel_button.setEnabled(False)
        if job is not None:
            total = len(job["seeds"])
            self.progress.setValue(round(1000 * job["done"] / total))
            self.progress.setFormat(f"{job['done']} / {total}")
            Path(job["cancel_file"]).unlink(missing_ok=True)
            seconds = time.perf_counter() - job["started"]
            self.finished.emit({"samples": job["done"], "seconds": seconds, "cancelled": cancelled})

    def _open_sample(self, path: str) -> None:
        run_id = self.run_id()
        try:
            found = sample_settings(path)
        except ULError:
            found = None
        if found and found["run"] is not None:
            run_id = found["run"]
        self.open_in_latents.emit(path, int(run_id or 0))
