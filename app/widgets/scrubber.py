"""A scrubber: a slider whose value is decoded while dragging, and a film strip of frames.

While the slider moves, each new value asks for a fast preview (few decoder steps); one request is in flight
at a time and only the latest value waits behind it, so the previews keep up with the hand instead of
queueing. Releasing the slider (or moving it with the keyboard or wheel) asks for the full decode.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QScrollArea, QSlider, QVBoxLayout, QWidget

from app.widgets.latent_tiles import PixelImage

Done = Callable[[bool, Any], None]  # (ok, {"image": path, ...} or an error message)
DecodeFn = Callable[[float, bool, Done], bool]  # (value, preview, done) → whether a request went out


class Scrubber(QWidget):
    """Slider positions 0…`positions` map to values through `value_of`; `decode` fetches a frame."""

    frame_shown = Signal(float, bool)  # value, preview: a decode arrived and is on screen
    failed = Signal(str)

    def __init__(
        self,
        decode: DecodeFn,
        *,
        positions: int = 100,
        value_of: Callable[[int], float] = lambda p: p / 100.0,
        label_of: Callable[[float], str] = lambda v: f"{v:.2f}",
        placeholder: str = "",
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.decode = decode
        self.value_of = value_of
        self.label_of = label_of
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.view = PixelImage(min_side=160, placeholder=placeholder)
        layout.addWidget(self.view, 1)
        row = QHBoxLayout()
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, positions)
        self.slider.setPageStep(max(1, positions // 10))
        self.value_label = QLabel(label_of(value_of(0)))
        self.value_label.setMinimumWidth(150)
        row.addWidget(self.slider, 1)
        row.addWidget(self.value_label)
        layout.addLayout(row)
        self.timing = QLabel("")
        self.timing.setObjectName("hint")
        self.timing.setToolTip(
            "How long the last frame took, from the request to the picture: previews while dragging use "
            "a few decoder steps, the frame after you let go uses the full number."
        )
        layout.addWidget(self.timing)
        self._in_flight: tuple[float, bool] | None = None
        self._want: tuple[float, bool] | None = None
        self._generation = 0  # bumped when the inputs change: frames asked for before are not shown
        self._flight_generation = 0
        self._sent_at = 0.0
        self.shown: list[tuple[float, bool]] = []  # every frame put on screen (tests and benchmarks)
        self.latencies_ms: list[tuple[bool, float]] = []
        self.slider.valueChanged.connect(self._on_moved)
        self.slider.sliderReleased.connect(self._on_released)

    # ---- public --------------------------------------------------------------------------------------

    def value(self) -> float:
        return self.value_of(self.slider.value())

    def busy(self) -> bool:
        return self._in_flight is not None or self._want is not None

    def refresh(self) -> None:
        """Decode the current value in full (after an input changed: the latent, the mode, the steps…)."""
        self._generation += 1
        self.value_label.setText(self.label_of(self.value()))
        self._ask(self.value(), preview=False)

    def clear(self, note: str = "") -> None:
        """Forget the frame on screen and any on its way (an input is changing); `note` says why."""
        self._generation += 1
        self._want = None
        self.view.set_path(None)
        self.timing.setText(note)

    # ---- slider --------------------------------------------------------------------------------------

    def _on_moved(self, position: int) -> None:
        value = self.value_of(position)
        self.value_label.setText(self.label_of(value))
        self._ask(value, preview=self.slider.isSliderDown())

    def _on_released(self) -> None:
        self._ask(self.value(), preview=False)

    def _ask(self, value: float, *, preview: bool) -> None:
        self._want = (value, preview)
        self._pump()

    def _pump(self) -> None:
        if self._in_flight is not None or self._want is None:
            return
        value, preview = self._want
        self._want = None
        self._in_flight = (value, preview)
        self._flight_generation = self._generation
        self._sent_at = time.perf_counter()
        if not self.decode(value, preview, self._on_done):
            self._in_flight = None

    def _on_done(self, ok: bool, result: Any) -> None:
        value, preview = self._in_flight or (self.value(), False)
        self._in_flight = None
        ms = 1000.0 * (time.perf_counter() - self._sent_at)
        if self._flight_generation != self._generation:  # decoded from inputs that have changed since
            self._pump()
            return
        if ok and isinstance(result, dict) and result.get("image"):
            self.view.set_path(result["image"])
            self.view.setToolTip(self.label_of(value))
            self.latencies_ms.append((preview, ms))
            steps = result.get("steps")
            what = "preview" if preview else "full decode"
            self.timing.setText(f"{what}: {steps} decoder steps, {ms:.0f} ms" if steps else f"{what}: {ms:.0f} ms")
            self.shown.append((value, preview))
            self.frame_shown.emit(value, preview)
        elif not ok:
            self.timing.setText(f"Could not decode: {result}")
            self.failed.emit(str(result))
        self._pump()


class FilmStrip(QScrollArea):
    """A row of frames with captions; clicking one emits its index."""

    frame_clicked = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setFixedHeight(104)
        self.host = QWidget()
        self.row = QHBoxLayout(self.host)
        self.row.setContentsMargins(2, 2, 2, 2)
        self.row.setSpacing(4)
        self.row.addStretch(1)
        self.setWidget(self.host)
        self.frames: list[PixelImage] = []

    def set_frames(self, paths: list[str], captions: list[str]) -> None:
        self.clear()
        for i, (path, caption) in enumerate(zip(paths, captions, strict=False)):
            cell = QWidget()
            col = QVBoxLayout(cell)
            col.setContentsMargins(0, 0, 0, 0)
            col.setSpacing(1)
            img = PixelImage(min_side=64)
            img.setFixedSize(72, 72)
            img.set_path(path)
            img.setToolTip(f"Frame {i + 1}: {caption}. Click to move the slider here.")
            img.clicked.connect(lambda i=i: self.frame_clicked.emit(i))
            label = QLabel(caption)
            label.setObjectName("hint")
            label.setAlignment(Qt.AlignmentFlag.AlignHCenter)
            col.addWidget(img)
            col.addWidget(label)
            self.row.insertWidget(self.row.count() - 1, cell)
            self.frames.append(img)

    def clear(self) -> None:
        while self.row.count() > 1:
            item = self.row.takeAt(0)
            w = item.widget() if item is not None else None
            if w is not None:
                w.deleteLater()
        self.frames = []

    def paths(self) -> list[str]:
        return [f.path for f in self.frames if f.path]
