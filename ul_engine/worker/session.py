"""The resident session worker: keeps models loaded and answers interactive requests (JSON lines).

Requests: {"id", "op", ...}; answers: {"id", "ok", "result"} or {"id", "ok": false, "error"}; before its
answer an op may write interim lines {"id", "event": "progress", ...} through `session.emit`. Images
travel as PNG files whose paths are in the request/answer, never inline. Each op is a function
registered with `@op("name")`, in its own module under `ul_engine/worker/ops/`.
"""

from __future__ import annotations

import importlib
import pkgutil
import time
from collections.abc import Callable
from typing import Any, TextIO

from ul_engine.core import protocol
from ul_engine.core.errors import ULError

OpHandler = Callable[["Session", dict[str, Any]], dict[str, Any]]
OPS: dict[str, OpHandler] = {}


def op(name: str) -> Callable[[OpHandler], OpHandler]:
    """Register a session op; the handler gets the session and the request, returns the result dict."""

    def register(fn: OpHandler) -> OpHandler:
        OPS[name] = fn
        return fn

    return register


class Session:
    """Loaded runs by (id, checkpoint step), so repeated requests skip the load."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.loaded: dict[tuple[int, int | None], Any] = {}
        self.cancelled: set[Any] = set()
        # emit({"event": ..., ...}) writes an interim line tagged with the current request's id (progress)
        self.emit: Callable[[dict[str, Any]], None] = lambda message: None

    def run(self, ref: int | str, step: int | None = None) -> Any:
        """A LoadedRun (see ul_engine.inference.loading.load_run), cached while the session lives."""
        from ul_engine.core.demo import get_run
        from ul_engine.inference.loading import load_run

        run = get_run(self.store, ref)
        key = (run.id, step)
        if key not in self.loaded:
            self.loaded[key] = load_run(self.store, run.id, step=step)
        return self.loaded[key]

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        _load_ops()
        name = request.get("op")
        handler = OPS.get(str(name))
        if handler is None:
            raise ULError(f"unknown op {name!r}; known: {', '.join(sorted(OPS))}")
        return handler(self, request)


_OPS_LOADED: list[bool] = []


def _load_ops() -> None:
    """Import every module of ul_engine.worker.ops once, so their @op registrations run."""
    if _OPS_LOADED:
        return
    from ul_engine.worker import ops

    for info in pkgutil.iter_modules(ops.__path__):
        importlib.import_module(f"{ops.__name__}.{info.name}")
    _OPS_LOADED.append(True)


@op("ping")
def _ping(session: Session, request: dict[str, Any]) -> dict[str, Any]:
    return {"pong": time.time()}


@op("devices")
def _devices(session: Session, request: dict[str, Any]) -> dict[str, Any]:
    """What this machine can train on (the GUI asks here rather than importing torch)."""
    import os

    import torch

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {"cpu": {"threads": torch.get_num_threads(), "cores": os.cpu_count()}, "gpus": gpus}


def serve(store: Any, stdin: TextIO, stdout: TextIO) -> int:
    session = Session(store)
    protocol.write({"event": "ready"}, stdout)
    for line in stdin:
        request = protocol.decode(line)
        if request is None:
            continue
        rid = request.get("id")
        if request.get("op") == "shutdown":
            protocol.write({"id": rid, "ok": True, "result": {}}, stdout)
            return 0
        session.emit = lambda message, rid=rid: protocol.write({**message, "id": rid}, stdout)
        try:
            result = session.handle(request)
            protocol.write({"id": rid, "ok": True, "result": result}, stdout)
        except ULError as exc:
            protocol.write({"id": rid, "ok": False, "error": str(exc)}, stdout)
        except Exception as exc:  # one bad request must not end the session
            protocol.write({"id": rid, "ok": False, "error": f"{type(exc).__name__}: {exc}"}, stdout)
    return 0
