"""`ul reconstruct` / `ul sample` on video runs, and the session worker's video ops: files in, files out.

Input videos are fitted to the model's square size (centre crop, area resize) as they are decoded, so
memory holds only frames at the model's size; outputs are MP4 (H.264, yuv420p) or GIF at that size.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ul_engine.core import io
from ul_engine.core.errors import ULError
from ul_engine.core.media import fit_square
from ul_engine.core.user_paths import check_file
from ul_engine.core.video_io import read_video, write_video

VIDEO_CACHE_FORMAT = 1
Progress = Callable[[int, int, str], bool | None]


def load_clip(path: str | Path, resolution: int, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """A video file's frames fitted to resolution² (uint8 (N, H, W, 3)) and its frame rate; DataError if bad."""
    if max_frames is not None and max_frames < 1:
        raise ULError("max_frames must be at least 1")
    info = read_video(path, max_frames=max_frames, transform=lambda f: fit_square(f, resolution, "center"))
    return info["array"], info["fps"] or 8.0


def _require_video(loaded: Any) -> None:
    if not loaded.cfg.model.time_axis:
        raise ULError(
            f"run {loaded.run.name} is an image model; videos need a video run (ul train --preset bouncing-32)"
        )


def reconstruct_clip(
    loaded: Any,
    path: str | Path,
    out_dir: Path,
    *,
    decoder_steps: int | None = None,
    seed: int = 0,
    sampler: str | None = None,
    max_frames: int | None = None,
    names: tuple[str, str] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Reconstruct one video file; writes the frames used and their reconstruction as MP4s in out_dir."""
    from ul_engine.inference.clips import reconstruct_video

    _require_video(loaded)
    cfg = loaded.cfg
    frames, fps = load_clip(path, cfg.data.resolution, max_frames)
    steps = decoder_steps or cfg.sampling.decoder_steps
    sampler = sampler or cfg.sampling.sampler
    rec = reconstruct_video(loaded.stage1, frames, decoder_steps=steps, seed=seed, sampler=sampler, progress=progress)
    stem = Path(path).stem
    original_name, recon_name = names or (f"{stem}.original.mp4", f"{stem}.recon.mp4")
    out_dir = Path(out_dir)
    original = write_video(out_dir / original_name, list(rec.original), fps=fps)
    recon = write_video(out_dir / recon_name, list(rec.reconstruction), fps=fps)
    return {
        "input": str(path),
        "original": original["path"],
        "reconstruction": recon["path"],
        "output": recon["path"],
        "fps": fps,
        **rec.metrics(),
        "decoder_steps": steps,
        "sampler": sampler,
        "seed": seed,
        "run": loaded.run.id,
        "checkpoint_step": loaded.checkpoint_step,
        "error": None,
    }


def cache_key(store: Any, loaded: Any, path: str | Path, params: dict[str, Any]) -> tuple[str, int, str]:
    """(sha256 of the file, the checkpoint's id, the params hash): the store's reconstruction-cache keys, so
    other bytes, another checkpoint or other params miss. The file is checked before it is hashed (a FIFO or
    /dev/zero would never finish)."""
    from ul_engine.inference.reconstruct import _checkpoint_id

    digest = io.sha256_file(check_file(path))
    checkpoint_id = _checkpoint_id(store, loaded)
    if checkpoint_id is None:
        raise ULError(f"run {loaded.run.name} has no stored checkpoint at step {loaded.checkpoint_step}")
    blob = json.dumps({**params, "media": "video", "format": VIDEO_CACHE_FORMAT}, sort_keys=True)
    return digest, checkpoint_id, hashlib.sha256(blob.encode()).hexdigest()


def reconstruct_cached(
    store: Any,
    loaded: Any,
    path: str | Path,
    params: dict[str, Any],
    *,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The session op's reconstruction, cached in the store like an image's: a row keyed by (file bytes,
    checkpoint, params) whose files live in runs/<id>/video-cache/; a row whose files are gone is a miss."""
    _require_video(loaded)
    digest, checkpoint_id, params_hash = cache_key(store, loaded, path, params)
    hit = store.cache_get(digest, checkpoint_id, params_hash)
    if hit is not None and hit["metrics"] and Path(hit["metrics"]["original"]).is_file():
        return {**hit["metrics"], "reconstruction": str(hit["path"]), "cached": True}
    folder = store.run_dir(loaded.run.id) / "video-cache" / f"{digest[:20]}-c{checkpoint_id}-{params_hash[:12]}"
    result = reconstruct_clip(
        loaded, path, folder, decoder_steps=params.get("decoder_steps"), seed=int(params.get("seed") or 0),
        max_frames=params.get("max_frames"), names=("original.mp4", "reconstruction.mp4"), progress=progress,
    )  # fmt: skip
    store.cache_put(digest, checkpoint_id, params_hash, path=result["reconstruction"], metrics=result)
    return {**result, "cached": False}


def sample_clips(
    store: Any,
    loaded: Any,
    out_dir: Path,
    *,
    n: int,
    frames: int | None = None,
    seed: int = 0,
    base_steps: int | None = None,
    decoder_steps: int | None = None,
    sampler: str | None = None,
    context: str | Path | None = None,
    context_frames: int | None = None,
    fmt: str = "mp4",
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Generate n clips with a stage-2 video run (optionally continuing a given clip); one file each."""
    from ul_engine.inference.clips import sample_videos

    _require_video(loaded)
    if loaded.base is None:
        raise ULError(f"run {loaded.run.name} is a stage-1 run; sampling needs a stage-2 run")
    if n < 1:
        raise ULError("--n must be at least 1")
    if fmt not in ("mp4", "gif"):
        raise ULError(f"unknown format {fmt!r}; use mp4 or gif")
    cfg = loaded.cfg
    ctx = None
    k = 0
    if context is not None:
        k = int(context_frames or 0)
        if k < 1:
            raise ULError("--context needs --context-frames k ≥ 1 (how many of its first frames to keep)")
        ctx, _ = load_clip(context, cfg.data.resolution, max_frames=k)
    elif context_frames:
        raise ULError("--context-frames needs --context VIDEO")
    params = {
        "frames": frames or cfg.data.frames,
        "base_steps": base_steps or cfg.sampling.base_steps,
        "decoder_steps": decoder_steps or cfg.sampling.decoder_steps,
        "sampler": sampler or cfg.sampling.sampler,
        "context": str(context) if context is not None else None,
        "context_frames": k,
    }
    clips = sample_videos(
        loaded.base, loaded.stage1, n, frames=params["frames"], seed=seed, base_steps=params["base_steps"],
        decoder_steps=params["decoder_steps"], sampler=params["sampler"], context=ctx, context_frames=k,
        progress=progress,
    )  # fmt: skip
    out_dir = Path(out_dir)
    outputs = []
    fps = float(cfg.data.fps)
    for i, clip in enumerate(clips):
        path = out_dir / f"{loaded.run.name}-seed{seed + i:06d}.{fmt}"
        fps = write_video(path, list(clip), fps=cfg.data.fps)["fps"]  # what the file holds (GIF: 100/k)
        io.write_json(path.with_suffix(path.suffix + ".json"), {
            "run": loaded.run.id, "run_name": loaded.run.name, "checkpoint_sha256": loaded.checkpoint_sha256,
            "seed": seed + i, **params,
        })  # fmt: skip
        if store is not None:
            store.add_artifact(loaded.run.id, kind="sample", path=path.resolve(), step=loaded.checkpoint_step,
                               seed=seed + i, params=params)  # fmt: skip
        outputs.append(str(path))
    return {"outputs": outputs, "frames": params["frames"], "fps": fps, "context_frames": k}


def generated_clips(
    loaded: Any,
    n: int,
    *,
    prior_samples: bool = False,
    base_steps: int | None = None,
    decoder_steps: int | None = None,
    seed: int = 0,
) -> Any:
    """n unconditional clips (N, 3, T, H, W) in [−1, 1], quantised to 8 bits as saved clips are: stage-2
    samples (base model → z0 → chunked decoder), or the stage-1 prior's z0 decoded by the same decoder."""
    from ul_engine.data.loader import to_model_tensor
    from ul_engine.inference.clips import decode_video, sample_videos

    cfg = loaded.cfg
    b_steps = base_steps or cfg.sampling.base_steps
    d_steps = decoder_steps or cfg.sampling.decoder_steps
    if prior_samples:
        device = next(loaded.stage1.parameters()).device
        clips = []
        for start in range(0, n, 16):
            seeds = list(range(seed + start, seed + min(n, start + 16)))
            z0 = loaded.stage1.sample_prior(len(seeds), steps=b_steps, seeds=seeds, device=device).cpu()
            for z, s in zip(z0, seeds, strict=True):
                clips.append(decode_video(loaded.stage1, z, steps=d_steps, seed=s + 10_000_019,
                                          sampler=cfg.sampling.sampler))  # fmt: skip
    else:
        assert loaded.base is not None
        clips = sample_videos(loaded.base, loaded.stage1, n, seed=seed, base_steps=b_steps, decoder_steps=d_steps,
                              sampler=cfg.sampling.sampler)  # fmt: skip
    return to_model_tensor(np.stack(clips))


def terminal_progress(enabled: bool) -> tuple[Progress | None, Callable[[], None]]:
    """A tqdm bar on a terminal (one per phase), else nothing; returns (callback, close)."""
    import sys

    if not enabled or not sys.stderr.isatty():
        return None, lambda: None
    from tqdm import tqdm

    bars: dict[str, Any] = {}

    def progress(done: int, total: int, what: str) -> None:
        bar = bars.get(what)
        if bar is None:
            bar = bars[what] = tqdm(total=total, desc=what, unit="step", leave=False)
        bar.total = total
        bar.n = done
        bar.refresh()

    def close() -> None:
        for bar in bars.values():
            bar.close()

    return progress, close
