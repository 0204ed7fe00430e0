"""The resident session worker: keeps models loaded and answers the typed requests of
`ul_engine.core.protocol` (JSON lines on stdin/stdout).

Each op is a thin function registered with `@op(RequestType)` in a module under `ul_engine/worker/ops/`: it
takes the typed request, calls the inference code and returns the request's typed result. Interim progress
goes through `Session.progress` / `Session.partial`, cancelling through the request's `cancel_file`
(`Session.cancel_check`): one channel for every op.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO, TypeVar

from ul_engine.core import protocol
from ul_engine.core.errors import ULError
from ul_engine.store import Store

Q = TypeVar("Q", bound=protocol.Request[Any])
OpHandler = Callable[["Session", Any], Any]
OPS: dict[str, OpHandler] = {}


def op(request_type: type[Q]) -> Callable[[Callable[[Session, Q], Any]], Callable[[Session, Q], Any]]:
    """Register the handler of one request type: (session, request) → the request's result dataclass."""

    def register(fn: Callable[[Session, Q], Any]) -> Callable[[Session, Q], Any]:
        OPS[request_type.OP] = fn
        return fn

    return register


class Session:
    """Loaded runs by (id, checkpoint step), so repeated requests skip the load."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.loaded: dict[tuple[int, int | None], Any] = {}
        # emit({"event": ..., ...}) writes an interim line tagged with the current request's id
        self.emit: Callable[[dict[str, Any]], None] = lambda message: None

    def run(self, ref: protocol.RunRef, step: int | None = None) -> Any:
        """A LoadedRun (see ul_engine.inference.loading.load_run), cached while the session lives."""
        from ul_engine.core.demo import get_run
        from ul_engine.inference.loading import load_run  # why: torch, loaded on the first model request

        run = get_run(self.store, ref)
        key = (run.id, step)
        if key not in self.loaded:
            self.loaded[key] = load_run(self.store, run.id, step=step)
        return self.loaded[key]

    def progress(self, done: int, total: int, what: str = "") -> None:
        self.emit(protocol.event_message(protocol.Progress(int(done), int(total), what)))

    def partial(self, model: int, entry: dict[str, Any]) -> None:
        self.emit(protocol.event_message(protocol.Partial(model, entry)))

    @staticmethod
    def cancel_check(cancel_file: str | None) -> Callable[[], bool]:
        """Whether the parent asked to cancel: it creates the request's `cancel_file`."""
        path = Path(cancel_file) if cancel_file else None
        return lambda: path is not None and path.exists()

    def call(self, request: protocol.Request[Any]) -> Any:
        """Answer one typed request with its typed result."""
        _load_ops()
        handler = OPS.get(request.OP)
        if handler is None:
            raise ULError(f"op {request.OP!r} has no handler in this worker")
        return handler(self, request)

    def handle(self, message: dict[str, Any]) -> dict[str, Any]:
        """One wire request → the wire fields of its result (ULError for an unknown op or a bad request)."""
        _load_ops()
        return protocol.to_wire(self.call(protocol.parse_request(message)))


_OPS_LOADED: list[bool] = []


def _load_ops() -> None:
    """Import every module of ul_engine.worker.ops once, so their @op registrations run."""
    if _OPS_LOADED:
        return
    from ul_engine.worker import ops

    for info in pkgutil.iter_modules(ops.__path__):
        importlib.import_module(f"{ops.__name__}.{info.name}")
    _OPS_LOADED.append(True)


@op(protocol.Devices)
def _devices(session: Session, request: protocol.Devices) -> protocol.DeviceInfo:
    """What this machine can train on (the GUI asks here rather than importing torch)."""
    import torch  # why: the session's first answer must not wait for torch at import

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return protocol.DeviceInfo({"threads": torch.get_num_threads(), "cores": os.cpu_count()}, gpus)


def _emitter(rid: Any, stdout: TextIO) -> Callable[[dict[str, Any]], None]:
    """Interim lines of request `rid`."""
    return lambda event: protocol.write({**event, "id": rid}, stdout)


def serve(store: Store, stdin: TextIO, stdout: TextIO) -> int:
    session = Session(store)
    protocol.write({"event": "ready"}, stdout)
    for line in stdin:
        message = protocol.decode(line)
        if message is None:
            continue
        rid = message.get("id")
        if message.get("op") == protocol.Shutdown.OP:
            protocol.write({"id": rid, "ok": True, "result": {}}, stdout)
            return 0
        session.emit = _emitter(rid, stdout)
        try:
            result = session.handle(message)
            protocol.write({"id": rid, "ok": True, "result": result}, stdout)
        except ULError as exc:
            protocol.write({"id": rid, "ok": False, "error": str(exc)}, stdout)
        except Exception as exc:  # one bad request must not end the session
            protocol.write({"id": rid, "ok": False, "error": f"{type(exc).__name__}: {exc}"}, stdout)
    return 0
