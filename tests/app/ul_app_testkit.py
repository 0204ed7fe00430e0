"""Helpers of the app tests: seeded runs with metrics and previews, screenshots as artifacts, and a fake
training worker (torch-free, starts in a fraction of a second) for queue and stop-ladder tests."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ul_engine.core.config import resolve

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "app"
FAKE_WORKER = Path(__file__).resolve().parent / "fake_worker.py"

STAGE1_KEYS = (
    "loss/total", "loss/prior_diffusion", "loss/prior_kl1", "loss/decoder", "loss/decoder_elbo", "rate/nats",
    "rate/bits_per_latent_dim", "rate/bits_per_pixel", "rate/bits_per_subpixel", "latent/z_clean_std",
    "optim/lr", "optim/grad_norm", "train/bad_steps", "perf/examples_per_s",
)  # fmt: skip


def metric_value(key: str, step: int, seed: int = 0) -> float:
    rng = np.random.default_rng([seed, step, len(key)])
    decay = math.exp(-step / 40)
    if key == "optim/lr":
        return 1e-3 * min(1.0, step / 10)
    if key == "train/bad_steps":
        return 0.0
    if key == "perf/examples_per_s":
        return 120 + 10 * rng.standard_normal()
    if key == "loss/prior_kl1":
        return 1e-4 * decay
    base = {"loss/total": 500, "rate/bits_per_pixel": 1.0, "loss/decoder": 350}.get(key, 10.0)
    return base * (0.3 + decay) * (1 + 0.05 * rng.standard_normal())


def seed_run(
    store: Any,
    *,
    name: str | None = None,
    steps: int = 60,
    status: str = "completed",
    stage: int = 1,
    keys: tuple[str, ...] = STAGE1_KEYS,
    previews: int = 2,
    seed: int = 0,
    parent_run_id: int | None = None,
) -> int:
    """A run as if a worker had trained it: metrics for every key, preview PNGs, a status."""
    from datetime import UTC, datetime, timedelta

    cfg = resolve("smoke", stage=stage)
    run = store.create_run(
        name=name, stage=stage, preset="smoke", config=cfg.to_dict(), total_steps=steps, parent_run_id=parent_run_id
    )
    t0 = time.time() - steps
    rows = [(s, t0 + s, {k: metric_value(k, s, seed) for k in keys}) for s in range(1, steps + 1)]
    store.log_metrics(run.id, rows)
    for i in range(previews):
        step = (i + 1) * steps // max(previews, 1)
        path = store.run_dir(run.id) / "previews" / f"step-{step:08d}.png"
        write_png(path, seed=i)
        store.add_artifact(run.id, kind="preview", path=path, step=step)
    started = datetime.now(UTC) - timedelta(seconds=steps)
    store.update_run(run.id, step=steps)
    if status != "created":
        store.transition(run.id, "running", started_at=started)
    if status not in ("created", "running"):
        store.transition(run.id, status, finished_at=datetime.now(UTC))
    return run.id


def write_png(path: Path, seed: int = 0, size: tuple[int, int] = (128, 32)) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = size
    arr = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def save_artifact(widget: Any, name: str) -> Path:
    """A PNG of a widget (QWidget.grab) under test-artifacts/app/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    assert widget.grab().save(str(path)), f"could not write {path}"
    return path


def fake_command(home: Path, modes: dict[int, str] | str, *extra: str):
    """A QueueRunner command factory running the fake worker; `modes` maps run id -> mode (or one mode)."""

    def factory(job: Any, run_id: int):
        mode = modes if isinstance(modes, str) else modes.get(run_id, "ok")
        return sys.executable, [str(FAKE_WORKER), "--home", str(home), "--run", str(run_id), "--mode", mode, *extra]

    return factory
