"""`image.reconstruct`: one image per request (the Reconstruct page drives a batch and cancels it by not
sending the next image), through model A and optionally a second model B with the same parameters.

Progress counts decoder steps over both models; per model one `Partial` event carries its images as soon as
they are written (bits still null). Cancelling inside an image: the session reads stdin only between
requests, so the GUI creates the request's `cancel_file`; it is checked after every decoder step and the
answer is a "cancelled" error (nothing of that image is cached).
"""

from __future__ import annotations

from typing import Any

from ul_engine.core import protocol
from ul_engine.core.errors import ULError
from ul_engine.worker.session import Session, op


def _reconstructor(session: Session, checkpoint_id: int | None, run: Any, step: int | None, label: str) -> Any:
    from ul_engine.inference.reconstruct import Reconstructor  # why: torch, on the first request

    if checkpoint_id is not None:
        ck = session.store.get_checkpoint(int(checkpoint_id))
        return Reconstructor(session.run(ck.run_id, ck.step), session.store, checkpoint_id=ck.id, label=label)
    if run is None:
        raise ULError("the request names no checkpoint_id and no run")
    return Reconstructor(session.run(run, None if step is None else int(step)), session.store, label=label)


@op(protocol.ReconstructImage)
def reconstruct_image(session: Session, request: protocol.ReconstructImage) -> protocol.ImageReconstruction:
    a = _reconstructor(session, request.checkpoint_id, request.run, request.checkpoint, "A")
    spec = request.compare
    b = (
        _reconstructor(session, spec.get("checkpoint_id"), spec.get("run"), spec.get("checkpoint"), "B")
        if spec
        else None
    )
    raw = request.params
    params = a.default_params(
        decoder_steps=raw.get("decoder_steps"), sampler=raw.get("sampler"), seed=raw.get("seed"),
        samples=raw.get("samples"), rate_draws=raw.get("rate_draws"),
    )  # fmt: skip
    cancelled = session.cancel_check(request.cancel_file)
    models = 2 if b is not None else 1

    def progress_for(index: int) -> Any:
        def progress(done: int, total: int, what: str) -> None:
            session.progress(index * total + done, models * total, what)

        return progress

    def partial_for(index: int) -> Any:
        return lambda entry: session.partial(index, entry)

    entry = a.image(request.path, params, use_cache=request.use_cache, progress=progress_for(0),
                    cancelled=cancelled, partial=partial_for(0))  # fmt: skip
    other = None
    if b is not None:
        other = b.image(request.path, params, use_cache=request.use_cache, progress=progress_for(1),
                        cancelled=cancelled, partial=partial_for(1))  # fmt: skip
    return protocol.ImageReconstruction(entry, other)
