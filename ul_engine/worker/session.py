"""The resident session worker: keeps models loaded and answers interactive requests (JSON lines).

Requests: {"id", "op", ...}; answers: {"id", "ok", "result"} or {"id", "ok": false, "error"}. Images
travel as PNG files whose paths are in the request/answer, never inline.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, TextIO

from ul_engine.errors import ULError
from ul_engine.worker import protocol


class Session:
    """Loaded runs by id, so repeated requests skip the load."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.loaded: dict[int, Any] = {}

    def _run(self, ref: int | str) -> Any:
        from ul_engine.commands import load_run

        run = self.store.get_run(ref)
        if run.id not in self.loaded:
            self.loaded[run.id] = load_run(self.store, run.id)
        return self.loaded[run.id]

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "ping":
            return {"pong": time.time()}
        if op == "devices":
            return devices()
        if op == "load":
            loaded = self._run(request["run"])
            return {"run": loaded.run.id, "stage": loaded.run.stage, "checkpoint_step": loaded.checkpoint_step}
        if op == "reconstruct":
            from ul_engine.commands import reconstruct_files

            results = reconstruct_files(
                self.store,
                request["run"],
                request["inputs"],
                Path(request["out"]),
                decoder_steps=request.get("decoder_steps"),
                seed=int(request.get("seed", 0)),
                sampler=request.get("sampler"),
            )
            return {"results": results}
        if op == "sample":
            from ul_engine.commands import sample_files

            outputs = sample_files(
                self.store,
                request["run"],
                Path(request["out"]),
                n=int(request.get("n", 4)),
                seed=int(request.get("seed", 0)),
                base_steps=request.get("base_steps"),
                decoder_steps=request.get("decoder_steps"),
                sampler=request.get("sampler"),
                guidance=request.get("guidance"),
                class_label=request.get("class"),
            )
            return {"outputs": outputs}
        raise ULError(f"unknown op {op!r}; known: {', '.join(protocol.SESSION_OPS)}")


def devices() -> dict[str, Any]:
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
        try:
            result = session.handle(request)
            protocol.write({"id": rid, "ok": True, "result": result}, stdout)
        except ULError as exc:
            protocol.write({"id": rid, "ok": False, "error": str(exc)}, stdout)
        except Exception as exc:  # one bad request must not end the session
            protocol.write({"id": rid, "ok": False, "error": f"{type(exc).__name__}: {exc}"}, stdout)
    return 0
