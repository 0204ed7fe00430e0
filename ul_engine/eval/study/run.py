"""Training and evaluating a study's grid: runs are reused when their config matches, evaluations are cached
in the store per checkpoint and settings."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ul_engine.core import io
from ul_engine.core.config import validate
from ul_engine.core.errors import RunNotFound, ULError
from ul_engine.core.imaging import grid, save_png, tensor_to_uint8
from ul_engine.data import fixed_validation_batch, make_source
from ul_engine.diffusion.precision import sampling_precision
from ul_engine.eval.evaluate import FD_REFERENCE_SEED, evaluate_run
from ul_engine.eval.metrics import SSIM_DEFINITION
from ul_engine.eval.metrics.generation import fd_shapes
from ul_engine.eval.slack import prior_slack
from ul_engine.eval.study.plan import (
    ELBO_OVERRIDE,
    SLACK_STEPS_FACTOR,
    Log,
    StudyPlan,
    StudyRun,
    stage1_config,
    warm_start_folder,
)
from ul_engine.eval.study.report import write_report
from ul_engine.inference.loading import create_stage2_run, load_run, stage2_config
from ul_engine.inference.reconstruct import reconstruct_batch
from ul_engine.inference.sample import generated_samples
from ul_engine.train.runner import export_run, train_run


def _ensure_run(store: Any, name: str, cfg: Any, log: Log, create: Callable[[], Any]) -> tuple[Any, float | None]:
    """Create (or reuse) the run `name` with config `cfg` and train it to its budget; (run, seconds trained)."""
    try:
        run = store.get_run(name)
    except RunNotFound:
        run = None
    if run is not None and run.name != name:  # a prefix match is not this run
        run = None
    if run is not None:
        # Compare as resolved today: a config field added since (at its default), or a reworded preset
        # description, is not a different run.
        if type(cfg).model_validate(run.config).training_hash() != cfg.training_hash():
            raise ULError(
                f"run {name} exists with a different config; delete it (ul delete {name} --yes) or pass --tag"
            )
        if run.status == "completed":
            log(f"{name}: reusing the completed run ({run.step} steps)")
            return run, _train_seconds(store, run)
        log(f"{name}: continuing from step {run.step} ({run.status})")
    else:
        run = create()
        log(f"{name}: training (run {run.id})")
    before = _train_seconds(store, run) if run.step else None
    start = time.perf_counter()
    result = train_run(store, run.id, progress=False)
    if result.status == "stopped":  # SIGINT/SIGTERM or `ul stop`: the whole study stops, resumable as it is
        raise ULError(f"{name} was stopped at step {result.step}; the study stops here (run it again to continue)")
    seconds = (before or 0.0) + time.perf_counter() - start

    io.write_json(store.run_dir(run.id) / "study-train.json", {"train_seconds": seconds})
    return store.get_run(run.id), seconds


def _train_seconds(store: Any, run: Any) -> float | None:
    """Wall seconds spent training this run: the study's own record over all its calls, or, for a run trained
    outside the study with the same config (`ul train`, then reused), its steps times the mean seconds per step
    of its logged throughput (batch / perf/examples_per_s), so the report's from-scratch total counts it."""
    path = store.run_dir(run.id) / "study-train.json"
    try:
        return float(json.loads(path.read_text())["train_seconds"])
    except (OSError, ValueError, KeyError):
        pass
    throughput = store.read_metric(run.id, "perf/examples_per_s").values
    throughput = throughput[np.isfinite(throughput) & (throughput > 0)]
    if not len(throughput) or not run.step:
        return None
    batch = float(validate(run.config).optim.batch_size)
    return float(np.mean(batch / throughput) * run.step)


def _sampling_precision() -> str:
    return sampling_precision("cuda" if torch.cuda.is_available() else "cpu")


