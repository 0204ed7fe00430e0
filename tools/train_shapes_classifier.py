"""Train the shapes classifier behind FD-shapes (seeded; a few minutes on one CPU thread).

    python -m tools.train_shapes_classifier --out resources/metrics/shapes-classifier.safetensors

Every training image is fresh (image i of seed stream `--seed` is a pure function of (seed, i)), so there
is no over-fitting to a finite set; the held-out set is a disjoint seed stream. The held-out accuracies go
into the safetensors metadata and a JSON file next to it; docs/results.md quotes them.
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
from ul_engine.eval.metrics.features import (
    DEFAULT_PATH,
    FEATURE_DIM,
    FORMAT,
    INPUT_SIZE,
    ShapesClassifier,
    load_shapes_classifier,
    render_labelled,
)

HELDOUT_SEED_OFFSET = 1_000_003  # the held-out stream's seed = seed + this; never a training stream


def evaluate(model: ShapesClassifier, data: dict[str, np.ndarray]) -> dict[str, float]:
    model.eval()
    x = torch.from_numpy(data["x"])
    with torch.no_grad():
        outs = [model(x[i : i + 512]) for i in range(0, len(x), 512)]
    kind = torch.cat([o["kind"] for o in outs]).argmax(1).numpy()
    count = torch.cat([o["count"] for o in outs]).argmax(1).numpy()
    reg = torch.cat([o["regress"] for o in outs]).numpy()
    err = np.abs(reg - data["regress"])
    return {
        "n": len(x),
        "kind_accuracy": float((kind == data["kind"]).mean()),
        "count_accuracy": float((count == data["count"]).mean()),
        "center_mae_px": float(err[:, :2].mean() * INPUT_SIZE / 2),
        "color_mae_rgb": float(err[:, 3:6].mean() * 127.5),
        "background_mae_rgb": float(err[:, 6:].mean() * 127.5),
    }


def train(
    out: Path, *, steps: int, batch_size: int, lr: float, seed: int, heldout: int, threads: int, log_every: int = 100
) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = ShapesClassifier()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    held = render_labelled(seed + HELDOUT_SEED_OFFSET, 0, heldout)
    start = time.perf_counter()
    for step in range(steps):
        for group in opt.param_groups:  # linear warm-up, cosine decay to 0
            group["lr"] = lr * min(1.0, (step + 1) / 100) * 0.5 * (1 + math.cos(math.pi * step / steps))
        batch = render_labelled(seed, step * batch_size, batch_size)
        model.train()
        o = model(torch.from_numpy(batch["x"]))
        loss = (
            F.cross_entropy(o["kind"], torch.from_numpy(batch["kind"]))
            + F.cross_entropy(o["count"], torch.from_numpy(batch["count"]))
            + 4.0 * F.mse_loss(o["regress"], torch.from_numpy(batch["regress"]))
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % log_every == 0 or step + 1 == steps:
            print(f"step {step + 1}/{steps}  loss {loss.item():.4f}  {time.perf_counter() - start:.0f}s", flush=True)
    seconds = time.perf_counter() - start
    command = "python -m tools.train_shapes_classifier " + " ".join(sys.argv[1:])
    train_info = run_info(
        model, steps=steps, batch_size=batch_size, lr=lr, seed=seed, threads=threads, seconds=round(seconds, 1),
        images_seen=steps * batch_size,
    )  # fmt: skip
    meta = {
        "format": FORMAT,
        "width": "24",
        "input_size": str(INPUT_SIZE),
        "feature_dim": str(FEATURE_DIM),
        "heldout": evaluate(model, held),
        "train": train_info,
        "command": command,
        "heldout_seed": str(seed + HELDOUT_SEED_OFFSET),
    }
    return ship_feature_net(out, model, meta, reload=load_shapes_classifier, evaluate=lambda m: evaluate(m, held))


def main(argv: list[str] | None = None) -> int:
    return classifier_main(
        argv, doc=__doc__, default_out=DEFAULT_PATH, train=train, steps=1200, batch_size=128, heldout=4000,
        heldout_help="held-out images",
    )  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
