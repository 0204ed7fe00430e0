"""Training logs a reconstruction-quality curve: `preview/psnr` (dB) at every stage-1 preview, measured on the
preview images the loop decodes anyway, and records the preview grid's layout for the app's thumbnails."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from ul_engine.core.config import resolve
from ul_engine.store import Store
from ul_engine.train.runner import train_run


def test_every_stage1_preview_logs_its_psnr_and_layout(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "home")
    sets = {"train.steps": 20, "train.checkpoint_every": 10, "optim.batch_size": 8}
    cfg = resolve("smoke", [f"{k}={json.dumps(v)}" for k, v in sets.items()])
    run_id = store.create_run(name="psnr", stage=1, preset="smoke", config=cfg.to_dict(), total_steps=20).id
    train_run(store, run_id, install_signal_handlers=False)

    previews = store.list_artifacts(run_id, kind="preview")
    psnr = store.read_metric(run_id, "preview/psnr")
    assert sorted(p.step for p in previews) == [10, 20]
    assert list(psnr.steps) == [10, 20]
    assert np.isfinite(psnr.values).all() and (psnr.values > 0).all() and (psnr.values <= 100).all()

    layout = previews[-1].params["layout"]
    h, w = layout["tile"]
    grid = Image.open(previews[-1].path)
    count = previews[-1].params["count"]
    pad, scale = layout["pad"], layout["scale"]
    assert layout["kind"] == "input_recon"
    assert grid.size == (scale * (count * w + (count - 1) * pad), scale * (2 * h + pad))