def _cached(store: Any, run: Any, key: dict[str, Any], compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """An evaluation of the run's latest checkpoint with settings `key`, from the store's evaluation cache
    when it was computed before (a resumed study skips it), else computed now and recorded there."""
    ckpt = store.latest_checkpoint(run.id)
    if ckpt is None:
        raise ULError(f"run {run.name} has no checkpoint to evaluate")
    precision = _sampling_precision()
    if precision != "fp32":  # a key without it is an fp32 evaluation, as every one before bf16 sampling was
        key = {**key, "sampling_precision": precision}
    hit = store.evaluation_get(ckpt.id, key)
    if hit is not None:
        return hit
    start = time.perf_counter()
    value = {**compute(), "eval_seconds": round(time.perf_counter() - start, 1)}
    store.evaluation_put(ckpt.id, key, value)
    return value


def _mean_last(store: Any, run_id: int, key: str, count: int = 50) -> float | None:
    series = store.read_metric(run_id, key)
    values = np.asarray(series.values, dtype=np.float64)[-count:]
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else None


def run_study(store: Any, plan: StudyPlan, out: Path, *, log: Log = print) -> dict[str, Any]:
    """Train and evaluate the grid, then write `out` (Markdown) and its folder of plots and JSON."""
    threads = next((int(o.split("=", 1)[1]) for o in plan.common if o.startswith("train.threads=")), 0)
    if threads:
        torch.set_num_threads(threads)
    out = Path(out)
    assets = out.parent / out.stem
    assets.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    b = plan.budget
    gen_key = {"fd_n": b.fd_n, "decoder_steps": b.decoder_steps, "base_steps": b.base_steps}
    real_images: Any = None
    floor: dict[str, Any] = {}
    for run in plan.runs:
        init_folder = ""
        if run.init_from_key is not None:
            init_folder = str(_export_for_warm_start(store, plan, run, log))
        cfg = stage1_config(plan, run, init_folder)
        stored, seconds = _ensure_run(
            store,
            run.name,
            cfg,
            log,
            lambda cfg=cfg, run=run: store.create_run(
                name=run.name, stage=1, preset=plan.preset, config=cfg.to_dict(), total_steps=cfg.train.steps or None
            ),
        )
        run.results["stage1_run"] = stored.id
        run.results["steps"] = stored.step
        run.results["train_seconds"] = seconds
        run.results["z_clean_std"] = _mean_last(store, stored.id, "latent/z_clean_std")
        if run.group == "warm":
            run.results["rate_trajectory"] = _trajectory(store, stored.id, "rate/bits_per_pixel")
        log(f"{run.name}: evaluating reconstructions ({b.eval_n} images)")
        run.results["recon"] = _cached(
            store,
            stored,
            {"what": "recon", "n": b.eval_n, "decoder_steps": b.decoder_steps, "ssim": SSIM_DEFINITION},
            lambda name=run.name: evaluate_run(store, name, n=b.eval_n, decoder_steps=b.decoder_steps),
        )
        _save_reconstructions(store, run, assets, b.decoder_steps)
        if real_images is None:
            data_cfg = validate({**cfg.to_dict(), "stage": 1}).data

            real_images = fixed_validation_batch(make_source(data_cfg), b.fd_n, seed=FD_REFERENCE_SEED)[0]
            other = fixed_validation_batch(make_source(data_cfg), b.fd_n, seed=FD_REFERENCE_SEED + 1)[0]
            floor = fd_shapes(real_images, other)
            _save_grid(real_images[:32], assets / "real.png")
        if run.prior_samples:
            log(f"{run.name}: FD-shapes of {b.fd_n} stage-1 prior samples")

            def prior_fd(name: str = run.name, real: Any = real_images) -> dict[str, Any]:
                loaded = load_run(store, name)
                fake = generated_samples(
                    loaded, b.fd_n, prior_samples=True, base_steps=b.base_steps, decoder_steps=b.decoder_steps
                )
                _save_grid(fake[:32], assets / f"samples-{name.removeprefix(plan.tag + '-')}-prior.png")
                return fd_shapes(real, fake)

            run.results["prior_fd"] = _cached(store, stored, {"what": "prior_fd", **gen_key}, prior_fd)
        if run.stage2:
            s2_name = f"{run.name}-s2"
            s2, s2_seconds = _ensure_stage2(
                store, plan, stored, s2_name, [], b.stage2_steps, b.minutes if b.stage2_steps is None else None, log
            )
            run.results["stage2_run"] = s2.id
            run.results["stage2_steps"] = s2.step
            run.results["stage2_train_seconds"] = s2_seconds
            run.results["base_bits_per_pixel"] = _mean_last(store, s2.id, "rate/base_bits_per_pixel")
            log(f"{s2_name}: FD-shapes of {b.fd_n} stage-2 samples")

            def stage2_fd(name: str = s2_name, real: Any = real_images, seed: int = 0) -> dict[str, Any]:
                loaded = load_run(store, name)
                fake = generated_samples(
                    loaded, b.fd_n, base_steps=b.base_steps, decoder_steps=b.decoder_steps, seed=seed
                )
                if not seed:
                    _save_grid(fake[:32], assets / f"samples-{name.removeprefix(plan.tag + '-')}.png")
                return fd_shapes(real, fake)

            run.results["stage2_fd"] = _cached(store, s2, {"what": "stage2_fd", **gen_key}, stage2_fd)
            if run.prior_samples:  # the baseline: the same FD from disjoint seeds, the spread FD verdicts need
                log(f"{s2_name}: FD-shapes of {b.fd_n} more stage-2 samples (seeds {b.fd_n}–{2 * b.fd_n - 1})")
                run.results["stage2_fd_reseeded"] = _cached(
                    store, s2, {"what": "stage2_fd", "seed": b.fd_n, **gen_key}, lambda: stage2_fd(seed=b.fd_n)
                )
        if run.slack:
            run.results["slack"] = _slack(store, plan, run, stored, log)
    wall = time.perf_counter() - started
    return write_report(plan, floor, wall, out, assets, _sampling_precision())


def _export_for_warm_start(store: Any, plan: StudyPlan, run: StudyRun, log: Log) -> Path:
    """The bundle of the run a warm-started run starts from, exported once into the store's home."""
    folder = warm_start_folder(store.home, plan, run)
    if not (folder / "decoder.json").is_file():
        source = plan.run_by_key(run.init_from_key or "")
        log(f"{run.name}: exporting {source.name} to {folder} to start from")
        export_run(store, source.name, folder)
    return folder


def _ensure_stage2(
    store: Any,
    plan: StudyPlan,
    parent: Any,
    name: str,
    overrides: list[str],
    steps: int | None,
    minutes: float | None,
    log: Log,
) -> tuple[Any, float | None]:
    """Create (or reuse) the stage-2 run `name` on `parent`'s latest checkpoint and train it to its budget."""
    cfg, ckpt = stage2_config(store, parent.id, plan.preset, [*plan.common, *overrides], steps=steps, minutes=minutes)
    return _ensure_run(store, name, cfg, log, lambda: create_stage2_run(store, name, plan.preset, cfg, ckpt))


def _slack(store: Any, plan: StudyPlan, run: StudyRun, stored: Any, log: Log) -> dict[str, Any]:
    """Train (or reuse) an unweighted-ELBO base model on the run's frozen latents, then κ (eval/slack.py)."""
    b = plan.budget
    name = f"{run.name}-elbo"
    minutes = None if plan.slack_steps is not None else (b.minutes or 0.0) * SLACK_STEPS_FACTOR
    elbo, seconds = _ensure_stage2(store, plan, stored, name, [ELBO_OVERRIDE], plan.slack_steps, minutes, log)
    log(f"{name}: prior slack κ on {b.eval_n} validation latents")
    value = _cached(
        store, elbo, {"what": "slack", "n": b.eval_n}, lambda: prior_slack(store, name, count=b.eval_n).to_json()
    )
    return {**value, "run": elbo.id, "steps": elbo.step, "train_seconds": seconds}


def _trajectory(store: Any, run_id: int, key: str, points: int = 9) -> list[tuple[int, float]]:
    """(step, mean of the metric over the 50 steps up to it) at `points` evenly spaced steps: how a rate moved."""
    series = store.read_metric(run_id, key)
    steps = np.asarray(series.steps)
    values = np.asarray(series.values, dtype=np.float64)
    if values.size == 0:
        return []
    out = []
    for target in np.linspace(steps.min(), steps.max(), points):
        window = values[(steps <= target) & (steps > target - 50)]
        window = window[np.isfinite(window)]
        if window.size:
            out.append((int(target), float(window.mean())))
    return out


def _save_grid(images: Any, path: Path, cols: int = 8) -> None:
    tiles = grid(tensor_to_uint8(images), cols=cols)
    save_png(path, tiles, scale=max(1, 256 // tiles.shape[1]) if tiles.shape[1] < 256 else 1)


def _save_reconstructions(store: Any, run: StudyRun, assets: Path, decoder_steps: int) -> None:
    """8 validation images over their reconstructions, for the report."""
    path = assets / f"recon-{run.key}.png"
    loaded = load_run(store, run.name)
    x, _ = fixed_validation_batch(make_source(loaded.cfg.data), 8, seed=4321)
    recs = reconstruct_batch(loaded.stage1, x, decoder_steps=decoder_steps, seeds=list(range(8)))
    recon = torch.from_numpy(np.stack([r.reconstruction for r in recs])).permute(0, 3, 1, 2).float() / 127.5 - 1
    _save_grid(torch.cat([x, recon]), path)
