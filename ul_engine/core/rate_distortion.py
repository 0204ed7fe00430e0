"""The rate–distortion record: every evaluated stage-1 checkpoint as a point (bits/pixel, PSNR).

`ul eval` (and with it the app's Evaluate action and `ul study`) records its result in two places: as
metric series at the checkpoint's step (`eval/psnr`, …: the Runs table and the Monitor read those), and
merged into the checkpoint row's metrics together with its settings (images, decoder steps): that row is
what the Rate–distortion view plots, so a point always names a checkpoint that can be opened.
Torch-free: the GUI imports it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the store imports the core at run time; the core names its types only
    from ul_engine.store import CheckpointInfo, Store

PREFIX = "eval/"
SERIES = ("psnr", "ssim", "bits_per_pixel", "bits_per_dim")
"""Measured values logged as metric series (one point per evaluated checkpoint step)."""
SETTINGS = ("n", "decoder_steps")
"""How the values were measured: kept on the checkpoint row only (not curves worth plotting)."""


@dataclass(frozen=True)
class RDPoint:
    """One checkpoint of a stage-1 run; `psnr` and `bits_per_pixel` are None until it is evaluated."""

    run_id: int
    run_name: str
    checkpoint_id: int
    step: int
    loss_factor: float | None
    psnr: float | None = None
    bits_per_pixel: float | None = None
    ssim: float | None = None
    n: int | None = None
    decoder_steps: int | None = None

    @property
    def evaluated(self) -> bool:
        return self.psnr is not None and self.bits_per_pixel is not None


def record_evaluation(store: Store, run_id: int, step: int, sha256: str | None, result: dict[str, Any]) -> int | None:
    """Store an evaluation of the run's checkpoint at `step`; returns the checkpoint id (None: no row).

    The row is matched on the step and, when given, the file's sha256, so a result never lands on a
    different file that was later saved at the same step.
    """
    rows = [c for c in store.list_checkpoints(run_id) if c.step == step and (sha256 is None or c.sha256 == sha256)]
    values = {f"{PREFIX}{k}": float(result[k]) for k in SERIES if result.get(k) is not None}
    store.log_metrics(run_id, [(int(step), time.time(), values)])
    if not rows:
        return None
    settings = {f"{PREFIX}{k}": float(result[k]) for k in SETTINGS if result.get(k) is not None}
    ck = max(rows, key=lambda c: c.id)
    store.merge_checkpoint_metrics(ck.id, {**values, **settings})
    return int(ck.id)


def _value(metrics: dict[str, Any], key: str) -> float | None:
    value = metrics.get(f"{PREFIX}{key}")
    return None if value is None else float(value)


def collect(store: Store) -> list[RDPoint]:
    """Every checkpoint on disk of every stage-1 run, by run then step (evaluated or not).

    Stage-2 runs are left out: their reconstructions are their stage-1 checkpoint's.
    """
    points: list[RDPoint] = []
    for run in store.list_runs():
        if run.stage != 1:
            continue
        lf = ((run.config or {}).get("loss") or {}).get("loss_factor")
        by_step: dict[int, CheckpointInfo] = {}
        for ck in store.list_checkpoints(run.id):
            if ck.path.is_file() and (ck.step not in by_step or ck.id > by_step[ck.step].id):
                by_step[ck.step] = ck
        for step in sorted(by_step):
            ck = by_step[step]
            m = dict(ck.metrics or {})
            n, dsteps = _value(m, "n"), _value(m, "decoder_steps")
            points.append(
                RDPoint(
                    run_id=run.id,
                    run_name=run.name,
                    checkpoint_id=ck.id,
                    step=step,
                    loss_factor=None if lf is None else float(lf),
                    psnr=_value(m, "psnr"),
                    bits_per_pixel=_value(m, "bits_per_pixel"),
                    ssim=_value(m, "ssim"),
                    n=None if n is None else int(n),
                    decoder_steps=None if dsteps is None else int(dsteps),
                )
            )
    return points
