"""The Latents page: look inside a run's latent space.

Open (or drop) an image, or click a sample on the Generate page: its latent appears as one tile per channel
on a shared colour scale, a PCA-to-RGB picture, and the bits it costs under the prior, in total and per
position. Four scrubbers decode while you drag (a fast preview with few decoder steps, the full decode when
you let go): interpolate between images A and B, push the latent to a noise level and let the prior (or the
stage-2 base model) denoise it back, edit one channel, and step through a generated sample's trajectory.
Every scrub exports as MP4 and GIF. All the work happens in the session worker; this page never loads torch.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app import glossary
from app.widgets import file_dialogs
from app.widgets.latent_tiles import SEQUENTIAL_STOPS, ColorBar, LatentTiles, PixelImage
from app.widgets.run_combo import RunCombo
from app.widgets.scrubber import FilmStrip, Scrubber
from ul_engine.core.errors import ULError
from ul_engine.core.protocol import (
    AnalyzeLatent,
    DecodeFrames,
    ExportedFrames,
    ExportFrames,
    LatentAnalysis,
    LatentFrames,
    TraceSample,
    Trajectory,
    to_wire,
)
from ul_engine.core.sample_settings import read_sample_settings

IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.webp *.bmp *.tif *.tiff *.gif)"
SLOTS = ("a", "b")
EXPORT_CHUNK = 4  # frames per decode request of an export: the progress advances at this granularity
SCRUBS = ("interpolate", "noise", "channel", "trajectory")
OFFSET_RANGE = 3.0  # the channel-offset slider spans ±this
PREVIEW_DENOISER_STEPS = 8  # the noise scrub's prior/base steps over the whole λ range while dragging


def _cleanup(folder: str) -> None:
    shutil.rmtree(folder, ignore_errors=True)


class ImageSlot(QWidget):
    """Image A or B: the fitted input, its decode, and an Open button; accepts a dropped file."""

    open_clicked = Signal()
    dropped = Signal(str)

    def __init__(self, name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAcceptDrops(True)
        layout = QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(3)
        self.title = QLabel(f"<b>{name}</b>")
        self.open_button = QPushButton("Open…")
        self.open_button.setToolTip(f"Choose image {name} (or drop an image file here).")
        self.open_button.clicked.connect(self.open_clicked)
        self.input = PixelImage(min_side=64, placeholder="drop an image")
        self.input.setToolTip(f"Image {name} as the encoder sees it (fitted to the run's resolution).")
        self.decoded = PixelImage(min_side=64)
        self.decoded.setToolTip(f"Image {name} decoded from its latent (full decoder steps).")
        self.caption = QLabel("")
        self.caption.setObjectName("hint")
        self.caption.setWordWrap(True)
        layout.addWidget(self.title, 0, 0)
        layout.addWidget(self.open_button, 0, 1, Qt.AlignmentFlag.AlignRight)
        layout.addWidget(self.input, 1, 0)
        layout.addWidget(self.decoded, 1, 1)
        layout.addWidget(self.caption, 2, 0, 1, 2)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        files = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if files:
            self.dropped.emit(files[0])
            event.acceptProposedAction()


class LatentsPage(QWidget):
    analyzed = Signal(str)  # slot "a" or "b": its latent view is ready
    strip_ready = Signal()
    trajectory_ready = Signal()
    exported = Signal(dict)  # the frames.export result (ExportedFrames as a dict)
    message = Signal(str)

    def __init__(self, ctx: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setAcceptDrops(True)
        self.tmp = tempfile.mkdtemp(prefix="ul-latents-")
        self.destroyed.connect(lambda _=None, d=self.tmp: _cleanup(d))
        self._counter = 0
        self.images: dict[str, str | None] = {"a": None, "b": None}
        self.results: dict[str, dict[str, Any] | None] = {"a": None, "b": None}
        self._tokens: dict[str, int] = {"a": 0, "b": 0}
        self._encoding: set[str] = set()  # slots whose image is being encoded (their latents are stale)
        self.export_steps: list[tuple[int, int, str]] = []  # every progress step of exports (tests)
        self.inspect_slot = "a"
        self.trajectory: list[dict[str, Any]] = []
        self._strip_token = 0

        root = QVBoxLayout(self)
        root.setContentsMargins(16, 12, 16, 8)
        root.addLayout(self._build_header())
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self._build_left())
        splitter.addWidget(self._build_right())
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([430, 690])
        root.addWidget(splitter, 1)

        ctx.repo.changed.connect(self.runs.refresh)
        self.runs.refresh()
        self._on_run(self.runs.run_id() or 0)

    # ---- layout --------------------------------------------------------------------------------------

    def _build_header(self) -> QHBoxLayout:
        row = QHBoxLayout()
        title = QLabel("Latents")
        title.setObjectName("pageTitle")
        row.addWidget(title)
        row.addSpacing(16)
        row.addWidget(QLabel("Run:"))
        self.runs = RunCombo(self.ctx.store)
        self.runs.setObjectName("latentsRun")
        self.runs.setToolTip("The run whose encoder, prior and decoder are used (stage-2 runs add their base model).")
        self.runs.run_selected.connect(self._on_run)
        row.addWidget(self.runs)
        self.status = QLabel("")
        self.status.setObjectName("hint")
        self.status.setWordWrap(True)
        row.addWidget(self.status, 1)
        return row

    def _build_left(self) -> QWidget:
        panel = QWidget()
        layout = QVBoxLayout(panel)
        layout.setContentsMargins(0, 0, 8, 0)
        slots = QHBoxLayout()
        self.slots: dict[str, ImageSlot] = {}
        for slot in SLOTS:
            w = ImageSlot(slot.upper())
            w.open_clicked.connect(lambda s=slot: self._open_dialog(s))
            w.dropped.connect(lambda path, s=slot: self.set_image(s, path))
            w.setMinimumHeight(150)
            slots.addWidget(w)
            self.slots[slot] = w
        layout.addLayout(slots)

        pick = QHBoxLayout()
        pick.addWidget(QLabel("Show the latent of"))
        self.inspect_group = QButtonGroup(self)
        self.inspect_buttons: dict[str, QPushButton] = {}
        for slot in SLOTS:
            b = QPushButton(slot.upper())
            b.setCheckable(True)
            b.setMaximumWidth(44)
            b.setToolTip(f"Show image {slot.upper()}'s latent; the noise-level and channel scrubbers use it too.")
            self.inspect_group.addButton(b)
            b.clicked.connect(lambda _=False, s=slot: self.set_inspect(s))
            pick.addWidget(b)
            self.inspect_buttons[slot] = b
        self.inspect_buttons["a"].setChecked(True)
        pick.addStretch(1)
        layout.addLayout(pick)

        self.rate_label = QLabel("Rate: –")
        self.rate_label.setWordWrap(True)
        self.rate_label.setToolTip(
            "What the latent costs under the prior: its unweighted ELBO (bits), averaged over stratified "
            "noise levels. Per pixel divides by the image's pixels, per dim by the latent's numbers."
        )
        layout.addWidget(self.rate_label)
        maps = QGridLayout()
        self.rate_view = PixelImage(min_side=96)
        self.rate_view.setToolTip("Bits per latent position: the prior's ELBO terms summed over the channels.")
        self.pca_view = PixelImage(min_side=96)
        self.pca_view.setToolTip("The latent's three main directions (PCA over positions) as red, green and blue.")
        maps.addWidget(QLabel("Rate per position"), 0, 0)
        maps.addWidget(QLabel("PCA → RGB"), 0, 1)
        maps.addWidget(self.rate_view, 1, 0)
        maps.addWidget(self.pca_view, 1, 1)
        self.rate_bar = ColorBar(SEQUENTIAL_STOPS)
        self.rate_bar.setToolTip("Bits per position: dark is cheap, bright is expensive.")
        maps.addWidget(self.rate_bar, 2, 0)
        layout.addLayout(maps, 1)
        layout.addWidget(QLabel("Channels (one shared colour scale)"))
        self.tiles = LatentTiles()
        self.tiles.channel_clicked.connect(self._pick_channel)
        layout.addWidget(self.tiles)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(panel)
        scroll.setMinimumWidth(360)
        return scroll

    def _build_right(self) -> QWidget:
        panel = QWidget()
        layout = QVBoxLayout(panel)
        layout.setContentsMargins(8, 0, 0, 0)
        settings = QHBoxLayout()
        self.preview_steps = QSpinBox()
        self.preview_steps.setRange(1, 64)
        self.preview_steps.setValue(4)
        self.preview_steps.setToolTip("Decoder steps of the previews while a slider moves (fewer is faster).")
        self.full_steps = QSpinBox()
        self.full_steps.setRange(1, 4096)
        self.full_steps.setValue(64)
        self.full_steps.setToolTip("Decoder steps of the decode when you let go of a slider, and of exports.")
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setToolTip("Seed of the fixed noise every frame shares (z0's noise and the decoder's).")
        for label, w in (("Preview steps", self.preview_steps), ("Full steps", self.full_steps), ("Seed", self.seed)):
            settings.addWidget(QLabel(label))
            settings.addWidget(w)
        settings.addStretch(1)
        layout.addLayout(settings)
        self.full_steps.valueChanged.connect(lambda _v: self._refresh_scrubs())
        self.seed.valueChanged.connect(lambda _v: self._refresh_scrubs())

        self.tabs = QTabWidget()
        self.tabs.addTab(self._build_interpolate(), "Interpolate")
        self.tabs.addTab(self._build_noise(), "Noise level")
        self.tabs.addTab(self._build_channel(), "Channel")
        self.tabs.addTab(self._build_trajectory(), "Trajectory")
        layout.addWidget(self.tabs, 1)

        export = QHBoxLayout()
        self.export_frames = QSpinBox()
        self.export_frames.setRange(2, 600)
        self.export_frames.setValue(24)
        self.export_frames.setToolTip("Frames of the exported video, evenly spread over the slider's range.")
        self.export_fps = QSpinBox()
        self.export_fps.setRange(1, 60)
        self.export_fps.setValue(12)
        self.export_button = QPushButton("Export MP4 + GIF…")
        self.export_button.setToolTip("Decode the current scrub in full and save it as an MP4 and a GIF.")
        self.export_button.clicked.connect(self._export_dialog)
        self.export_status = QLabel("")
        self.export_status.setObjectName("hint")
        self.export_status.setWordWrap(True)
        export.addWidget(QLabel("Frames"))
        export.addWidget(self.export_frames)
        export.addWidget(QLabel("fps"))
        export.addWidget(self.export_fps)
        self.export_progress = QProgressBar()
        self.export_progress.setMaximumWidth(160)
        self.export_progress.setToolTip("Frames decoded out of the frames asked for, then writing the files.")
        self.export_progress.hide()
        export.addWidget(self.export_button)
        export.addWidget(self.export_progress)
        export.addWidget(self.export_status, 1)
        layout.addLayout(export)
        return panel

    def _build_interpolate(self) -> QWidget:
        tab = QWidget()
        layout = QVBoxLayout(tab)
        row = QHBoxLayout()
        self.interp_mode = QComboBox()
        self.interp_mode.addItem("slerp (spherical)", "slerp")
        self.interp_mode.addItem("lerp (straight line)", "lerp")
        self.interp_mode.setToolTip(
            "slerp keeps the latent's norm along the way; lerp's midpoints shrink towards zero."
        )
        self.strip_frames = QSpinBox()
        self.strip_frames.setRange(2, 32)
        self.strip_frames.setValue(8)
        self.strip_frames.setToolTip("Frames in the film strip (full decodes from A to B).")
        row.addWidget(QLabel("Path"))
        row.addWidget(self.interp_mode)
        row.addWidget(QLabel("Film strip frames"))
        row.addWidget(self.strip_frames)
        row.addStretch(1)
        layout.addLayout(row)
        self.interp = Scrubber(
            self._decode_interpolate,
            positions=100,
            value_of=lambda p: p / 100.0,
            label_of=lambda t: f"A {1 - t:.0%} · B {t:.0%}",
            placeholder="Open two images, A and B, to interpolate between their latents.",
        )
        self.interp.slider.setToolTip("Drag from A (left) to B (right); the decode follows.")
        layout.addWidget(self.interp, 1)
        self.strip = FilmStrip()
        self.strip.frame_clicked.connect(self._strip_clicked)
        layout.addWidget(self.strip)
        self.interp_mode.currentIndexChanged.connect(lambda _i: self._interp_changed())
        self.strip_frames.valueChanged.connect(lambda _v: self.make_strip())
        return tab

    def _build_noise(self) -> QWidget:
        tab = QWidget()
        layout = QVBoxLayout(tab)
        row = QHBoxLayout()
        self.denoiser = QComboBox()
        self.denoiser.addItem("the prior (stage 1)", "prior")
        self.denoiser.addItem("the base model (stage 2)", "base")
        self.denoiser.setToolTip("Which model denoises the latent from λ back to λ = 5 (the base model: stage-2 runs).")
        self.denoiser.currentIndexChanged.connect(lambda _i: self.noise.refresh())
        row.addWidget(QLabel("Denoise with"))
        row.addWidget(self.denoiser)
        row.addStretch(1)
        layout.addLayout(row)
        hint = QLabel(
            "Left: the latent drowned in noise and re-imagined by the model. Right (λ = 5): the latent as it is. "
            "What survives at each λ is what the latent keeps at that rate."
        )
        hint.setObjectName("hint")
        hint.setWordWrap(True)
        layout.addWidget(hint)
        self.lambda_range = (-10.0, 5.0)
        self.noise = Scrubber(
            self._decode_noise,
            positions=150,
            value_of=self._lambda_of,
            label_of=lambda lam: f"λ = {lam:+.2f} · α² = {1 / (1 + math.exp(-lam)):.3f}",
            placeholder="Open an image to push its latent into noise.",
        )
        self.noise.slider.setValue(150)
        self.noise.value_label.setToolTip(glossary.tip("noise_level"))
        self.noise.slider.setToolTip("The log-SNR λ the latent is pushed to before the model denoises it back.")
        layout.addWidget(self.noise, 1)
        return tab

    def _build_channel(self) -> QWidget:
        tab = QWidget()
        layout = QVBoxLayout(tab)
        form = QHBoxLayout()
        self.channel = QSpinBox()
        self.channel.setRange(0, 0)
        self.channel.setToolTip("The channel to edit (or click its tile on the left).")
        self.channel_scale = QDoubleSpinBox()
        self.channel_scale.setRange(-10.0, 10.0)
        self.channel_scale.setSingleStep(0.1)
        self.channel_scale.setValue(1.0)
        self.channel_scale.setToolTip("Multiply the channel by this (0 removes it, −1 flips it).")
        form.addWidget(QLabel("Channel"))
        form.addWidget(self.channel)
        form.addWidget(QLabel("Scale"))
        form.addWidget(self.channel_scale)
        form.addStretch(1)
        layout.addLayout(form)
        self.channel_edit = Scrubber(
            self._decode_channel,
            positions=120,
            value_of=lambda p: (p - 60) * OFFSET_RANGE / 60.0,
            label_of=lambda v: f"offset {v:+.2f}",
            placeholder="Open an image to edit its latent's channels.",
        )
        self.channel_edit.slider.setValue(60)
        self.channel_edit.slider.setToolTip("Add this offset to every position of the channel.")
        layout.addWidget(self.channel_edit, 1)
        self.channel.valueChanged.connect(self._channel_changed)
        self.channel_scale.valueChanged.connect(lambda _v: self.channel_edit.refresh())
        return tab

    def _build_trajectory(self) -> QWidget:
        tab = QWidget()
        layout = QVBoxLayout(tab)
        form = QFormLayout()
        row = QHBoxLayout()
        self.traj_seed = QSpinBox()
        self.traj_seed.setRange(0, 2**31 - 1)
        self.traj_seed.setToolTip("The sample's seed (as on the Generate page).")
        self.traj_base_steps = QSpinBox()
        self.traj_base_steps.setRange(1, 1024)
        self.traj_base_steps.setValue(64)
        self.traj_decoder_steps = QSpinBox()
        self.traj_decoder_steps.setRange(1, 1024)
        self.traj_decoder_steps.setValue(64)
        self.traj_params: dict[str, Any] = {}
        for label, w in (("Seed", self.traj_seed), ("Base steps", self.traj_base_steps),
                         ("Decoder steps", self.traj_decoder_steps)):  # fmt: skip
            row.addWidget(QLabel(label))
            row.addWidget(w)
        self.record_button = QPushButton("Record trajectory")
        self.record_button.setToolTip(
            "Sample with the stage-2 run and keep the prediction of every step: first the base model's "
            "latent (decoded with the preview steps), then the decoder's image."
        )
        self.record_button.clicked.connect(self.record_trajectory)
        row.addWidget(self.record_button)
        row.addStretch(1)
        form.addRow(row)
        layout.addLayout(form)
        self.traj = Scrubber(
            self._decode_trajectory,
            positions=0,
            value_of=lambda p: float(p),
            label_of=self._trajectory_label,
            placeholder="Choose a stage-2 run and record a sample's trajectory "
            "(or click a sample on the Generate page).",
        )
        layout.addWidget(self.traj, 1)
        return tab

    # ---- runs and images -----------------------------------------------------------------------------

    def _session(self) -> Any:
        session = getattr(self.ctx, "session", None)
        if session is None:
            self.status.setText("The session worker is not running: the Latents page needs it to decode.")
        return session

    def _run_config(self) -> dict[str, Any]:
        info = self.runs.info()
        return dict(info.config) if info is not None else {}

    def run_id(self) -> int | None:
        return self.runs.run_id()

    def _on_run(self, run_id: int) -> None:
        cfg = self._run_config()
        sampling = cfg.get("sampling") or {}
        loss = cfg.get("loss") or {}
        stage = self.runs.info().stage if self.runs.info() else 1
        self.full_steps.blockSignals(True)
        self.full_steps.setValue(int(sampling.get("decoder_steps", 64)))
        self.full_steps.blockSignals(False)
        self.traj_base_steps.setValue(int(sampling.get("base_steps", 64)))
        self.traj_decoder_steps.setValue(int(sampling.get("decoder_steps", 64)))
        self.lambda_range = (float(loss.get("latent_logsnr_min", -10.0)), float(loss.get("latent_logsnr_max", 5.0)))
        base_item = self.denoiser.model().item(1)
        base_item.setEnabled(stage == 2)
        if stage != 2 and self.denoiser.currentIndex() == 1:
            self.denoiser.setCurrentIndex(0)
        self.record_button.setEnabled(stage == 2)
        self.trajectory = []
        self.traj.slider.setRange(0, 0)
        self.traj.clear()
        for slot in SLOTS:  # latents belong to a run: analyse the images again
            if self.images[slot]:
                self.set_image(slot, self.images[slot])

    def _next_dir(self, name: str) -> str:
        self._counter += 1
        path = Path(self.tmp) / f"{self._counter:05d}-{name}"
        path.mkdir(parents=True, exist_ok=True)
        return str(path)

    def _open_dialog(self, slot: str) -> None:
        path = file_dialogs.open_file(self, f"Open image {slot.upper()}", "images", IMAGE_FILTER)
        if path:
            self.set_image(slot, path)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        files = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if not files:
            return
        event.acceptProposedAction()
        targets = ["a", "b"] if len(files) > 1 else (["b"] if self.images["a"] and not self.images["b"] else ["a"])
        for slot, path in zip(targets, files, strict=False):
            self.set_image(slot, path)

    def set_image(self, slot: str, path: str | Path) -> bool:
        """Analyse an image into slot "a" or "b" (its latent, tiles, PCA, rate); False without a run."""
        path = str(path)
        self.images[slot] = path
        run_id = self.run_id()
        session = self._session()
        widget = self.slots[slot]
        widget.caption.setText(Path(path).name)
        if run_id is None or session is None:
            if run_id is None:
                self.status.setText("Train a run first: the Latents page needs a run with a checkpoint.")
            return False
        self._tokens[slot] += 1
        token = self._tokens[slot]
        self._encoding.add(slot)
        widget.caption.setText(f"{Path(path).name}: encoding…")
        self.interp.clear(f"Image {slot.upper()} is being encoded; the interpolation follows.")
        self.strip.clear()
        request = AnalyzeLatent(run=run_id, image=path, out=self._next_dir(f"analyze-{slot}"),
                                decoder_steps=self.full_steps.value(), seed=self.seed.value())  # fmt: skip
        session.call(request, lambda ok, result: self._on_analyzed(slot, token, path, ok, result))
        return True

    def _on_analyzed(self, slot: str, token: int, path: str, ok: bool, answer: LatentAnalysis | str) -> None:
        if token != self._tokens[slot]:
            return
        self._encoding.discard(slot)
        widget = self.slots[slot]
        if not isinstance(answer, LatentAnalysis):
            self.results[slot] = None
            widget.input.set_path(None)
            widget.decoded.set_path(None)
            widget.caption.setText(f"{Path(path).name}: {answer}")
            self.status.setText(f"Image {slot.upper()}: {answer}")
            self._show_inspected()
            self.interp.clear()
            self.strip.clear()
            if slot == self.inspect_slot:
                self.noise.clear()
                self.channel_edit.clear()
            return
        self.results[slot] = result = to_wire(answer)
        widget.input.set_path(result["input"])
        widget.decoded.set_path(result["decoded"])
        rate = result["rate"]
        source = " · generated latent" if result.get("source") == "generated" else ""
        widget.caption.setText(f"{Path(path).name}: {rate['bits']:.1f} bits{source}")
        widget.caption.setToolTip("\n".join([path, *result.get("notices", [])]))
        self.status.setText("")
        if slot == self.inspect_slot or self.results[self.inspect_slot] is None:
            self.inspect_slot = slot
            self.inspect_buttons[slot].setChecked(True)
            self._show_inspected()
        self._refresh_scrubs()
        if self.results["a"] and self.results["b"]:
            self.make_strip()
        self.analyzed.emit(slot)

    def set_inspect(self, slot: str) -> None:
        self.inspect_slot = slot
        self.inspect_buttons[slot].setChecked(True)
        self._show_inspected()
        self.noise.refresh()
        self.channel_edit.refresh()

    def _show_inspected(self) -> None:
        result = self.results.get(self.inspect_slot)
        if not result:
            self.rate_label.setText("Rate: –")
            self.rate_view.set_path(None)
            self.pca_view.set_path(None)
            self.tiles.set_latent([], [], 1.0)
            return
        rate = result["rate"]
        c, h, w = result["shape"]
        self.rate_label.setText(
            f"<b>Rate: {rate['bits']:.1f} bits</b> · {rate['bits_per_pixel']:.4f} bits/pixel · "
            f"{rate['bits_per_dim']:.3f} bits/dim · latent {c}×{h}×{w}"
        )
        self.rate_view.set_path(result["rate_map"])
        rmax = result.get("rate_max", 0.0) / math.log(2)
        self.rate_bar.set_range("0", f"{rmax:.1f} bits")
        self.pca_view.set_path(result["pca"])
        self.tiles.set_latent(result["tiles"], result["stats"], result["scale"])
        self.channel.setRange(0, max(0, c - 1))
        self.tiles.set_selected(self.channel.value())

    def _pick_channel(self, channel: int) -> None:
        self.channel.setValue(channel)
        self.tabs.setCurrentIndex(SCRUBS.index("channel"))

    def _channel_changed(self, channel: int) -> None:
        self.tiles.set_selected(channel)
        self.channel_edit.refresh()

    def _refresh_scrubs(self) -> None:
        self.interp.refresh()
        self.noise.refresh()
        self.channel_edit.refresh()

    def open_sample(self, path: str, run_id: int | None = None) -> None:
        """A generated sample from the Generate page: its run, its latent in A, its trajectory settings."""
        if run_id is not None:
            self.runs.select(run_id)
        self.set_image("a", path)
        self.set_inspect("a")
        try:
            found = read_sample_settings(path)
        except ULError as exc:  # its trajectory settings are unusable; the image itself still opens
            self.status.setText(str(exc))
            found = None
        params = found.params.model_dump(by_alias=True) if found is not None else {}
        if found is not None and found.seed <= self.traj_seed.maximum():
            self.traj_seed.setValue(found.seed)
        if params.get("base_steps"):
            self.traj_base_steps.setValue(int(params["base_steps"]))
        if params.get("decoder_steps"):
            self.traj_decoder_steps.setValue(int(params["decoder_steps"]))
        self.traj_params = {k: params.get(k) for k in ("sampler", "guidance", "class")}

    # ---- decoders of the scrubbers -------------------------------------------------------------------

    def _latent(self, slot: str | None = None) -> str | None:
        result = self.results.get(slot or self.inspect_slot)
        return result["latent"] if result else None

    def _frames(self, done: Callable[[bool, Any], None], *, preview: bool, **params: Any) -> bool:
        session = self._session()
        run_id = self.run_id()
        if session is None or run_id is None:
            return False
        steps = self.preview_steps.value() if preview else self.full_steps.value()

        def answer(ok: bool, result: LatentFrames | str) -> None:
            if isinstance(result, LatentFrames):
                done(True, {**to_wire(result), "image": result.images[0]})
            else:
                done(False, result)

        self._counter += 1
        request = DecodeFrames(run=run_id, out=str(Path(self.tmp) / "frames"), prefix=f"{self._counter:06d}",
                               steps=steps, seed=self.seed.value(), **params)  # fmt: skip
        session.call(request, answer)
        return True

    def _decode_interpolate(self, t: float, preview: bool, done: Callable[[bool, Any], None]) -> bool:
        a, b = self._latent("a"), self._latent("b")
        if not (a and b) or self._encoding:  # an image is being (re-)encoded: its old latent is stale
            return False
        return self._frames(
            done, preview=preview, kind="interpolate", latent=a, latent_b=b, values=[t],
            mode=self.interp_mode.currentData(),
        )  # fmt: skip

    def _lambda_of(self, position: int) -> float:
        lo, hi = self.lambda_range
        return lo + (hi - lo) * position / 150.0

    def _noise_params(self, preview: bool) -> dict[str, Any]:
        sampling = self._run_config().get("sampling") or {}
        full = int(sampling.get("base_steps", 64))
        return {
            "kind": "noise",
            "denoiser": self.denoiser.currentData(),
            "prior_steps": min(full, PREVIEW_DENOISER_STEPS) if preview else full,
        }

    def _decode_noise(self, lam: float, preview: bool, done: Callable[[bool, Any], None]) -> bool:
        latent = self._latent()
        if not latent:
            return False
        return self._frames(done, preview=preview, latent=latent, values=[lam], **self._noise_params(preview))

    def _decode_channel(self, offset: float, preview: bool, done: Callable[[bool, Any], None]) -> bool:
        latent = self._latent()
        if not latent:
            return False
        return self._frames(
            done, preview=preview, kind="channel", latent=latent, values=[offset], edit="offset",
            channel=self.channel.value(), scale=self.channel_scale.value(),
        )  # fmt: skip

    def _interp_changed(self) -> None:
        self.interp.refresh()
        self.make_strip()

    def make_strip(self) -> bool:
        """The film strip: N full decodes from A to B."""
        a, b = self._latent("a"), self._latent("b")
        session = self._session()
        if not (a and b) or self._encoding or session is None or self.run_id() is None:
            return False
        n = self.strip_frames.value()
        values = [i / (n - 1) for i in range(n)]
        self._strip_token += 1
        token = self._strip_token

        def done(ok: bool, result: LatentFrames | str) -> None:
            if token != self._strip_token:
                return
            if not isinstance(result, LatentFrames):
                self.status.setText(f"Film strip: {result}")
                return
            self.strip.set_frames(result.images, [f"{t:.2f}" for t in result.values])
            self.strip_ready.emit()

        run_id = self.run_id()
        assert run_id is not None
        request = DecodeFrames(
            run=run_id, out=self._next_dir("strip"), kind="interpolate", latent=a, latent_b=b, values=values,
            mode=self.interp_mode.currentData(), steps=self.full_steps.value(), seed=self.seed.value(), prefix="strip",
        )  # fmt: skip
        session.call(request, done)
        return True

    def _strip_clicked(self, index: int) -> None:
        n = max(2, len(self.strip.frames))
        self.interp.slider.setValue(round(100 * index / (n - 1)))

    # ---- trajectory ----------------------------------------------------------------------------------

    def record_trajectory(self) -> bool:
        session = self._session()
        info = self.runs.info()
        if session is None or info is None:
            return False
        if info.stage != 2:
            self.status.setText("A trajectory needs a stage-2 run (it samples with the base model).")
            return False
        self.record_button.setEnabled(False)
        self.traj.timing.setText("Recording…")

        def done(ok: bool, result: Trajectory | str) -> None:
            self.record_button.setEnabled(True)
            if not isinstance(result, Trajectory):
                self.traj.timing.setText(f"Could not record: {result}")
                return
            self.trajectory = result.frames
            self.traj.slider.blockSignals(True)
            self.traj.slider.setRange(0, max(0, len(self.trajectory) - 1))
            self.traj.slider.setValue(len(self.trajectory) - 1)
            self.traj.slider.blockSignals(False)
            self.traj.refresh()
            self.traj.timing.setText(f"{len(self.trajectory)} frames in {result.seconds or 0.0:.1f} s")
            self.trajectory_ready.emit()

        params = self.traj_params
        request = TraceSample(
            run=info.id, out=self._next_dir("trajectory"), seed=self.traj_seed.value(),
            base_steps=self.traj_base_steps.value(), decoder_steps=self.traj_decoder_steps.value(),
            preview_steps=self.preview_steps.value(), sampler=params.get("sampler"), guidance=params.get("guidance"),
            class_label=params.get("class"),
        )  # fmt: skip
        session.call(request, done)
        return True

    def _trajectory_label(self, value: float) -> str:
        i = int(value)
        if not 0 <= i < len(self.trajectory):
            return "no trajectory yet"
        f = self.trajectory[i]
        what = "base model" if f["phase"] == "base" else "decoder"
        return f"{what} step {f['index'] + 1}/{f['total']} · λ {f['logsnr']:+.2f}"

    def _decode_trajectory(self, value: float, preview: bool, done: Callable[[bool, Any], None]) -> bool:
        i = int(value)
        if not 0 <= i < len(self.trajectory):
            return False
        done(True, {"image": self.trajectory[i]["image"]})  # recorded frames: no decode needed
        return True

    # ---- export --------------------------------------------------------------------------------------

    def current_scrub(self) -> str:
        return SCRUBS[self.tabs.currentIndex()]

    def _export_dialog(self) -> None:
        kind = self.current_scrub()
        path, _ = file_dialogs.save_file(self, "Export MP4 (a GIF is written beside it)", "video", f"{kind}.mp4",
                                         "MP4 video (*.mp4)")  # fmt: skip
        if path:
            if not path.lower().endswith(".mp4"):
                path += ".mp4"
            self.export(kind, path)

    def export_values(self, kind: str, n: int) -> list[float]:
        """Evenly spread slider values of a scrub (its whole range)."""
        scrub = {"interpolate": self.interp, "noise": self.noise, "channel": self.channel_edit}[kind]
        top = scrub.slider.maximum()
        return [scrub.value_of(round(top * i / (n - 1))) for i in range(n)]

    def export(self, kind: str, mp4: str | Path, frames: int | None = None) -> bool:
        """Decode `frames` values of a scrub in full (the trajectory: its recorded frames) and write
        `mp4` and the GIF beside it; `exported` carries the result. The frames are decoded a few at a time,
        so the bar and the label count them ("Decoding frames 8 / 24"), then say when the files are written."""
        session = self._session()
        mp4 = Path(mp4)
        gif = mp4.with_suffix(".gif")
        fps = self.export_fps.value()

        def write(paths: list[str]) -> None:
            self._export_step(len(paths), len(paths), f"Writing {mp4.name} and {gif.name}…")
            self.export_progress.setRange(0, 0)  # busy: the encoder reports no steps
            session.call(ExportFrames(frames=paths, mp4=str(mp4), gif=str(gif), fps=fps), on_written)

        def on_written(ok: bool, result: ExportedFrames | str) -> None:
            self._export_done()
            if not isinstance(result, ExportedFrames):
                self.export_status.setText(f"Export failed: {result}")
                return
            m = result.mp4 or {}
            self.export_status.setText(
                f"Wrote {mp4.name} and {gif.name}: {m.get('frames')} frames, {m['size'][0]}×{m['size'][1]}"
            )
            self.exported.emit(to_wire(result))

        if session is None or self.run_id() is None:
            return False
        if kind == "trajectory":
            if not self.trajectory:
                self.export_status.setText("Record a trajectory first.")
                return False
            self.export_button.setEnabled(False)
            write([f["image"] for f in self.trajectory])
            return True
        n = int(frames or self.export_frames.value())
        values = self.export_values(kind, n)
        if kind == "interpolate":
            a, b = self._latent("a"), self._latent("b")
            if not (a and b):
                self.export_status.setText("Open images A and B first.")
                return False
            params: dict[str, Any] = {"kind": "interpolate", "latent": a, "latent_b": b,
                                      "mode": self.interp_mode.currentData()}  # fmt: skip
        elif kind == "noise":
            params = {"latent": self._latent(), **self._noise_params(False)}
        else:
            params = {"kind": "channel", "latent": self._latent(), "edit": "offset",
                      "channel": self.channel.value(), "scale": self.channel_scale.value()}  # fmt: skip
        if not params.get("latent"):
            self.export_status.setText("Open an image first.")
            return False
        run_id, out = self.run_id(), self._next_dir(f"export-{kind}")
        assert run_id is not None
        images: list[str] = []

        def next_chunk() -> None:
            start = len(images)
            self._export_step(start, n, f"Decoding frames {start} / {n}…")
            request = DecodeFrames(
                run=run_id, out=out, values=values[start : start + EXPORT_CHUNK], steps=self.full_steps.value(),
                seed=self.seed.value(), prefix=f"{kind}-{start:04d}", **params,
            )  # fmt: skip
            session.call(request, decoded)

        def decoded(ok: bool, result: LatentFrames | str) -> None:
            if not isinstance(result, LatentFrames):
                self._export_done()
                self.export_status.setText(f"Export failed: {result}")
                return
            images.extend(result.images)
            if len(images) < n:
                next_chunk()
            else:
                write(images)

        self.export_button.setEnabled(False)
        next_chunk()
        return True

    def _export_step(self, done: int, total: int, text: str) -> None:
        self.export_progress.show()
        self.export_progress.setRange(0, max(1, total))
        self.export_progress.setValue(done)
        self.export_progress.setFormat(f"{done} / {total}")
        self.export_status.setText(text)
        self.export_steps.append((done, total, text))

    def _export_done(self) -> None:
        self.export_button.setEnabled(True)
        self.export_progress.hide()
