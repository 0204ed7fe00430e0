"""The Latents page: look inside a run's latent space.

Open (or drop) an image, or click a sample on the Generate page: its latent appears as one tile per channel
on a shared colour scale, a PCA-to-RGB picture, and the bits it costs under the prior, in total and per
position. Four scrubbers decode while you drag (a fast preview with few decoder steps, the full decode when
you let go): interpolate between images A and B, push the latent to a noise level and let the prior (or the
stage-2 base model) denoise it back, edit one channel, and step through a generated sample's trajectory.
Every scrub exports as MP4 and GIF. All the work happens in the session worker; this page never loads torch.

The encoder sees one square of the run's size: a larger photo is fitted (downscaled, centre square) and a line
beside the picture says so, and that Reconstruct encodes the whole photo. The views are in `latents_views` and
`latents_scrubs`; the state and rules in `app.models.latents`; the worker requests in `app.models.latents_requests`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSplitter, QVBoxLayout, QWidget

from app.models import latents as model
from app.models.latents_requests import ExportReport, LatentsRequests
from app.pages.latents_scrubs import ChannelTab, InterpolateTab, NoiseTab, ScrubPanel, TrajectoryTab
from app.pages.latents_views import InspectPanel, dropped_files, hint_label
from app.widgets import file_dialogs
from app.widgets.run_combo import RunCombo
from ul_engine.core.protocol import LatentFrames, Trajectory

IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.webp *.bmp *.tif *.tiff *.gif)"
Done = Callable[[bool, Any], None]


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
        self.requests = LatentsRequests(lambda: getattr(ctx, "session", None))
        self.destroyed.connect(lambda _=None, r=self.requests: r.cleanup())
        self.state = model.SlotsState()
        self.images, self.results, self._tokens = self.state.images, self.state.results, self.state.tokens
        self.settings_of_run = model.RunSettings()
        self._strip_token = 0

        root = QVBoxLayout(self)
        root.setContentsMargins(16, 12, 16, 8)
        root.addLayout(self._build_header())
        root.addWidget(self._build_body(), 1)
        self._connect()

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
        row.addWidget(self.runs)
        self.status = hint_label()
        row.addWidget(self.status, 1)
        return row

    def _build_body(self) -> QSplitter:
        self.inspect_panel = left = InspectPanel()
        self.slots, self.inspect_buttons, self.latent_view = left.slots, left.buttons, left.latent
        self.rate_label, self.rate_view = self.latent_view.rate_label, self.latent_view.rate_view
        self.pca_view, self.tiles = self.latent_view.pca_view, self.latent_view.tiles
        self.interp_tab = InterpolateTab(self._decode_interpolate)
        self.noise_tab = NoiseTab(self._decode_noise, self._lambda_of)
        self.channel_tab = ChannelTab(self._decode_channel)
        self.traj_tab = TrajectoryTab()
        right = ScrubPanel(self.interp_tab, self.noise_tab, self.channel_tab, self.traj_tab)
        self.tabs, self.export_bar = right.tabs, right.export
        settings = right.settings
        self.preview_steps, self.full_steps, self.seed = settings.preview_steps, settings.full_steps, settings.seed
        self._alias_scrubs()
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([430, 690])
        return splitter

    def _alias_scrubs(self) -> None:
        """The controls by the names the rest of the page (and its tests and benchmarks) use."""
        i, n, c, t, e = self.interp_tab, self.noise_tab, self.channel_tab, self.traj_tab, self.export_bar
        self.interp, self.interp_mode, self.strip, self.strip_frames = i.scrub, i.mode, i.strip, i.strip_frames
        self.noise, self.denoiser = n.scrub, n.denoiser
        self.channel_edit, self.channel, self.channel_scale = c.scrub, c.channel, c.scale
        self.traj, self.traj_seed, self.record_button = t.scrub, t.seed, t.record_button
        self.traj_base_steps, self.traj_decoder_steps = t.base_steps, t.decoder_steps
        self.export_button, self.export_status, self.export_progress = e.button, e.status, e.progress
        self.export_frames, self.export_fps, self.export_steps = e.frames, e.fps, e.steps

    def _connect(self) -> None:
        self.runs.run_selected.connect(self._on_run)
        for slot, w in self.slots.items():
            w.open_clicked.connect(lambda s=slot: self._open_dialog(s))
            w.dropped.connect(lambda path, s=slot: self.set_image(s, path))
            self.inspect_buttons[slot].clicked.connect(lambda _=False, s=slot: self.set_inspect(s))
        self.tiles.channel_clicked.connect(self._pick_channel)
        self.full_steps.valueChanged.connect(lambda _v: self._refresh_scrubs())
        self.seed.valueChanged.connect(lambda _v: self._refresh_scrubs())
        self.interp_mode.currentIndexChanged.connect(lambda _i: self.interp.refresh())
        self.interp_mode.currentIndexChanged.connect(lambda _i: self.make_strip())
        self.strip_frames.valueChanged.connect(lambda _v: self.make_strip())
        self.channel.valueChanged.connect(self._channel_changed)
        self.record_button.clicked.connect(self.record_trajectory)
        self.export_button.clicked.connect(self._export_dialog)

    # ---- runs and images -----------------------------------------------------------------------------

    @property
    def inspect_slot(self) -> str:
        return self.state.inspect

    @property
    def trajectory(self) -> list[dict[str, Any]]:
        return self.traj_tab.frames

    def _session(self) -> Any:
        session = getattr(self.ctx, "session", None)
        if session is None:
            self.status.setText("The session worker is not running: the Latents page needs it to decode.")
        return session

    def run_id(self) -> int | None:
        return self.runs.run_id()

    def _on_run(self, run_id: int) -> None:
        s = self.settings_of_run = model.run_settings(self.runs.info())
        self.full_steps.blockSignals(True)
        self.full_steps.setValue(s.decoder_steps)
        self.full_steps.blockSignals(False)
        self.traj_tab.configure(s)
        self.noise_tab.set_stage(s.stage)
        for slot in model.SLOTS:  # latents belong to a run: analyse the images again
            image = self.images[slot]
            if image:
                self.set_image(slot, image)

    def _open_dialog(self, slot: str) -> None:
        path = file_dialogs.open_file(self, f"Open image {slot.upper()}", "images", IMAGE_FILTER)
        if path:
            self.set_image(slot, path)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        files = dropped_files(event)
        if not files:
            return
        event.acceptProposedAction()
        for slot, path in zip(self.state.drop_targets(len(files)), files, strict=False):
            self.set_image(slot, path)

    def set_image(self, slot: str, path: str | Path) -> bool:
        """Analyse an image into slot "a" or "b" (its latent, tiles, PCA, rate); False without a run."""
        path = str(path)
        self.images[slot] = path
        run_id = self.run_id()
        widget = self.slots[slot]
        widget.caption.setText(Path(path).name)
        widget.probe(path, self.settings_of_run.resolution, tiled=self.settings_of_run.tiled)
        session = self._session()
        if run_id is None or session is None:
            if run_id is None:
                self.status.setText("Train a run first: the Latents page needs a run with a checkpoint.")
            return False
        token = self.state.begin(slot)
        widget.caption.setText(f"{Path(path).name}: encoding…")
        self.interp.clear(f"Image {slot.upper()} is being encoded; the interpolation follows.")
        self.strip.clear()
        answer, steps, seed = partial(self._on_analyzed, slot, token, path), self.full_steps.value(), self.seed.value()
        self.requests.analyze(answer, run=run_id, image=path, slot=slot, decoder_steps=steps, seed=seed)
        return True

    def _on_analyzed(self, slot: str, token: int, path: str, ok: bool, result: Any) -> None:
        if not self.state.current(slot, token):
            return
        self.state.finish(slot, result if ok else None)
        widget = self.slots[slot]
        widget.show_result(path, result if ok else None, "" if ok else str(result))
        if not ok:
            self.status.setText(f"Image {slot.upper()}: {result}")
            self._show_inspected()
            self.interp.clear()
            self.strip.clear()
            if slot == self.inspect_slot:
                self.noise.clear()
                self.channel_edit.clear()
            return
        self.status.setText("")
        if slot == self.inspect_slot or self.results[self.inspect_slot] is None:
            self.state.inspect = slot
            self.inspect_buttons[slot].setChecked(True)
            self._show_inspected()
        self._refresh_scrubs()
        if self.results["a"] and self.results["b"]:
            self.make_strip()
        self.analyzed.emit(slot)

    def set_inspect(self, slot: str) -> None:
        self.state.inspect = slot
        self.inspect_buttons[slot].setChecked(True)
        self._show_inspected()
        self.noise.refresh()
        self.channel_edit.refresh()

    def _show_inspected(self) -> None:
        result = self.results.get(self.inspect_slot)
        self.latent_view.show_result(result)
        if result:
            self.channel.setRange(0, max(0, result["shape"][0] - 1))
            self.tiles.set_selected(self.channel.value())

    def _pick_channel(self, channel: int) -> None:
        self.channel.setValue(channel)
        self.tabs.setCurrentIndex(model.SCRUBS.index("channel"))

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
        found = model.trajectory_settings(path)
        if found.problem:  # its trajectory settings are unusable; the image itself still opens
            self.status.setText(found.problem)
        self.traj_tab.apply(found)

    # ---- decoders of the scrubbers -------------------------------------------------------------------

    def _frames(self, done: Done, *, preview: bool, **params: Any) -> bool:
        session = self._session()
        run_id = self.run_id()
        if session is None or run_id is None:
            return False
        steps = self.preview_steps.value() if preview else self.full_steps.value()
        self.requests.frame(done, run=run_id, steps=steps, seed=self.seed.value(), **params)
        return True

    def _decode_interpolate(self, t: float, preview: bool, done: Done) -> bool:
        pair = self.state.pair()  # None while an image is being (re-)encoded: its old latent is stale
        if pair is None:
            return False
        return self._frames(done, preview=preview, values=[t], **model.interpolate_params(*pair, self._mode()))

    def _mode(self) -> str:
        return str(self.interp_mode.currentData())

    def _lambda_of(self, position: int) -> float:
        return model.lambda_of(position, self.settings_of_run.lambda_range)

    def _noise_params(self, preview: bool) -> dict[str, Any]:
        denoiser = str(self.denoiser.currentData())
        return model.noise_params(self.state.latent(), denoiser, self.settings_of_run.base_steps, preview=preview)

    def _decode_noise(self, lam: float, preview: bool, done: Done) -> bool:
        if not self.state.latent():
            return False
        return self._frames(done, preview=preview, values=[lam], **self._noise_params(preview))

    def _channel_params(self) -> dict[str, Any]:
        return model.channel_params(self.state.latent(), self.channel.value(), self.channel_scale.value())

    def _decode_channel(self, offset: float, preview: bool, done: Done) -> bool:
        if not self.state.latent():
            return False
        return self._frames(done, preview=preview, values=[offset], **self._channel_params())

    def make_strip(self) -> bool:
        """The film strip: N full decodes from A to B."""
        pair, session, run_id = self.state.pair(), self._session(), self.run_id()
        if pair is None or session is None or run_id is None:
            return False
        values = model.strip_values(self.strip_frames.value())
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

        self.requests.strip(done, run=run_id, values=values, steps=self.full_steps.value(), seed=self.seed.value(),
                            **model.interpolate_params(*pair, self._mode()))  # fmt: skip
        return True

    # ---- trajectory ----------------------------------------------------------------------------------

    def record_trajectory(self) -> bool:
        session = self._session()
        info = self.runs.info()
        if session is None or info is None:
            return False
        if info.stage != 2:
            self.status.setText("A trajectory needs a stage-2 run (it samples with the base model).")
            return False
        self.traj_tab.recording()

        def done(ok: bool, result: Trajectory | str) -> None:
            if self.traj_tab.recorded(ok, result):
                self.trajectory_ready.emit()

        self.requests.trajectory(done, run=info.id, **self.traj_tab.request(self.preview_steps.value()))
        return True

    # ---- export --------------------------------------------------------------------------------------

    def current_scrub(self) -> str:
        return model.SCRUBS[self.tabs.currentIndex()]

    def _export_dialog(self) -> None:
        kind = self.current_scrub()
        path, _ = file_dialogs.save_file(self, "Export MP4 (a GIF is written beside it)", "video", f"{kind}.mp4",
                                         "MP4 video (*.mp4)")  # fmt: skip
        if path:
            self.export(kind, path if path.lower().endswith(".mp4") else path + ".mp4")

    def export_values(self, kind: str, n: int) -> list[float]:
        """Evenly spread slider values of a scrub (its whole range)."""
        scrub = {"interpolate": self.interp, "noise": self.noise, "channel": self.channel_edit}[kind]
        return model.spread(scrub.value_of, scrub.slider.maximum(), n)

    def _export_params(self, kind: str) -> dict[str, Any] | None:
        """What every decode request of an export of `kind` carries; None (and the reason shown) when it cannot."""
        if kind == "interpolate":
            a, b = self.state.latent("a"), self.state.latent("b")
            if not (a and b):
                self.export_status.setText("Open images A and B first.")
                return None
            return model.interpolate_params(a, b, self._mode())
        params = self._noise_params(False) if kind == "noise" else self._channel_params()
        if not params.get("latent"):
            self.export_status.setText("Open an image first.")
            return None
        return params

    def export(self, kind: str, mp4: str | Path, frames: int | None = None) -> bool:
        """Decode `frames` values of a scrub in full (the trajectory: its recorded frames) and write
        `mp4` and the GIF beside it; `exported` carries the result. The frames are decoded a few at a time,
        so the bar and the label count them ("Decoding frames 8 / 24"), then say when the files are written."""
        session = self._session()
        if session is None or self.run_id() is None:
            return False
        if kind == "trajectory" and not self.trajectory:
            self.export_status.setText("Record a trajectory first.")
            return False
        params = self._export_params(kind) if kind != "trajectory" else {}
        if params is None:
            return False
        report = ExportReport(self.export_bar.step, self.export_bar.writing, self._exported)
        job = self.requests.export(Path(mp4), self.export_fps.value(), report)
        self.export_button.setEnabled(False)
        if kind == "trajectory":
            job.write([f["image"] for f in self.trajectory])
        else:
            values = self.export_values(kind, int(frames or self.export_frames.value()))
            job.decode_then_write(values, prefix=kind, params=params, run=self.run_id(),
                                  out=self.requests.export_dir(kind), steps=self.full_steps.value(),
                                  seed=self.seed.value())  # fmt: skip
        return True

    def _exported(self, text: str, result: dict[str, Any] | None) -> None:
        self.export_bar.finish(text)
        if result is not None:
            self.exported.emit(result)
