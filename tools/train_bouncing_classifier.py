"""Train the bouncing-clip classifier behind FVD-bouncing (seeded; about 7 minutes on one shared CPU thread).

    python -m tools.train_bouncing_classifier --out resources/metrics/bouncing-classifier.safetensors

Every training clip is fresh (clip i of seed stream `--seed` is a pure function of (seed, i)), so there is
no over-fitting to a finite set; the held-out set is a disjoint seed stream. Step k renders its batch at
16, 24 or 32 pixels in turn (the network resizes to 32), so the small video presets' clips are in
distribution. The held-out accuracies of the weights as shipped (fp16) go into the safetensors metadata
and a JSON file next to it; docs/benchmarks.md quotes them.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tools.classifier_training import classifier_main, run_info, ship_feature_net
from ul_engine.eval.metrics.bouncing_features import (
    DEFAULT_PATH,
    FEATURE_DIM,
    FORMAT,
    INPUT_FRAMES,
    INPUT_SIZE,
    MAX_SPEED,
    BouncingClassifier,
    load_bouncing_classifier,
    render_labelled_clips,
)

HELDOUT_SEED_OFFSET = 2_000_003  # the held-out stream's seed = seed + this; never a training stream
SIDES = (16, 24, 32)  # rendering sizes, cycled step by step


def heldout_sets(seed: int, n: int) -> dict[int, dict[str, np.ndarray]]:
    """n held-out clips split over SIDES; each side's clips are a disjoint range of the held-out stream."""
    per = max(1, n // len(SIDES))
    return {side: render_labelled_clips(seed + HELDOUT_SEED_OFFSET, i * per, per, side=side)
            for i, side in enumerate(SIDES)}  # fmt: skip


def evaluate(model: BouncingClassifier, sets: dict[int, dict[str, np.ndarray]]) -> dict[str, float]:
    """Per-head held-out accuracies and regression errors (in pixels of each clip's own size)."""
    model.eval()
    totals: dict[str, list[np.ndarray]] = {k: [] for k in ("kind", "count", "direction", "center", "velocity")}
    by_side = {}
    for side, data in sets.items():
        x = torch.from_numpy(data["x"])
        with torch.no_grad():
            outs = [model(x[i : i + 256]) for i in range(0, len(x), 256)]
        hits = {k: torch.cat([o[k] for o in outs]).argmax(1).numpy() == data[k] for k in ("kind", "count", "direction")}
        err = np.abs(torch.cat([o["regress"] for o in outs]).numpy() - data["regress"])
        for k, v in hits.items():
            totals[k].append(v)
        totals["center"].append(err[:, :4].ravel() * side / 2)
        totals["velocity"].append(err[:, 4:6].ravel() * MAX_SPEED * side)
        by_side[str(side)] = float(hits["kind"].mean())
    return {
        "n": int(sum(len(d["x"]) for d in sets.values())),
        "kind_accuracy": float(np.concatenate(totals["kind"]).mean()),
        "count_accuracy": float(np.concatenate(totals["count"]).mean()),
        "direction_accuracy": float(np.concatenate(totals["direction"]).mean()),
        "center_mae_px": float(np.concatenate(totals["center"]).mean()),
        "velocity_mae_px_per_frame": float(np.concatenate(totals["velocity"]).mean()),
        "kind_accuracy_by_side": by_side,
    }


def train(
    out: Path, *, steps: int, batch_size: int, lr: float, seed: int, heldout: int, threads: int, log_every: int = 50
) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = BouncingClassifier()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    held = heldout_sets(seed, heldout)
    start = time.perf_counter()
    for step in range(steps):
        for group in opt.param_groups:  # linear warm-up, cosine decay to 0
            group["lr"] = lr * min(1.0, (step + 1) / 100) * 0.5 * (1 + math.cos(math.pi * step / steps))
        batch = render_labelled_clips(seed, step * batch_size, batch_size, side=SIDES[step % len(SIDES)])
        model.train()
        o = model(torch.from_numpy(batch["x"]))
        loss = (
            F.cross_entropy(o["kind"], torch.from_numpy(batch["kind"]))
            + F.cross_entropy(o["count"], torch.from_numpy(batch["count"]))
            + F.cross_entropy(o["direction"], torch.from_numpy(batch["direction"]))
            + 4.0 * F.mse_loss(o["regress"], torch.from_numpy(batch["regress"]))
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % log_every == 0 or step + 1 == steps:
            print(f"step {step + 1}/{steps}  loss {loss.item():.4f}  {time.perf_counter() - start:.0f}s", flush=True)
    seconds = time.perf_counter() - start
    command = "python -m tools.train_bouncing_classifier " + " ".join(sys.argv[1:])
    train_info = run_info(
        model, steps=steps, batch_size=batch_size, lr=lr, seed=seed, threads=threads, seconds=round(seconds, 1),
        clips_seen=steps * batch_size, render_sides=list(SIDES),
    )  # fmt: skip
    meta = {
        "format": FORMAT,
        "width": "16",
        "input_size": str(INPUT_SIZE),
        "input_frames": str(INPUT_FRAMES),
        "feature_dim": str(FEATURE_DIM),
        "heldout": evaluate(model, held),
        "train": train_info,
        "command": command,
        "heldout_seed": str(seed + HELDOUT_SEED_OFFSET),
    }
    return ship_feature_net(out, model, meta, reload=load_bouncing_classifier, evaluate=lambda m: evaluate(m, held))


def main(argv: list[str] | None = None) -> int:
    return classifier_main(
        argv, doc=__doc__, default_out=DEFAULT_PATH, train=train, steps=900, batch_size=64, heldout=3000,
        heldout_help="held-out clips (split over the rendering sizes)",
    )  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
