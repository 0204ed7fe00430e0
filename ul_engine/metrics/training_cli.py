"""The command line shared by the feature networks' training scripts (same flags, their own defaults)."""

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
