"""The playback clock of the video players: one frame index and one timer that several players share (a sync
group), so an original and its reconstruction always show the same frame."""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import QObject, Qt, QTimer, Signal

from app.models.clips import DEFAULT_FPS

SPEEDS = (0.25, 0.5, 1.0, 1.5, 2.0, 4.0)


class PlaybackClock(QObject):
    """A sync group: one frame index, one timer. Playback is paced by elapsed time (at `fps × speed`), so a
    slow paint drops frames instead of slowing the video down."""

    frameChanged = Signal(int)
    stateChanged = Signal()  # playing, loop, speed or length changed

    def __init__(self, parent: QObject | None = None, now: Callable[[], float] = time.monotonic) -> None:
        super().__init__(parent)
        self.now = now
        self.frame = 0
        self.length = 0
        self.fps = DEFAULT_FPS
        self.speed = 1.0
        self.loop = True
        self.playing = False
        self._anchor = (0.0, 0)  # (time, frame) playback is measured from
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.timeout.connect(self.tick)

    def set_length(self, length: int, fps: float) -> None:
        self.length = max(0, int(length))
        self.fps = float(fps) if fps and fps > 0 else DEFAULT_FPS
        if self.length == 0:
            self.pause()
        self._reanchor()
        self._set_frame(min(self.frame, max(0, self.length - 1)), force=True)
        self._update_interval()
        self.stateChanged.emit()

    def interval_ms(self) -> int:
        """The timer period: one frame at the current rate, at least 5 ms."""
        return max(5, int(1000.0 / (self.fps * self.speed)))

    def _update_interval(self) -> None:
        self._timer.setInterval(self.interval_ms())

    def _reanchor(self) -> None:
        self._anchor = (self.now(), self.frame)

    def play(self) -> None:
        if self.length <= 1 or self.playing:
            return
        if self.frame >= self.length - 1 and not self.loop:
            self._set_frame(0)  # play at the end of a non-looping clip starts it over
        self.playing = True
        self._reanchor()
        self._update_interval()
        self._timer.start()
        self.stateChanged.emit()

    def pause(self) -> None:
        if not self.playing:
            return
        self.playing = False
        self._timer.stop()
        self.stateChanged.emit()

    def toggle(self) -> None:
        self.pause() if self.playing else self.play()

    def seek(self, frame: int) -> None:
        self._set_frame(int(frame))
        self._reanchor()

    def step(self, delta: int) -> None:
        """Frame step (pauses first, as players do); wraps around when looping."""
        self.pause()
        if self.length == 0:
            return
        target = self.frame + int(delta)
        if self.loop:
            target %= self.length
        self.seek(target)

    def set_speed(self, speed: float) -> None:
        self.speed = float(min(max(speed, SPEEDS[0]), SPEEDS[-1]))
        self._reanchor()
        self._update_interval()
        self.stateChanged.emit()

    def set_loop(self, loop: bool) -> None:
        self.loop = bool(loop)
        self.stateChanged.emit()

    def tick(self) -> None:
        """Show the frame that is due now; at the end, wrap (loop) or stop on the last frame."""
        if not self.playing or self.length == 0:
            return
        t0, f0 = self._anchor
        # + 1e-6: a frame due exactly now is not lost to rounding (1.1 s × 20 fps = 21.999…)
        due = f0 + int((self.now() - t0) * self.fps * self.speed + 1e-6)
        if due >= self.length:
            if self.loop:
                due %= self.length
                self._anchor = (self.now(), due)
            else:
                self._set_frame(self.length - 1)
                self.pause()
                return
        self._set_frame(due)

    def _set_frame(self, frame: int, *, force: bool = False) -> None:
        frame = min(max(0, frame), max(0, self.length - 1))
        if frame != self.frame or force:
            self.frame = frame
            self.frameChanged.emit(frame)
