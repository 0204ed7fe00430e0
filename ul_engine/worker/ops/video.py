"""Video ops of the app's Reconstruct and Generate pages: `video.reconstruct` (cached in the store like an
image's reconstruction) and `video.sample`.

Bad files (missing, not a video, truncated) answer with the op's normal error reply and a one-line message.
Progress comes at every tick; the request's `cancel_file` is checked there and the answer is "cancelled".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ul_engine.core import protocol
from ul_engine.core.errors import ULError
from ul_engine.worker.session import Session, op


def _progress(session: Session, cancel_file: str | None) -> Any:
    cancelled = session.cancel_check(cancel_file)

    def progress(done: int, total: int, what: str) -> bool:
        session.progress(done, total, what)
        return cancelled()

    return progress


def _int_or_none(value: Any, name: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ULError(f"{name} must be a whole number, got {value!r}") from None


def _loaded(session: Session, run: protocol.RunRef, checkpoint: int | None) -> Any:
    return session.run(run, _int_or_none(checkpoint, "checkpoint"))


@op(protocol.ReconstructVideo)
def video_reconstruct(session: Session, request: protocol.ReconstructVideo) -> protocol.VideoReconstruction:
    from ul_engine.inference.reconstruct import flat_result, reconstruct_cached  # why: torch, on the first request

    raw = request.params
    params = {
        "decoder_steps": _int_or_none(raw.get("decoder_steps"), "decoder_steps"),
        "seed": _int_or_none(raw.get("seed"), "seed") or 0,
        "max_frames": _int_or_none(raw.get("max_frames"), "max_frames"),
    }
    loaded = _loaded(session, request.run, request.checkpoint)
    entry = reconstruct_cached(session.store, loaded, request.path, params,
                               progress=_progress(session, request.cancel_file))  # fmt: skip
    result = {**flat_result(entry), "cached": entry["cached"]}
    keys = ("original", "reconstruction", "frames", "fps", "psnr_per_frame", "psnr", "bits_per_pixel",
            "bits_per_dim", "cached", "decoder_steps", "seed", "checkpoint_step")  # fmt: skip
    return protocol.from_wire(protocol.VideoReconstruction, {k: result.get(k) for k in keys})


@op(protocol.SampleVideos)
def video_sample(session: Session, request: protocol.SampleVideos) -> protocol.VideoSamples:
    from ul_engine.inference.sample import sample_clips  # why: torch, on the first request

    loaded = _loaded(session, request.run, request.checkpoint)
    out_dir = request.out_dir or session.store.run_dir(loaded.run.id) / "video-samples"
    result = sample_clips(
        session.store, loaded, Path(out_dir), n=_int_or_none(request.n, "n") or 1,
        frames=_int_or_none(request.frames, "frames"), seed=_int_or_none(request.seed, "seed") or 0,
        base_steps=_int_or_none(request.steps, "steps"),
        decoder_steps=_int_or_none(request.decoder_steps, "decoder_steps"),
        context=request.context, context_frames=_int_or_none(request.context_frames, "context_frames"),
        progress=_progress(session, request.cancel_file),
    )  # fmt: skip
    return protocol.from_wire(protocol.VideoSamples, result)
