"""The `ul encode`, `ul metrics` and `ul export --format diffusers` command lines (registered by ul_engine.cli).

Torch-free at import, like the rest of the CLI: each command imports its engine module when it runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ul_engine.core.errors import ULError

if TYPE_CHECKING:  # names for the signatures; the commands import the store when they run
    from ul_engine.store import RunInfo, Store


def add_parsers(sub: Any) -> None:
    """Add `encode` and `metrics`, and the diffusers options of the existing `export`."""
    en = sub.add_parser("encode", help="encode an image or video folder to sharded latents (safetensors)")
    en.add_argument("--run", required=True, help="the run whose encoder is used (stage 1, or stage 2: its stage 1)")
    en.add_argument("data", metavar="DATA", help="an image folder (image runs) or a video folder (video runs)")
    en.add_argument("--out", type=Path, required=True, help="the output folder (resumable: finished shards are kept)")
    en.add_argument("--batch", type=int, default=32, metavar="N", help="images (or clips) per encoder call")
    mode = en.add_mutually_exclusive_group()
    mode.add_argument("--clean", dest="noisy", action="store_false", help="write z_clean (default)")
    mode.add_argument("--noisy", dest="noisy", action="store_true", help="write z0 = α0·z_clean + σ0·ε (seeded)")
    en.set_defaults(noisy=False)
    en.add_argument("--seed", type=int, default=0, help="with --noisy: item i's noise is seeded by SEED + i")
    en.add_argument("--dtype", choices=("fp32", "fp16"), default="fp32")
    en.add_argument("--shard-size", type=int, default=1024, metavar="N", help="latents per shard file")
    en.add_argument("--checkpoint", type=int, metavar="STEP", help="the run's checkpoint at STEP (default: latest)")
    en.add_argument("--json", action="store_true")

    me = sub.add_parser("metrics", help="export a run's logged metrics to CSV, JSON lines or TensorBoard")
    me.add_argument("run")
    me.add_argument("--keys", metavar="PATTERN", help="a glob over metric names, e.g. 'loss/*' (default: all)")
    me.add_argument("--format", dest="metrics_format", choices=("csv", "jsonl", "tensorboard"), required=True)
    me.add_argument("--out", type=Path, required=True, help="a file (csv, jsonl) or an event folder (tensorboard)")
    me.add_argument("--json", action="store_true")

    ex = sub.choices["export"]
    ex.add_argument(
        "--format",
        dest="export_format",
        choices=("bundle", "diffusers"),
        default="bundle",
        help="bundle: UL Studio's safetensors + JSON; diffusers: for ULPipeline.from_pretrained(OUT)",
    )
    ex.add_argument("--checkpoint", type=int, metavar="STEP", help="diffusers: the checkpoint at STEP (default: last)")


def _bar(args: argparse.Namespace, unit: str) -> tuple[Any, Any]:
    """A tqdm bar on a terminal without --json (tqdm turns itself off when stderr is not a terminal)."""
    from tqdm import tqdm  # lazy: tqdm (~0.1 s)

    bar = tqdm(total=0, unit=unit, disable=True if args.json else None)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return update, bar


def cmd_encode(args: argparse.Namespace) -> dict[str, Any]:
    from ul_engine.ecosystem.encode import encode_folder  # lazy: torch
    from ul_engine.inference.loading import load_run  # lazy: torch
    from ul_engine.store import Store  # lazy: SQLAlchemy

    if args.batch < 1 or args.shard_size < 1:
        raise ULError("--batch and --shard-size must be at least 1")
    if args.seed < 0:
        raise ULError("--seed must be a non-negative integer")
    if not Path(args.data).expanduser().is_dir():
        raise ULError(f"{args.data} is not a folder (give an image or video folder)")
    store = Store.open(args.home)
    loaded = load_run(store, args.run, step=args.checkpoint)
    update, bar = _bar(args, "item")
    try:
        result = encode_folder(loaded, args.data, args.out, batch=args.batch, noisy=args.noisy, seed=args.seed,
                               dtype=args.dtype, shard_size=args.shard_size, progress=update,
                               source_of=_stage1_source(store, loaded.run))  # fmt: skip
    finally:
        bar.close()
    if not args.json:
        print(f"{result['count']} latents {result['shape']} ({result['latent']}, {result['dtype']}) in "
              f"{result['shards']} shard(s) under {result['out']} ({result['reused_shards']} kept)")  # fmt: skip
        for s in result["skipped"]:
            print(f"skipped {s['path']}: {s['reason']}", file=sys.stderr)
    return result


def _stage1_source(store: Store, run: RunInfo) -> dict[str, Any] | None:
    """A trained stage-2 run encodes with its stage-1 parent's checkpoint: the stats name that one."""
    if run.stage != 2 or run.parent_checkpoint_id is None:
        return None
    try:
        parent = store.get_checkpoint(run.parent_checkpoint_id)
        name = store.get_run(parent.run_id).name
    except ULError:  # the stage-1 run was deleted since: its sha256 is still on the stage-2 run
        return {"run": {"id": run.parent_run_id, "name": None},
                "checkpoint": {"step": None, "sha256": run.parent_checkpoint_sha256}}  # fmt: skip
    return {"run": {"id": parent.run_id, "name": name}, "checkpoint": {"step": parent.step, "sha256": parent.sha256}}


def cmd_metrics(args: argparse.Namespace) -> dict[str, Any]:
    from ul_engine.ecosystem.metrics_export import export_metrics  # lazy: torch
    from ul_engine.store import Store  # lazy: SQLAlchemy

    update, bar = _bar(args, "series")
    try:
        result = export_metrics(Store.open(args.home), args.run, args.metrics_format, args.out, keys=args.keys,
                                progress=update)  # fmt: skip
    finally:
        bar.close()
    if not args.json:
        print(f"{result['points']} points of {len(result['keys'])} series → {result['out']}")
    return result


def cmd_export_diffusers(args: argparse.Namespace) -> dict[str, Any]:
    from ul_engine.inference.loading import load_run  # lazy: torch
    from ul_engine.store import Store  # lazy: SQLAlchemy

    store = Store.open(args.home)
    loaded = load_run(store, args.run, step=args.checkpoint)  # the checks come first, the diffusers import after
    from ul_engine.ecosystem.diffusers_pipeline import export_diffusers  # lazy: torch

    files = export_diffusers(loaded, args.out)
    if not args.json:
        for f in files:
            print(f)
        print(f"load it with: ULPipeline.from_pretrained({str(args.out)!r})", file=sys.stderr)
    return {
        "out": str(args.out),
        "format": "diffusers",
        "run": loaded.run.id,
        "checkpoint_step": loaded.checkpoint_step,
        "checkpoint_sha256": loaded.checkpoint_sha256,
        "components": sorted({f.parent.name for f in files if f.parent != Path(args.out)}),
        "files": [str(f) for f in files],
    }


COMMANDS = {"encode": cmd_encode, "metrics": cmd_metrics}
