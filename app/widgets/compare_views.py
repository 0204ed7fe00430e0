"""The Reconstruct page's right side for images: which pair to compare, the views (side by side, A/B split,
difference heatmap, mean and spread of K decodes) and the metrics panel, for one image job.

A job without a result yet shows its input at once: the file is decoded off the GUI thread with the engine's
reader, and the views fill with the reconstruction when it arrives.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QStackedWidget, QTabWidget, QVBoxLayout, QWidget

from app import glossary
from app.models.jobs import CANCELLED, ERROR, ImageJob
from app.models.reconstructions import (
    B_PAIRS,
    PAIRS,
    decode_input,
    has_result,
    metrics_html,
    pair_images,
    read_rgb,
    short_title,
)
from app.widgets.image_views import HeatmapView, SideBySide, SplitView, ViewSync, ZoomView, qimage_from_array, titled
from app.widgets.metrics_table import metrics_panel
from app.workers.background import BackgroundTask, run_in_background
from ul_engine.core.reconstruction import abs_difference

SAMPLES_HINT = (
    "Set Samples K to 2 or more: each image is then decoded K times with different seeds, and this tab shows "
    "their mean and the per-pixel standard deviation — the detail the decoder invents rather than reads from "
    "the latent."
)


class CompareViews(QWidget):
    """`show_job(job)` puts a job in the views; `update_pairs(has_b)` offers the B comparisons or not."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.shown: ImageJob | None = None
        self._preview: BackgroundTask[np.ndarray] | None = None
        self._preview_job: ImageJob | None = None
        root = QVBoxLayout(self)
        root.setContentsMargins(0, 0, 0, 0)
        pair_row = QHBoxLayout()
        pair_row.addWidget(QLabel("Compare"))
        self.pair = QComboBox()
        for key, text in PAIRS:
            self.pair.addItem(text, key)
        self.pair.setToolTip("Which two images the views compare.")
        self.pair.currentIndexChanged.connect(lambda _=0: self.show_job(self.shown, force=True))
        pair_row.addWidget(self.pair, 1)
        root.addLayout(pair_row)
        body = QHBoxLayout()
        self.tabs = QTabWidget()
        self.side = SideBySide()
        self.split = SplitView()
        self.heatmap = HeatmapView()
        self._build_samples()
        for widget, name, tip in (
            (
                self.side,
                "Side by side",
                "Both images with zoom and pan kept in step (wheel, drag, double-click to fit).",
            ),
            (self.split, "A/B split", "One image over the other; drag the line to wipe between them."),
            (self.heatmap, "Difference", "Per-pixel absolute difference (mean over RGB) with its colour scale."),
            (self.samples_stack, "Samples (mean / std)", "Mean of K decodes and their per-pixel standard deviation."),
        ):
            self.tabs.setTabToolTip(self.tabs.addTab(widget, name), tip)
        body.addWidget(self.tabs, 1)
        self.metrics_panel = metrics_panel()
        self.metrics_panel.setToolTip(glossary.metrics_tip())
        body.addWidget(self.metrics_panel)
        root.addLayout(body, 1)
        self.show_job(None)

    def _build_samples(self) -> None:
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
        self.samples_hint = QLabel(SAMPLES_HINT)
        self.samples_hint.setWordWrap(True)
        self.samples_hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.samples_stack.addWidget(self.samples_hint)
        self.samples_stack.addWidget(samples_page)

    def update_pairs(self, has_b: bool) -> None:
        """The comparisons with model B are offered only when a model B is chosen."""
        model = self.pair.model()
        for row in range(self.pair.count()):
            if self.pair.itemData(row) in B_PAIRS:
                item = model.item(row)  # type: ignore[attr-defined]  # a QComboBox's model is a QStandardItemModel
                item.setEnabled(has_b)
                item.setToolTip("" if has_b else "Choose a model in “Compare with” first.")
        if not has_b and self.pair.currentData() in B_PAIRS:
            self.pair.setCurrentIndex(self.pair.findData("input-a"))

    # ---- showing ------------------------------------------------------------------------------------

    def show_job(self, job: ImageJob | None, *, force: bool = False) -> None:
        if job is self.shown and not force:
            return
        self.shown = job
        self.metrics_panel.setText(metrics_html(job))
        if job is not None and has_result(job):
            job.preview = None  # the engine's copy of the input is on disk now
            self._show_result(job)
        elif job is not None and job.state not in (ERROR, CANCELLED) and job.preview is not None:
            self._show_input(job.preview)
        else:
            self._clear()
            if job is not None and job.state not in (ERROR, CANCELLED):
                self._decode_input(job)

    def _clear(self) -> None:
        self.side.set_images(None, "", None, "")
        self.split.set_images(None, None, "", "")
        self.heatmap.set_data(None, "", "")
        self.samples_stack.setCurrentIndex(0)

    def _show_input(self, rgb: np.ndarray) -> None:
        """The input alone while its reconstruction is on its way."""
        self._clear()
        self.side.set_images(qimage_from_array(rgb), "Input", None, "Reconstruction: on its way…")

    def _decode_input(self, job: ImageJob) -> None:
        if self._preview_job is job or "preview_error" in job.extra:
            return
        if self._preview is not None:
            self._preview.cancel()  # an older job's input: no longer wanted
        self._preview_job = job
        self._preview = run_in_background(
            lambda _task: decode_input(job.path),
            done=lambda rgb: self._on_input(job, rgb),
            failed=lambda message: self._on_input(job, None, message),
        )

    def _on_input(self, job: ImageJob, rgb: np.ndarray | None, error: str | None = None) -> None:
        self._preview = self._preview_job = None
        if rgb is None:
            job.extra["preview_error"] = error  # the check says what is wrong with the file, in the table
            return
        if has_result(job):
            return
        job.preview = rgb
        if self.shown is job:
            self.show_job(job, force=True)

    def _show_result(self, job: ImageJob) -> None:
        try:
            left, left_title, right, right_title = pair_images(job, str(self.pair.currentData()))
        except (OSError, KeyError) as exc:
            self.metrics_panel.setText(metrics_html(job) + f"<p style='color:#d32f2f'>{exc}</p>")
            return
        qa, qb = qimage_from_array(left), qimage_from_array(right)
        self.side.set_images(qa, left_title, qb, right_title)
        self.split.set_images(qa, qb, left_title.split(" (")[0], right_title.split(" (")[0])
        diff = abs_difference(left, right)
        self.heatmap.set_data(
            diff,
            f"|{short_title(left_title)} − {short_title(right_title)}| per pixel, mean {diff.mean():.2f} levels",
            "levels",
        )
        self._show_samples(job)

    def _show_samples(self, job: ImageJob) -> None:
        entry = job.entry or {}
        files = entry.get("files") or {}
        if not (files.get("mean") and files.get("std")):
            self.samples_stack.setCurrentIndex(0)
            return
        k = (entry.get("params") or {}).get("samples")
        std = np.load(files["std"], allow_pickle=False)
        self.mean_title.setText(f"Mean of {k} decodes")
        self.mean_view.set_image(qimage_from_array(read_rgb(files["mean"])))
        self.std_map.set_data(std, f"Std of {k} decodes per pixel, mean {std.mean():.2f} levels", "levels")
        self.samples_sync.follow(self.mean_view)
        self.samples_stack.setCurrentIndex(1)
