"""Ops of the app's video work (Reconstruct and Generate with clips). The contract the app codes against:

    {"op": "video.reconstruct", "path": ".../clip.mp4", "run": <id|name>, "checkpoint": <step|null>,
     "params": {"decoder_steps": int|null, "seed": int|null, "max_frames": int|null}, "cancel_file": path|null}
    → interim {"event": "progress", "done", "total", "what"} lines; result
    {"original": "<mp4 of the frames used, at model resolution>", "reconstruction": "<mp4>", "frames": n,
     "fps": f, "psnr_per_frame": [...], "psnr": f, "bits_per_pixel": f, "bits_per_dim": f, "cached": bool}
    Files live in runs/<id>/video-cache/<sha256>-s<step>-<params>/ (a repeat request is answered from there).

    {"op": "video.sample", "run", "checkpoint", "n": int, "frames": int|null, "steps": int|null,
     "decoder_steps": int|null, "seed": int, "context": "<video path>"|null, "context_frames": int|null,
     "out_dir": path|null}
    → progress lines; result {"outputs": ["<mp4>", ...], "frames": n, "fps": f, "context_frames": k|0}
    Without out_dir the clips go to runs/<id>/video-samples/.

    {"op": "video.info", "path"} → {"frames": n, "fps": f, "width": w, "height": h}

Bad files (missing, not a video, truncated) answer with the op's normal error reply and a one-line message.
Cancelling: the GUI creates `cancel_file`; the op checks it at every progress tick and answers "cancelled".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ul_engine.core.errors import ULError
from ul_engine.worker.session import Session, op


def _progress(session: Session, cancel_file: str | None) -> Any:
    def progress(done: int, total: int, what: str) -> bool:
        session.emit({"event": "progress", "done": int(done), "total": int(total), "what": what})
        return bool(cancel_file) and Path(str(cancel_file)).exists()

    return progress


def _loaded(session: Session, request: dict[str, Any]) -> Any:
    if request.get("run") is None:
        raise ULError("the request names no run")
    step = request.get("checkpoint")
    return session.run(request["run"], None if step is None else int(step))


def _int_or_none(value: Any, name: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ULError(f"{name} must be a whole number, got {value!r}") from None


@op("video.reconstruct")
def video_reconstruct(session: Session, request: dict[str, Any]) -> dict[str, Any]:
    from ul_engine.inference.reconstruct import flat_result, reconstruct_cached

    path = request.get("path")
    if not path:
        raise ULError("the request names no video file")
    raw = request.get("params") or {}
    params = {
        "decoder_steps": _int_or_none(raw.get("decoder_steps"), "decoder_steps"),
        "seed": _int_or_none(raw.get("seed"), "seed") or 0,
        "max_frames": _int_or_none(raw.get("max_frames"), "max_frames"),
    }
    loaded = _loaded(session, request)
    entry = reconstruct_cached(session.store, loaded, path, params,
                               progress=_progress(session, request.get("cancel_file")))  # fmt: skip
    result = {**flat_result(entry), "cached": entry["cached"]}
    keys = ("original", "reconstruction", "frames", "fps", "psnr_per_frame", "psnr", "bits_per_pixel",
            "bits_per_dim", "cached", "decoder_steps", "seed", "checkpoint_step")  # fmt: skip
    return {k: result.get(k) for k in keys}


@op("video.sample")
def video_sample(session: Session, request: dict[str, Any]) -> dict[str, Any]:
    from ul_engine.inference.sample import sample_clips

    loaded = _loaded(session, request)
    out_dir = request.get("out_dir") or session.store.run_dir(loaded.run.id) / "video-samples"
    return sample_clips(
        session.store, loaded, Path(out_dir), n=_int_or_none(request.get("n"), "n") or 1,
        frames=_int_or_none(request.get("frames"), "frames"), seed=_int_or_none(request.get("seed"), "seed") or 0,
        base_steps=_int_or_none(request.get("steps"), "steps"),
        decoder_steps=_int_or_none(request.get("decoder_steps"), "decoder_steps"),
        context=request.get("context"), context_frames=_int_or_none(request.get("context_frames"), "context_frames"),
        progress=_progress(session, request.get("cancel_file")),
    )  # fmt: skip


@op("video.info")
def video_info(session: Session, request: dict[str, Any]) -> dict[str, Any]:
    from ul_engine.core.video_io import probe_video

    path = request.get("path")
    if not path:
        raise ULError("the request names no video file")
    return probe_video(path)
