"""An encoded latents folder (what `ul encode` writes) as stage 2's training data (`data.kind = "latents"`).

Layout: `latents-00000.safetensors` … (`z` (N, C, h, w) or (N, C, T', h, w), fp16 or fp32, and `labels` (N,)),
`latents-00000.json` beside each (the items' relative paths and labels), and `latent_stats.json` (shape,
per-channel mean/std, the source run and its checkpoint's sha256, λ_z(0), α0, σ0, how to make z0).

The checks are torch-free (a config can be checked anywhere); reading the shards imports torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ul_engine.core.config import RunConfig
from ul_engine.core.errors import ConfigError

FORMAT = "ul-studio-latents/1"
STATS_NAME = "latent_stats.json"


def shard_name(index: int) -> str:
    return f"latents-{index:05d}.safetensors"


def read_stats(folder: str | Path) -> dict[str, Any]:
    """latent_stats.json of an encoded folder, or a ConfigError saying what is wrong with the folder."""
    folder = Path(folder).expanduser()
    path = folder / STATS_NAME
    if not folder.is_dir():
        raise ConfigError(f"data.path: {folder} is not a folder (give a folder written by `ul encode`)")
    if not path.is_file():
        raise ConfigError(f"data.path: {folder} has no {STATS_NAME}; encode a dataset into it with `ul encode`")
    try:
        stats = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} is not readable JSON ({exc})") from None
    if not isinstance(stats, dict) or stats.get("format") != FORMAT:
        raise ConfigError(f"{path} is not a UL Studio latents index (format {FORMAT})")
    return stats


def check_latents(cfg: RunConfig, stage1_sha256: str | None = None) -> dict[str, Any]:
    """Refuse a latents folder that this stage-2 run cannot train on; returns its stats.

    The shape must be the run's latent shape, the latents must be z_clean (the base model adds its own noise),
    λ_z(0) must agree, and, given the run's stage-1 checkpoint, the folder must come from that checkpoint (its
    decoder is what turns the base model's samples into images)."""
    stats = read_stats(cfg.data.path)
    shape = tuple(stats.get("shape") or ())
    if shape != cfg.latent_shape():
        raise ConfigError(
            f"data.path: the latents in {cfg.data.path} are shaped {list(shape)}, this run's latents are "
            f"{list(cfg.latent_shape())}; encode the data with this run's stage-1 model"
        )
    if stats.get("latent") != "z_clean":
        raise ConfigError(
            f"data.path: {cfg.data.path} holds noisy z0 samples (ul encode --noisy); stage 2 trains on z_clean "
            "(encode with --clean, the default)"
        )
    if float(stats.get("latent_logsnr_max", float("nan"))) != cfg.loss.latent_logsnr_max:
        raise ConfigError(
            f"data.path: the latents were encoded at λ_z(0) = {stats.get('latent_logsnr_max')}, this run uses "
            f"loss.latent_logsnr_max = {cfg.loss.latent_logsnr_max}"
        )
    source = (stats.get("checkpoint") or {}).get("sha256")
    if stage1_sha256 and source != stage1_sha256:
        raise ConfigError(
            f"data.path: {cfg.data.path} was encoded by checkpoint {str(source)[:12]}…, but this stage-2 run's "
            f"stage-1 checkpoint is {stage1_sha256[:12]}… (its decoder would not match these latents); "
            "use --from-run/--checkpoint of the run that encoded them"
        )
    return stats


def load_latents(folder: str | Path) -> tuple[Any, Any, dict[str, Any]]:
    """All shards listed in latent_stats.json → (z float32 (N, …), labels int64 (N,), stats)."""
    import torch  # why: the checks above stay torch-free (a config is checked where torch is not loaded)

    from ul_engine import weights  # why: weights reads safetensors through torch, which the checks do not need

    folder = Path(folder).expanduser()
    stats = read_stats(folder)
    zs, ys = [], []
    for shard in stats.get("shards", []):
        tensors, _ = weights.load_tensors(folder / shard["file"])
        if "z" not in tensors or tensors["z"].shape[0] != shard["count"]:
            raise ConfigError(f"{folder / shard['file']} does not hold the {shard['count']} latents its index lists")
        zs.append(tensors["z"].float())
        ys.append(tensors["labels"].long())
    if not zs or sum(z.shape[0] for z in zs) == 0:
        raise ConfigError(f"data.path: {folder} holds no latents")
    return torch.cat(zs), torch.cat(ys), stats
