"""`ul encode`: an image or video folder through a run's encoder into sharded safetensors (see latents.py).

Items (files, or clips of a video folder) are split into shards by their sorted order, so a second run of
the same command finds the same shards: a shard whose index JSON matches (same checkpoint, items, mode,
dtype, seed) is kept, the rest are encoded. Each shard's safetensors is written atomically before its
index JSON, which marks it finished, so an interrupted encode loses at most the shard in progress. A file
that cannot be read is skipped and listed (in its shard's index, latent_stats.json and the result).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ul_engine import weights
from ul_engine.core import io
from ul_engine.core.config import RunConfig
from ul_engine.core.errors import DataError, ULError
from ul_engine.core.image_folder import ImageFolderSource
from ul_engine.data.loader import to_model_tensor
from ul_engine.data.video_folder import VideoFolderSource
from ul_engine.diffusion.gaussian import alpha_sigma_scalar
from ul_engine.ecosystem.latents import FORMAT, STATS_NAME, shard_name

DTYPES = {"fp32": torch.float32, "fp16": torch.float16}
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Item:
    """One thing to encode: an image file, or one clip (a start frame) of a video file."""

    path: str  # relative to the data folder, POSIX separators
    label: int
    index: int  # into the source
    start_frame: int | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "label": self.label}
        if self.start_frame is not None:
            out["start_frame"] = self.start_frame
        return out


def folder_items(cfg: RunConfig, data: Path) -> tuple[Any, list[Item], dict[str, str]]:
    """The run's kind of source on `data` (centre crops at the run's resolution), its items, and the files
    already known to be unreadable (a video folder decodes every file once when it is opened)."""
    d = cfg.data
    if cfg.model.time_axis:
        source = VideoFolderSource(data, d.resolution, d.frames, d.frame_stride, "center", d.seed)
        items = [
            Item(Path(f).relative_to(source.root).as_posix(), 0, i, start)
            for i, (f, start) in enumerate(source.clips)
        ]
        return source, items, dict(source.skipped)
    source = ImageFolderSource(data, d.resolution, "center", d.class_subfolders, d.seed)
    items = [Item(f.relative_to(source.root).as_posix(), source.labels[i], i) for i, f in enumerate(source.files)]
    return source, items, {}


def _read(source: Any, item: Item) -> tuple[np.ndarray, int]:
    if hasattr(source, "read"):  # an image folder: this very file, never a substitute
        return source.read(item.index, crop="center")
    return source.load(item.index, crop="center")


def encode_folder(
    loaded: Any,
    data: str | Path,
    out: str | Path,
    *,
    batch: int = 32,
    noisy: bool = False,
    seed: int = 0,
    dtype: str = "fp32",
    shard_size: int = 1024,
    progress: Progress | None = None,
    source_of: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Encode `data` with a loaded run's encoder into `out`; returns the summary `ul encode --json` prints.

    `source_of`: {"run": {...}, "checkpoint": {"step", "sha256"}} of the stage-1 model (default: the loaded run
    and checkpoint; a stage-2 run passes its stage-1 parent, whose checkpoint made its encoder)."""
    if batch < 1 or shard_size < 1:
        raise ULError("--batch and --shard-size must be at least 1")
    if dtype not in DTYPES:
        raise ULError(f"--dtype must be one of {', '.join(DTYPES)}")
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise ULError(f"--out {out} is a file; give a folder")
    data = Path(data).expanduser()
    model = getattr(loaded.stage1, "inner", loaded.stage1)  # a tiled (demo) model: its own nets at its own size
    cfg: RunConfig = model.cfg
    source, items, skipped = folder_items(cfg, data)
    run = loaded.run
    source_of = source_of or {
        "run": {"id": getattr(run, "id", None), "name": getattr(run, "name", None)},
        "checkpoint": {"step": loaded.checkpoint_step, "sha256": loaded.checkpoint_sha256},
    }
    base = {
        "checkpoint_sha256": source_of["checkpoint"]["sha256"],
        "latent": "z0" if noisy else "z_clean",
        "seed": seed if noisy else None,
        "dtype": dtype,
        "resolution": cfg.data.resolution,
        "frames": cfg.data.frames,
    }
    count = math.ceil(len(items) / shard_size)
    shards, reused, done = [], 0, 0
    for k in range(count):
        chunk = items[k * shard_size : (k + 1) * shard_size]
        start = k * shard_size
        fingerprint = _fingerprint(base, chunk)
        index = _finished(out, k, fingerprint)
        if index is None:
            index = _encode_shard(model, source, chunk, start, out, k, fingerprint, base, batch, progress, done,
                                  len(items))  # fmt: skip
        else:
            reused += 1
        skipped.update({s["path"]: s["reason"] for s in index["skipped"]})
        shards.append({"file": shard_name(k), "index": shard_name(k).replace(".safetensors", ".json"),
                       "count": index["count"]})  # fmt: skip
        done += len(chunk)
        if progress is not None:
            progress(done, len(items))
    _remove_stale(out, count)
    total = sum(s["count"] for s in shards)
    if total == 0:
        example = next(iter(skipped.items()), ("", "no items"))
        raise DataError(f"none of the {len(items)} items in {data} could be encoded (e.g. {example[0]}: {example[1]})")
    stats = _stats(source_of, cfg, data, out, shards, base, skipped)
    io.write_json(out / STATS_NAME, stats)
    return {
        "out": str(out),
        "count": total,
        "shards": len(shards),
        "reused_shards": reused,
        "shape": stats["shape"],
        "dtype": dtype,
        "latent": base["latent"],
        "stats": str(out / STATS_NAME),
        "skipped": [{"path": p, "reason": r} for p, r in sorted(skipped.items())],
    }


