"""Client of the resident session worker (`python -m ul_engine.worker session`), over JSON lines.

The GUI asks it what it cannot know without torch (the devices) and, in later pages, to reconstruct and
sample. Requests are answered asynchronously through callbacks; the process ends with the app.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QProcess, Signal

from app.workers import procs
from ul_engine.core import protocol

Callback = Callable[[bool, Any], None]  # (ok, result or error message)
EventCallback = Callable[[dict], None]  # an interim line of a request, e.g. {"event": "progress", ...}


class SessionClient(QObject):
    ready = Signal()
    devices_known = Signal(dict)  # {"cpu": {"threads", "cores"}, "gpus": [names]}
    failed = Signal(str)  # the worker could not start or died
    log_line = Signal(str)

    def __init__(self, home: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.home = Path(home)
        self.proc = QProcess(self)
        self.proc.readyReadStandardOutput.connect(self._read_stdout)
        self.proc.readyReadStandardError.connect(self._read_stderr)
        self.proc.errorOccurred.connect(self._on_error)
        self.proc.finished.connect(self._on_finished)
        self.is_ready = False
        self.devices: dict[str, Any] | None = None
        self._next_id = 1
        self._pending: dict[int, Callback] = {}
        self._events: dict[int, EventCallback] = {}
        self._queued: list[str] = []
        self._buffer = b""
        self._stderr: list[str] = []
        self._closing = False

    def start(self) -> None:
        program, args = procs.session_command(self.home)
        self.proc.setProcessEnvironment(procs.worker_environment())
        self.proc.setProgram(program)
        self.proc.setArguments(args)
        self.proc.start()

    def request(
        self, op: str, callback: Callback | None = None, *, on_event: EventCallback | None = None, **params: Any
    ) -> int:
        """Send {"id", "op", ...}; `callback(ok, result_or_error)` runs when the answer arrives, and
        `on_event(message)` for each interim line of this request before it (progress)."""
        rid = self._next_id
        self._next_id += 1
        if callback is not None:
            self._pending[rid] = callback
        if on_event is not None:
            self._events[rid] = on_event
        line = protocol.encode({"id": rid, "op": op, **params}) + "\n"
        if self.is_ready:
            self.proc.write(line.encode())
        else:
            self._queued.append(line)
        return rid

    def ask_devices(self) -> None:
        self.request("devices", self._on_devices)

    def _on_devices(self, ok: bool, result: Any) -> None:
        if ok and isinstance(result, dict):
            self.devices = result
            self.devices_known.emit(result)
        else:
            self.failed.emit(f"device query failed: {result}")

    def shutdown(self, wait_ms: int = 1500) -> None:
        if self.proc.state() == QProcess.ProcessState.NotRunning:
            return
        self._closing = True
        if self.is_ready:
            self.proc.write((protocol.encode({"id": 0, "op": "shutdown"}) + "\n").encode())
            self.proc.closeWriteChannel()
            if self.proc.waitForFinished(wait_ms):
                return
        self.proc.kill()
        self.proc.waitForFinished(1000)

    # ---- process I/O ---------------------------------------------------------------------------------

    def _read_stdout(self) -> None:
        self._buffer += bytes(self.proc.readAllStandardOutput())
        *lines, self._buffer = self._buffer.split(b"\n")
        for raw in lines:
            msg = protocol.decode(raw.decode("utf-8", errors="replace"))
            if msg is None:
                continue
            if msg.get("event") == "ready":
                self.is_ready = True
                for line in self._queued:
                    self.proc.write(line.encode())
                self._queued.clear()
                self.ready.emit()
                continue
            if "event" in msg:
                on_event = self._events.get(msg.get("id"))
                if on_event is not None:
                    on_event(msg)
                continue
            self._events.pop(msg.get("id"), None)
            callback = self._pending.pop(msg.get("id"), None)
            if callback is not None:
                callback(bool(msg.get("ok")), msg.get("result") if msg.get("ok") else msg.get("error"))

    def _read_stderr(self) -> None:
        text = bytes(self.proc.readAllStandardError()).decode("utf-8", errors="replace")
        for line in text.splitlines():
            self._stderr = [*self._stderr[-199:], line]
            self.log_line.emit(line)

    def _on_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self.failed.emit(f"the session worker could not start: {self.proc.errorString()}")

    def _on_finished(self, code: int, _status: QProcess.ExitStatus) -> None:
        self.is_ready = False
        pending = list(self._pending.values())
        self._pending.clear()
        self._events.clear()
        for callback in pending:
            callback(False, "the session worker ended")
        if not self._closing:
            last = self._stderr[-1] if self._stderr else f"exit code {code}"
            self.failed.emit(f"the session worker ended: {last}")
