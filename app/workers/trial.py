"""A short measured training trial: how long 1 000 steps of a preset take on this machine and device.

The trial trains the preset (on built-in shapes at the preset's resolution, so no dataset is needed) for a
few steps in a throw-away data folder, in a worker process, and times the steps after a warm-up from the
worker's progress events. The app caches the result per preset and device (`Settings.estimate`).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from typing import Any

from PySide6.QtCore import QObject, QProcess, Signal

from app.workers import procs
from app.workers.queue_runner import device_env
from ul_engine.core import protocol

WARMUP_STEPS = 3
MEASURE_STEPS = 12
MAX_SECONDS = 60.0

_SCRIPT = r"""
import json, sys
from ul_engine.store import Store
from ul_engine.worker.__main__ import main
home, config, steps = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
store = Store.open(home)
run = store.create_run(name="speed-trial", stage=1, preset=config.get("preset", "custom"), config=config,
                       total_steps=steps)
raise SystemExit(main(["--home", home, "train", "--run", str(run.id), "--steps", str(steps), "--minutes", "1"]))
"""


def trial_config(raw: dict[str, Any], device: str) -> dict[str, Any]:
    """The preset's config made trial-ready: shapes data, stage 1, no checkpoints during the trial."""
    cfg = json.loads(json.dumps(raw))
    data = cfg.setdefault("data", {})
    if data.get("kind") != "shapes":
        data.update(kind="shapes", path="", class_subfolders=False)
    if data.get("num_classes", 0) not in (0, 4):
        data["num_classes"] = 0
    cfg["stage"] = 1
    train = cfg.setdefault("train", {})
    train.update(
        steps=WARMUP_STEPS + MEASURE_STEPS + 50,
        minutes=0.0,
        checkpoint_every=10**9,
        device="cpu" if device == "cpu" else "cuda",
    )
    return cfg


class SpeedTrial(QObject):
    """Runs one trial; emits `done(seconds_per_1000_steps)` or `failed(message)`."""

    done = Signal(float)
    failed = Signal(str)
    progress = Signal(str)

    def __init__(self, raw_config: dict[str, Any], device: str = "cpu", parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.device = device
        self.config = trial_config(raw_config, device)
        self.home = tempfile.mkdtemp(prefix="ul-trial-")
        self.proc = QProcess(self)
        self.proc.readyReadStandardOutput.connect(self._read)
        self.proc.finished.connect(self._on_finished)
        self.proc.errorOccurred.connect(self._on_error)
        self._buffer = b""
        self._points: list[tuple[float, int]] = []
        self._last_rate: float | None = None
        self._result: float | None = None
        self._ended = False
        self._started = 0.0

    def start(self) -> None:
        self.proc.setProcessEnvironment(procs.worker_environment(device_env(self.device)))
        steps = int(self.config["train"]["steps"])
        self.proc.start(sys.executable, ["-c", _SCRIPT, self.home, json.dumps(self.config), str(steps)])
        self._started = time.monotonic()
        self.progress.emit("starting the trial…")

    def cancel(self) -> None:
        self._ended = True
        if self.proc.state() != QProcess.ProcessState.NotRunning:
            self.proc.kill()
            self.proc.waitForFinished(2000)
        self._cleanup()

    def _read(self) -> None:
        self._buffer += bytes(self.proc.readAllStandardOutput().data())
        *lines, self._buffer = self._buffer.split(b"\n")
        for raw in lines:
            ev = protocol.decode(raw.decode("utf-8", errors="replace"))
            if not ev or ev.get("event") != "progress" or ev.get("phase"):
                continue
            step = int(ev.get("step") or 0)
            if ev.get("it_per_s"):
                self._last_rate = float(ev["it_per_s"])
            if step >= WARMUP_STEPS:
                self._points.append((time.monotonic(), step))
            self.progress.emit(f"measuring… step {step}")
            enough = bool(self._points) and self._points[-1][1] - self._points[0][1] >= MEASURE_STEPS
            if enough or time.monotonic() - self._started > MAX_SECONDS:
                self._conclude()
                return

    def _seconds_per_step(self) -> float | None:
        if len(self._points) >= 2 and self._points[-1][1] > self._points[0][1]:
            (t0, s0), (t1, s1) = self._points[0], self._points[-1]
            return (t1 - t0) / (s1 - s0)
        if self._last_rate:
            return 1.0 / self._last_rate
        return None

    def _conclude(self) -> None:
        if self._ended:
            return
        self._ended = True
        per_step = self._seconds_per_step()
        if self.proc.state() != QProcess.ProcessState.NotRunning:
            self.proc.kill()
            self.proc.waitForFinished(2000)
        self._cleanup()
        if per_step is None:
            self.failed.emit("the trial reported no progress")
        else:
            self._result = per_step * 1000.0
            self.done.emit(self._result)

    def _on_finished(self, code: int, _status: QProcess.ExitStatus) -> None:
        if self._ended:
            return
        if code == 0 and self._seconds_per_step() is not None:
            self._conclude()
            return
        self._ended = True
        err = bytes(self.proc.readAllStandardError().data()).decode("utf-8", errors="replace").strip().splitlines()
        self._cleanup()
        self.failed.emit(err[-1] if err else f"the trial ended with code {code}")

    def _on_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart and not self._ended:
            self._ended = True
            self._cleanup()
            self.failed.emit(f"the trial could not start: {self.proc.errorString()}")

    def _cleanup(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)