def _fingerprint(base: dict[str, Any], chunk: list[Item]) -> str:
    blob = json.dumps({**base, "items": [i.as_json() for i in chunk]}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def _finished(out: Path, k: int, fingerprint: str) -> dict[str, Any] | None:
    """The shard's index if the shard is complete and was made by exactly this encode."""
    index_path = out / shard_name(k).replace(".safetensors", ".json")
    if not index_path.is_file() or not (out / shard_name(k)).is_file():
        return None
    try:
        index = json.loads(index_path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return index if index.get("fingerprint") == fingerprint else None


@torch.no_grad()
def _encode_shard(
    model: Any,
    source: Any,
    chunk: list[Item],
    start: int,
    out: Path,
    k: int,
    fingerprint: str,
    base: dict[str, Any],
    batch: int,
    progress: Progress | None,
    done: int,
    total: int,
) -> dict[str, Any]:
    device = next(model.parameters()).device
    zs: list[torch.Tensor] = []
    kept: list[Item] = []
    skipped: list[dict[str, str]] = []
    for b in range(0, len(chunk), batch):
        pixels, good = [], []
        for offset, item in enumerate(chunk[b : b + batch]):
            try:
                image, _ = _read(source, item)
            except DataError as exc:
                skipped.append({"path": item.path, "reason": _reason(exc, source, item)})
                continue
            pixels.append(image)
            good.append((start + b + offset, item))
        if pixels:
            z = model.encode(to_model_tensor(np.stack(pixels)).to(device))
            if base["latent"] == "z0":  # item i's ε: torch.randn(shape, generator=manual_seed(seed + i))
                eps = torch.stack(
                    [torch.randn(z.shape[1:], generator=torch.Generator().manual_seed(base["seed"] + i))
                     for i, _ in good]
                )  # fmt: skip
                z = model.noisy_latent(z, eps.to(z.device))
            zs.append(z.float().cpu())
            kept.extend(item for _, item in good)
        if progress is not None:
            progress(done + min(b + batch, len(chunk)), total)
    shape = (0, *model.cfg.latent_shape())
    z_all = torch.cat(zs) if zs else torch.zeros(shape)
    labels = torch.tensor([i.label for i in kept], dtype=torch.long)
    weights.save_tensors(out / shard_name(k), {"z": z_all.to(DTYPES[base["dtype"]]), "labels": labels},
                    {"format": FORMAT, "latent": base["latent"], "count": str(len(kept))})  # fmt: skip
    index = {
        "format": FORMAT,
        "shard": shard_name(k),
        "fingerprint": fingerprint,
        "count": len(kept),
        "first_item": start,
        "items": [i.as_json() for i in kept],
        "skipped": skipped,
    }
    io.write_json(out / shard_name(k).replace(".safetensors", ".json"), index)  # written last: the shard is done
    return index


def _reason(exc: DataError, source: Any, item: Item) -> str:
    text = str(exc)
    full = str(Path(source.root) / item.path)
    return text[len(full) + 2 :] if text.startswith(full + ": ") else text


def _remove_stale(out: Path, count: int) -> None:
    """Shards beyond this encode's count (an earlier, larger folder) would be read as if they belonged to it."""
    for path in out.glob("latents-*.*"):
        stem = path.name.split(".")[0]
        number = stem.removeprefix("latents-")
        if number.isdigit() and int(number) >= count and path.suffix in (".safetensors", ".json"):
            path.unlink()


def _stats(
    source_of: dict[str, Any],
    cfg: RunConfig,
    data: Path,
    out: Path,
    shards: list[dict[str, Any]],
    base: dict[str, Any],
    skipped: dict[str, str],
) -> dict[str, Any]:
    """latent_stats.json: per-channel mean/std over every latent (float64), provenance, and the z0 recipe."""
    channels = cfg.model.latent_channels
    total = np.zeros(channels)
    total_sq = np.zeros(channels)
    n = 0
    for shard in shards:
        tensors, _ = weights.load_tensors(out / shard["file"])
        z = tensors["z"].double().transpose(0, 1).reshape(channels, -1)
        total += z.sum(dim=1).numpy()
        total_sq += (z * z).sum(dim=1).numpy()
        n += z.shape[1]
    mean = total / max(n, 1)
    std = np.sqrt(np.maximum(total_sq / max(n, 1) - mean * mean, 0.0))
    lam = cfg.loss.latent_logsnr_max
    alpha0, sigma0 = alpha_sigma_scalar(lam)
    return {
        "format": FORMAT,
        "latent": base["latent"],
        "count": sum(s["count"] for s in shards),
        "shape": list(cfg.latent_shape()),
        "dtype": base["dtype"],
        "shards": shards,
        "channel_mean": mean.tolist(),
        "channel_std": std.tolist(),
        "run": source_of["run"],
        "checkpoint": source_of["checkpoint"],
        "source": {
            "folder": str(data.resolve()),
            "kind": "video-folder" if cfg.model.time_axis else "image-folder",
            "resolution": cfg.data.resolution,
            "frames": cfg.data.frames,
            "crop": "center",
        },
        "latent_logsnr_max": lam,
        "alpha0": alpha0,
        "sigma0": sigma0,
        "z0_from_z_clean": (
            "z0 = alpha0 * z_clean + sigma0 * eps with eps ~ N(0, I): the paper's noisy latent at lambda_z(0) "
            "= latent_logsnr_max, alpha0**2 = sigmoid(lambda_z(0)), sigma0**2 = sigmoid(-lambda_z(0)); the "
            "decoder reads z0, and a model of z0 ends its sampling at lambda_z(0)"
        ),
        "noise": (
            None
            if base["latent"] == "z_clean"
            else f"item i's eps = torch.randn(shape, generator=torch.Generator().manual_seed({base['seed']} + i)), "
            "i counting items in sorted order (skipped ones included)"
        ),
        "skipped": [{"path": p, "reason": r} for p, r in sorted(skipped.items())],
        "config": cfg.to_dict(),
    }
