"""What the feature networks' training scripts share: the command line, the training record and shipping the fp16
weights with held-out numbers re-measured on them."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def classifier_main(
    argv: list[str] | None,
    *,
    doc: str | None,
    default_out: Path,
    train: Callable[..., dict[str, Any]],
    steps: int,
    batch_size: int,
    heldout: int,
    heldout_help: str,
) -> int:
    p = argparse.ArgumentParser(description=(doc or "").split("\n")[0])
    p.add_argument("--out", type=Path, default=default_out)
    p.add_argument("--steps", type=int, default=steps)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--heldout", type=int, default=heldout, help=heldout_help)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    report = train(
        args.out, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
        heldout=args.heldout, threads=args.threads,
    )  # fmt: skip
    print(json.dumps(report, indent=2))
    return 0


def run_info(model: Any, **fields: Any) -> dict[str, Any]:
    """The training record every feature network ships with: the caller's fields plus where it ran."""
    import platform

    import torch

    return {
        **fields,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def ship_feature_net(
    out: Path,
    model: Any,
    meta: dict[str, Any],
    *,
    reload: Callable[[Path], tuple[Any, dict[str, Any]]],
    evaluate: Callable[[Any], dict[str, float]],
) -> dict[str, Any]:
    """Write fp16 weights + metadata, re-measure the held-out numbers on the fp16 weights as shipped (what the
    metric uses), write them into the file and a JSON sidecar; returns that report."""
    from ul_engine import weights
    from ul_engine.core import io

    tensors = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    weights.save_tensors(out, tensors, meta)
    shipped, _ = reload(out)
    meta = {**meta, "heldout": evaluate(shipped)}
    sha = weights.save_tensors(out, tensors, meta)
    report = {"path": str(out), "sha256": sha, "heldout": meta["heldout"], "train": meta["train"],
              "command": meta["command"]}  # fmt: skip
    io.write_json(out.with_suffix(".json"), report)
    return report
