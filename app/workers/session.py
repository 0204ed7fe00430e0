"""Client of the resident session worker (`python -m ul_engine.worker session`), over JSON lines.

The GUI asks it what it cannot know without torch (the devices), and the pages send it their work. Every
request is a typed `ul_engine.core.protocol` request; its answer arrives through a callback as the request's
typed result (or an error message), its interim events as `Progress` / `Partial`. The process ends with the app.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from PySide6.QtCore import QObject, QProcess, Signal

from app.workers import procs
from ul_engine.core import protocol
from ul_engine.core.errors import ULError

R = TypeVar("R")
Callback = Callable[[bool, Any], None]  # (ok, the request's typed result | the error message)
EventCallback = Callable[[protocol.Event], None]  # an interim event of a request (Progress, Partial)


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
        self._pending: dict[int, tuple[protocol.Request[Any], Callback]] = {}
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

    def call(
        self,
        request: protocol.Request[R],
        callback: Callable[[bool, R | str], None] | None = None,
        *,
        on_event: EventCallback | None = None,
    ) -> int:
        """Send a typed request; `callback(ok, result_or_error)` runs when the answer arrives (the result typed
        as the request's RESULT), and `on_event(event)` for each interim event of this request before it."""
        rid = self._next_id
        self._next_id += 1
        if callback is not None:
            self._pending[rid] = (request, callback)
        if on_event is not None:
            self._events[rid] = on_event
        line = protocol.encode(request.to_message(rid)) + "\n"
        if self.is_ready:
            self.proc.write(line.encode())
        else:
            self._queued.append(line)
        return rid

    def ask_devices(self) -> None:
        self.call(protocol.Devices(), self._on_devices)

    def _on_devices(self, ok: bool, result: protocol.DeviceInfo | str) -> None:
        if ok and isinstance(result, protocol.DeviceInfo):
            self.devices = protocol.to_wire(result)
            self.devices_known.emit(self.devices)
        else:
            self.failed.emit(f"device query failed: {result}")

    def shutdown(self, wait_ms: int = 1500) -> None:
        if self.proc.state() == QProcess.ProcessState.NotRunning:
            return
        self._closing = True
        if self.is_ready:
            self.proc.write((protocol.encode(protocol.Shutdown().to_message(0)) + "\n").encode())
            self.proc.closeWriteChannel()
            if self.proc.waitForFinished(wait_ms):
                return
        self.proc.kill()
        self.proc.waitForFinished(1000)

    # ---- process I/O ---------------------------------------------------------------------------------

    def _read_stdout(self) -> None:
        self._buffer += bytes(self.proc.readAllStandardOutput().data())
        *lines, self._buffer = self._buffer.split(b"\n")
        for raw in lines:
            msg = protocol.decode(raw.decode("utf-8", errors="replace"))
            if msg is not None:
                self._dispatch(msg)

    def _dispatch(self, msg: dict[str, Any]) -> None:
        if msg.get("event") == "ready":
            self.is_ready = True
            for line in self._queued:
                self.proc.write(line.encode())
            self._queued.clear()
            self.ready.emit()
            return
        rid = msg.get("id")
        if not isinstance(rid, int):
            return
        if "event" in msg:
            on_event = self._events.get(rid)
            event = protocol.parse_event(msg)
            if on_event is not None and event is not None:
                on_event(event)
            return
        self._events.pop(rid, None)
        pending = self._pending.pop(rid, None)
        if pending is None:
            return
        request, callback = pending
        if not msg.get("ok"):
            callback(False, str(msg.get("error")))
            return
        try:
            result = request.result(msg.get("result") or {})
        except (ULError, TypeError) as exc:  # a worker of another version answered
            callback(False, f"the session worker's answer to {request.OP} is not understood: {exc}")
            return
        callback(True, result)

    def _read_stderr(self) -> None:
        text = bytes(self.proc.readAllStandardError().data()).decode("utf-8", errors="replace")
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
        for _request, callback in pending:
            callback(False, "the session worker ended")
        if not self._closing:
            last = self._stderr[-1] if self._stderr else f"exit code {code}"
            self.failed.emit(f"the session worker ended: {last}")
