"""Ops of the app's Reconstruct page: one image per request, so the GUI drives a batch and cancels it by
not sending the next image.

    {"op": "reconstruct.image", "path": "...", "checkpoint_id": 7,          # or "run" + "checkpoint" (step)
     "params": {"decoder_steps", "sampler", "seed", "samples"},
     "compare": {"checkpoint_id": 9} | null,                               # the same image through a second model
     "cancel_file": "/…/cancel-12" | null, "use_cache": true}
    → interim {"id", "event": "progress", "done", "total", "what"} lines, and per model (0 = A, 1 = B) one
      {"id", "event": "partial", "model", "entry"} once its images are written (bits still null), then
    {"entry": {...}, "compare": {...} | null}                               # see ul_engine.inference.reconstruct

Cancelling inside an image: the session reads stdin only between requests, so the GUI creates
`cancel_file`; the op checks for it after every decoder step and answers with a "cancelled" error
(nothing of that image is cached).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ul_engine.worker.session import Session, op


def _reconstructor(session: Session, spec: dict[str, Any], label: str) -> Any:
    from ul_engine.inference.reconstruct import Reconstructor

    checkpoint_id = spec.get("checkpoint_id")
    if checkpoint_id is not None:
        ck = session.store.get_checkpoint(int(checkpoint_id))
        loaded = session.run(ck.run_id, ck.step)
        return Reconstructor(loaded, session.store, checkpoint_id=ck.id, label=label)
    step = spec.get("checkpoint")
    loaded = session.run(spec["run"], None if step is None else int(step))
    return Reconstructor(loaded, session.store, label=label)


def _params(reconstructor: Any, raw: dict[str, Any]) -> Any:
    return reconstructor.default_params(
        decoder_steps=raw.get("decoder_steps"),
        sampler=raw.get("sampler"),
        seed=raw.get("seed"),
        samples=raw.get("samples"),
        rate_draws=raw.get("rate_draws"),
    )


@op("reconstruct.image")
def reconstruct_image(session: Session, request: dict[str, Any]) -> dict[str, Any]:
    a = _reconstructor(session, request, "A")
    compare_spec = request.get("compare")
    b = _reconstructor(session, compare_spec, "B") if compare_spec else None
    params = _params(a, request.get("params") or {})
    cancel_file = request.get("cancel_file")

    def cancelled() -> bool:
        return bool(cancel_file) and Path(cancel_file).exists()

    models = 2 if b is not None else 1

    def progress_for(index: int) -> Any:
        def progress(done: int, total: int, what: str) -> None:
            session.emit({"event": "progress", "done": index * total + done, "total": models * total, "what": what})

        return progress

    def partial_for(index: int) -> Any:
        def partial(entry: dict[str, Any]) -> None:
            session.emit({"event": "partial", "model": index, "entry": entry})

        return partial

    use_cache = bool(request.get("use_cache", True))
    path = request["path"]
    entry = a.image(path, params, use_cache=use_cache, progress=progress_for(0), cancelled=cancelled,
                    partial=partial_for(0))  # fmt: skip
    other = None
    if b is not None:
        other = b.image(path, params, use_cache=use_cache, progress=progress_for(1), cancelled=cancelled,
                        partial=partial_for(1))  # fmt: skip
    return {"entry": entry, "compare": other}
