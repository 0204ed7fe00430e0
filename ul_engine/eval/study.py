"""`ul study`: the paper's tables at small scale, on a fixed budget, written to docs/results.md.

One call builds a grid of runs in the store (names `<tag>-<key>`, e.g. study-lf1.5), trains each in this
process (ul_engine.train.runner.train_run), evaluates them and writes a Markdown report with tables,
PNG plots (drawn with PIL) and the exact commands that reproduce every run:

- rate–distortion: PSNR and bits/pixel over the loss factor c_lf (Table 2);
- autoencoder ablations: UL vs an N(0, I) prior vs an MSE decoder, judged by FD-shapes of stage-2
  samples (Table 5);
- component ablations: λ_z(0) = 10 and the prior stop-gradient (Table 6 B and A);
- stage 2 vs the stage-1 prior: FD-shapes of both sample sets from the same autoencoder (§4).

A run that already exists with the same config is reused (continued if unfinished), so an interrupted
study resumes; one with a different config is an error (delete it or pick another --tag). Evaluations
are cached per checkpoint and settings in the run's folder.
"""

from __future__ import annotations

import itertools
import json
import math
import platform
import shlex
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ul_engine.core.errors import ULError
from ul_engine.eval.metrics import SSIM_DEFINITION

Log = Callable[[str], None]

# The quick grid's networks: the smoke preset's sizes on 32×32 data (latent 8×8×4), ~0.4M parameters.
QUICK_MODEL = [
    "model.encoder.channels=[16, 32, 32]",
    "model.encoder.final_blocks=1",
    "model.prior.width=64",
    "model.prior.depth=2",
    "model.decoder.channels=[16, 32]",
    "model.decoder.width=64",
    "model.decoder.depth=1",
    "model.base.widths=[64, 96]",
    "model.base.depths=[1, 2]",
    "optim.lr=1e-3",
    "optim.warmup_steps=20",
]
FULL_LOSS_FACTORS = (1.3, 1.5, 2.1, 3.0, 10.0)  # the paper's Table 2 range, then where the latent opens at 32 px
QUICK_LOSS_FACTORS = (1.5, 3.0, 10.0)
# The ablations' baseline loss factor. At 32×32 and these budgets the paper's 1.5 leaves a nearly empty
# latent (measured, shapes-32 nets, 500 steps: ~0.005 bits/pixel, ~12 dB), and so does 3 (quick nets, 300
# steps: 0.016 bits/pixel, 12.3 dB); 10 is the grid's loss factor where the latent is clearly in use (quick
# nets, 300 steps: 0.21 bits/pixel, 16.0 dB). Ablating a collapsed autoencoder would compare nothing.
BASELINE_LF = 10.0
STOP_GRADIENT_KL_WEIGHT = 0.1  # the "discounted" N(0, I) KL of Table 6 A; the paper gives no value


@dataclass(frozen=True)
class Budget:
    steps: int | None  # stage-1 optimizer steps per run (None: minutes)
    minutes: float | None
    stage2_steps: int | None
    eval_n: int  # validation images for PSNR/SSIM/bits
    fd_n: int  # samples (and reference images) for FD-shapes
    decoder_steps: int
    base_steps: int


QUICK = Budget(steps=250, minutes=None, stage2_steps=300, eval_n=64, fd_n=256, decoder_steps=16, base_steps=32)
# Full: long enough that the c_lf = 10 autoencoder is usable (~24 dB) and stage 2 is trained as long as stage 1;
# estimated ~90 minutes on 2 idle CPU cores (docs/results.md says how long the last call took).
FULL = Budget(steps=800, minutes=None, stage2_steps=800, eval_n=256, fd_n=500, decoder_steps=32, base_steps=64)


@dataclass
class StudyRun:
    key: str  # lf1.5, normal, mse, lam10, sg, lv
    label: str
    group: str  # "rd" | "ablation"
    overrides: list[str]
    stage2: bool = False
    prior_samples: bool = False
    name: str = ""
    results: dict[str, Any] = field(default_factory=dict)


@dataclass
class StudyPlan:
    preset: str
    tag: str
    quick: bool
    budget: Budget
    common: list[str]  # overrides of every run (quick model, threads, the user's --set)
    runs: list[StudyRun]
    baseline_lf: float
    argv: list[str]

    def stage1_overrides(self, run: StudyRun) -> list[str]:
        return [*self.common, *run.overrides]


def _lf_key(lf: float) -> str:
    return f"lf{lf:g}"


def plan_study(
    *,
    quick: bool = False,
    preset: str = "shapes-32",
    steps: int | None = None,
    minutes: float | None = None,
    stage2_steps: int | None = None,
    loss_factors: list[float] | None = None,
    baseline_lf: float = BASELINE_LF,
    overrides: list[str] | None = None,
    threads: int = 0,
    tag: str | None = None,
    eval_n: int | None = None,
    fd_n: int | None = None,
    decoder_steps: int | None = None,
    base_steps: int | None = None,
    argv: list[str] | None = None,
) -> StudyPlan:
    """The grid and budget; nothing is trained or written."""
    from ul_engine.core.config import resolve

    base = QUICK if quick else FULL
    if steps is not None and minutes is not None:
        raise ULError("give --steps or --minutes, not both")
    if (steps is not None and steps < 1) or (minutes is not None and minutes <= 0):
        raise ULError("--steps must be ≥ 1 and --minutes > 0")
    budget = Budget(
        steps=steps if steps is not None else (None if minutes is not None else base.steps),
        minutes=minutes,
        stage2_steps=stage2_steps if stage2_steps is not None else (None if minutes is not None else base.stage2_steps),
        eval_n=eval_n or base.eval_n,
        fd_n=fd_n or base.fd_n,
        decoder_steps=decoder_steps or base.decoder_steps,
        base_steps=base_steps or base.base_steps,
    )
    if budget.fd_n < 2:
        raise ULError("--fd needs at least 2 samples")
    lfs = sorted(set(loss_factors or (QUICK_LOSS_FACTORS if quick else FULL_LOSS_FACTORS)) | {baseline_lf})
    common = list(QUICK_MODEL) if quick else []
    if threads:
        common.append(f"train.threads={threads}")
    common += list(overrides or [])
    base_lf = [f"loss.loss_factor={baseline_lf}"]
    runs = [
        StudyRun(
            _lf_key(lf),
            f"UL, c_lf = {lf:g}",
            "rd",
            [f"loss.loss_factor={lf}"],
            stage2=lf == baseline_lf,
            prior_samples=lf == baseline_lf,
        )
        for lf in lfs
    ]
    runs += [
        StudyRun("normal", "N(0, I) prior on z0", "ablation", [*base_lf, "ablation.prior=normal"], stage2=True),
        StudyRun("mse", "MSE decoder", "ablation", [*base_lf, 'ablation.decoder_loss="mse"'], stage2=True),
        StudyRun("lam10", "λ_z(0) = 10", "ablation", [*base_lf, "loss.latent_logsnr_max=10"]),
        StudyRun(
            "sg",
            f"prior stop-gradient + {STOP_GRADIENT_KL_WEIGHT:g}·N(0, I) KL",
            "ablation",
            [*base_lf, "ablation.prior_stop_gradient=true", f"ablation.normal_kl_weight={STOP_GRADIENT_KL_WEIGHT}"],
        ),
    ]
    if not quick:
        runs.append(
            StudyRun("lv", "learned encoder variance", "ablation", [*base_lf, "ablation.learned_variance=true"])
        )
    tag = tag or ("study-quick" if quick else "study")
    for run in runs:
        run.name = f"{tag}-{run.key}"
    plan = StudyPlan(preset, tag, quick, budget, common, runs, baseline_lf, list(argv or []))
    for run in runs:  # fail before training anything if an override is wrong
        resolve(preset, plan.stage1_overrides(run), stage=1)
    return plan


# ----------------------------------------------------------------------------------------------
# Running


def _stage1_config(plan: StudyPlan, run: StudyRun) -> Any:
    from ul_engine.core.config import resolve, validate

    cfg = resolve(plan.preset, plan.stage1_overrides(run), stage=1)
    raw = cfg.to_dict()
    if plan.budget.steps is not None:
        raw["train"] = {**raw["train"], "steps": plan.budget.steps, "minutes": 0.0}
    else:
        raw["train"] = {**raw["train"], "steps": 0, "minutes": plan.budget.minutes}
    return validate(raw)


def _ensure_run(store: Any, name: str, cfg: Any, log: Log, create: Callable[[], Any]) -> tuple[Any, float | None]:
    """Create (or reuse) the run `name` with config `cfg` and train it to its budget; (run, seconds trained)."""
    from ul_engine.core.errors import RunNotFound
    from ul_engine.train.runner import train_run

    try:
        run = store.get_run(name)
    except RunNotFound:
        run = None
    if run is not None and run.name != name:  # a prefix match is not this run
        run = None
    if run is not None:
        # Compare as resolved today: a config field added since (at its default) is not a different run.
        if type(cfg).model_validate(run.config).config_hash() != cfg.config_hash():
            raise ULError(
                f"run {name} exists with a different config; delete it (ul delete {name} --yes) or pass --tag"
            )
        if run.status == "completed":
            log(f"{name}: reusing the completed run ({run.step} steps)")
            return run, _train_seconds(store, run.id)
        log(f"{name}: continuing from step {run.step} ({run.status})")
    else:
        run = create()
        log(f"{name}: training (run {run.id})")
    start = time.perf_counter()
    result = train_run(store, run.id, progress=False)
    if result.status == "stopped":  # SIGINT/SIGTERM or `ul stop`: the whole study stops, resumable as it is
        raise ULError(f"{name} was stopped at step {result.step}; the study stops here (run it again to continue)")
    seconds = (_train_seconds(store, run.id) or 0.0) + time.perf_counter() - start
    from ul_engine.core import io

    io.write_json(store.run_dir(run.id) / "study-train.json", {"train_seconds": seconds})
    return store.get_run(run.id), seconds


def _train_seconds(store: Any, run_id: int) -> float | None:
    """Wall seconds the study spent training this run (over all calls), if it trained it."""
    path = store.run_dir(run_id) / "study-train.json"
    try:
        return float(json.loads(path.read_text())["train_seconds"])
    except (OSError, ValueError, KeyError):
        return None


def _cached(store: Any, run: Any, key: dict[str, Any], compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Evaluation results cached in the run's folder, keyed by the checkpoint and the settings."""
    from ul_engine.core import io

    ckpt = store.latest_checkpoint(run.id)
    full_key = json.dumps({**key, "checkpoint": ckpt.sha256 if ckpt else None}, sort_keys=True)
    path = store.run_dir(run.id) / "study-eval.json"
    cache: dict[str, Any] = {}
    if path.is_file():
        try:
            cache = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            cache = {}
    if full_key not in cache:
        start = time.perf_counter()
        value = compute()
        cache[full_key] = {**value, "eval_seconds": round(time.perf_counter() - start, 1)}
        io.write_json(path, cache)
    return cache[full_key]


def _mean_last(store: Any, run_id: int, key: str, count: int = 50) -> float | None:
    series = store.read_metric(run_id, key)
    values = np.asarray(series.values, dtype=np.float64)[-count:]
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else None


def run_study(store: Any, plan: StudyPlan, out: Path, *, log: Log = print) -> dict[str, Any]:
    """Train and evaluate the grid, then write `out` (Markdown) and its folder of plots and JSON."""
    import torch

    from ul_engine.core.config import validate
    from ul_engine.data import fixed_validation_batch, make_source
    from ul_engine.eval.evaluate import FD_REFERENCE_SEED, evaluate_run
    from ul_engine.eval.metrics.generation import fd_shapes
    from ul_engine.inference.loading import load_run, stage2_config
    from ul_engine.inference.sample import generated_samples

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
        cfg = _stage1_config(plan, run)
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
            s2_cfg, ckpt = stage2_config(
                store,
                stored.id,
                plan.preset,
                [*plan.common],
                steps=b.stage2_steps if b.stage2_steps is not None else None,
                minutes=b.minutes if b.stage2_steps is None else None,
            )
            s2, s2_seconds = _ensure_run(
                store,
                s2_name,
                s2_cfg,
                log,
                lambda s2_cfg=s2_cfg, ckpt=ckpt, s2_name=s2_name: store.create_run(
                    name=s2_name,
                    stage=2,
                    preset=plan.preset,
                    config=s2_cfg.to_dict(),
                    total_steps=s2_cfg.train.steps or None,
                    parent_run_id=ckpt.run_id,
                    parent_checkpoint_id=ckpt.id,
                    parent_checkpoint_sha256=ckpt.sha256,
                ),
            )
            run.results["stage2_run"] = s2.id
            run.results["stage2_steps"] = s2.step
            run.results["stage2_train_seconds"] = s2_seconds
            run.results["base_bits_per_pixel"] = _mean_last(store, s2.id, "rate/base_bits_per_pixel")
            log(f"{s2_name}: FD-shapes of {b.fd_n} stage-2 samples")

            def stage2_fd(name: str = s2_name, real: Any = real_images) -> dict[str, Any]:
                loaded = load_run(store, name)
                fake = generated_samples(loaded, b.fd_n, base_steps=b.base_steps, decoder_steps=b.decoder_steps)
                _save_grid(fake[:32], assets / f"samples-{name.removeprefix(plan.tag + '-')}.png")
                return fd_shapes(real, fake)

            run.results["stage2_fd"] = _cached(store, s2, {"what": "stage2_fd", **gen_key}, stage2_fd)
    wall = time.perf_counter() - started
    report = _report(plan, floor, wall, out, assets)
    return report


# ----------------------------------------------------------------------------------------------
# Outputs


def _save_grid(images: Any, path: Path, cols: int = 8) -> None:
    from ul_engine.core.imaging import grid, save_png, tensor_to_uint8

    tiles = grid(tensor_to_uint8(images), cols=cols)
    save_png(path, tiles, scale=max(1, 256 // tiles.shape[1]) if tiles.shape[1] < 256 else 1)


def _save_reconstructions(store: Any, run: StudyRun, assets: Path, decoder_steps: int) -> None:
    """8 validation images over their reconstructions, for the report."""
    import torch

    from ul_engine.data import fixed_validation_batch, make_source
    from ul_engine.inference.loading import load_run
    from ul_engine.inference.reconstruct import reconstruct_batch

    path = assets / f"recon-{run.key}.png"
    loaded = load_run(store, run.name)
    x, _ = fixed_validation_batch(make_source(loaded.cfg.data), 8, seed=4321)
    recs = reconstruct_batch(loaded.stage1, x, decoder_steps=decoder_steps, seeds=list(range(8)))
    recon = torch.from_numpy(np.stack([r.reconstruction for r in recs])).permute(0, 3, 1, 2).float() / 127.5 - 1
    _save_grid(torch.cat([x, recon]), path)


def plot_points(
    series: list[tuple[str, tuple[int, int, int], list[tuple[float, float, str]]]],
    path: Path,
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    log_x: bool = True,
    size: tuple[int, int] = (760, 480),
) -> None:
    """A small scatter/line plot as PNG with PIL: `series` = [(name, rgb, [(x, y, point label)])]."""
    from PIL import Image, ImageDraw, ImageFont

    from ul_engine.core.io import atomic_write_bytes

    w, h = size
    left, right, top, bottom = 78, 210, 40, 58
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=13)
    small = ImageFont.load_default(size=11)
    pts = [(x, y) for _, _, ps in series for x, y, _ in ps if math.isfinite(x) and math.isfinite(y)]
    if not pts:
        pts = [(1.0, 1.0)]
    log_x = log_x and all(x > 0 for x, _ in pts)
    fx = (lambda v: math.log10(v)) if log_x else (lambda v: v)
    xs, ys = [fx(x) for x, _ in pts], [y for _, y in pts]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    pad_x, pad_y = max((x1 - x0) * 0.08, 0.05), max((y1 - y0) * 0.1, 0.5)
    x0, x1, y0, y1 = x0 - pad_x, x1 + pad_x, y0 - pad_y, y1 + pad_y

    def px(x: float, y: float) -> tuple[float, float]:
        return (
            left + (fx(x) - x0) / (x1 - x0) * (w - left - right),
            h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom),
        )

    d.rectangle([left, top, w - right, h - bottom], outline=(60, 60, 60))
    for i in range(6):  # y ticks
        yv = y0 + (y1 - y0) * i / 5
        _, yp = px(10**x0 if log_x else x0, yv)
        d.line([left - 4, yp, left, yp], fill=(60, 60, 60))
        d.line([left + 1, yp, w - right - 1, yp], fill=(235, 235, 235))
        d.text((left - 8, yp), f"{yv:.1f}", fill="black", font=small, anchor="rm")
    if log_x:
        ticks = [10.0**k * m for k in range(math.floor(x0) - 1, math.ceil(x1) + 1) for m in (1, 2, 5)]
        ticks = [t for t in ticks if x0 <= math.log10(t) <= x1]
        if len(ticks) < 3:  # a narrow range: evenly spaced in log space
            ticks = [float(f"{10 ** (x0 + (x1 - x0) * i / 4):.2g}") for i in range(5)]
    else:
        ticks = [x0 + (x1 - x0) * i / 5 for i in range(6)]
    for t in ticks:
        xp, _ = px(t, y0)
        d.line([xp, h - bottom, xp, h - bottom + 4], fill=(60, 60, 60))
        d.line([xp, top + 1, xp, h - bottom - 1], fill=(235, 235, 235))
        d.text((xp, h - bottom + 7), f"{t:g}", fill="black", font=small, anchor="mt")
    d.text(
        ((left + w - right) / 2, h - 18),
        xlabel + (" (log scale)" if log_x else ""),
        fill="black",
        font=font,
        anchor="mm",
    )
    d.text((14, (top + h - bottom) / 2), ylabel, fill="black", font=font, anchor="lm")
    d.text(((left + w - right) / 2, 16), title, fill="black", font=font, anchor="mm")
    for i, (name, color, ps) in enumerate(series):
        shown = [(px(x, y), label) for x, y, label in ps if math.isfinite(x) and math.isfinite(y)]
        if len(shown) > 1:
            d.line([c for c, _ in shown], fill=color, width=2)
        for (cx, cy), label in shown:
            d.ellipse([cx - 4, cy - 4, cx + 4, cy + 4], fill=color, outline="black")
            if label:
                d.text((cx + 6, cy - 6), label, fill=(40, 40, 40), font=small, anchor="lb")
        ly = top + 10 + 20 * i
        d.ellipse([w - right + 14, ly - 4, w - right + 22, ly + 4], fill=color, outline="black")
        d.text((w - right + 28, ly), name, fill="black", font=small, anchor="lm")

    def write(f: Any) -> None:
        img.save(f, format="PNG")

    atomic_write_bytes(Path(path), write)


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "–"
        return f"{v:.{digits}g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def _commands(plan: StudyPlan, run: StudyRun, common: str | None = None) -> list[str]:
    """The `ul` commands that reproduce one run; `common` stands in for the shared overrides (a bash
    array in the report), else they are spelled out."""
    b = plan.budget
    shared = common if common is not None else " ".join(f"--set {shlex.quote(o)}" for o in plan.common)
    own = " ".join(f"--set {shlex.quote(o)}" for o in run.overrides)
    budget = f"--steps {b.steps}" if b.steps is not None else f"--minutes {b.minutes:g}"
    cmds = [" ".join(filter(None, ["ul train --preset", plan.preset, shared, own, budget, "--name", run.name]))]
    cmds.append(f"ul eval --run {run.name} --n {b.eval_n} --decoder-steps {b.decoder_steps} --json")
    if run.prior_samples:
        cmds.append(
            f"ul eval --run {run.name} --n {b.eval_n} --decoder-steps {b.decoder_steps} --fd {b.fd_n} "
            f"--prior-samples --steps {b.base_steps} --json"
        )
    if run.stage2:
        s2_budget = f"--steps {b.stage2_steps}" if b.stage2_steps is not None else f"--minutes {b.minutes:g}"
        parts = ["ul train --stage 2 --from-run", run.name, "--preset", plan.preset, shared, s2_budget]
        cmds.append(" ".join(filter(None, [*parts, "--name", f"{run.name}-s2"])))
        cmds.append(
            f"ul eval --run {run.name}-s2 --n {b.eval_n} --decoder-steps {b.decoder_steps} --fd {b.fd_n} "
            f"--steps {b.base_steps} --json"
        )
    return cmds


COLLAPSED_BITS_PER_PIXEL = 0.01  # below this the latent is empty: PSNR is the decoder's unconditional guess


def _yes(ok: bool) -> str:
    return "yes" if ok else "no"


def _rising_verdict(values: list[float], open_: list[int], lfs: list[str]) -> str:
    """'yes' if rising over the whole grid; 'partly' if rising over the runs whose latent is open while the
    others all left it empty (a flat, collapsed stretch is noise, not a fall); otherwise 'no'."""
    if all(a < b for a, b in itertools.pairwise(values)):
        return "yes"
    empty = [lf for i, lf in enumerate(lfs) if i not in open_]
    rising_where_open = len(open_) > 1 and all(values[a] < values[b] for a, b in itertools.pairwise(open_))
    if empty and rising_where_open and open_ == list(range(len(lfs) - len(open_), len(lfs))):
        return (
            f"partly: from c_lf {lfs[open_[0]]} on; at {', '.join(empty)} the latent is empty "
            f"(< {COLLAPSED_BITS_PER_PIXEL} bits/px)"
        )
    return "no"


def _checks(plan: StudyPlan, by_key: dict[str, StudyRun], base: StudyRun, floor: dict[str, Any]) -> list[str]:
    """The paper's claims (reference §8 checks 4–7, Tables 5–6) against this study's numbers."""

    def bpp(key: str) -> float | None:
        r = by_key.get(key)
        return float(r.results["recon"]["bits_per_pixel"]) if r else None

    def fd(key: str, which: str = "stage2_fd") -> float | None:
        r = by_key.get(key)
        value = (r.results.get(which) or {}).get("value") if r else None
        return float(value) if value is not None else None

    rd = sorted((r for r in plan.runs if r.group == "rd"), key=lambda r: float(r.key[2:]))
    rows: list[tuple[str, str, str]] = []
    if len(rd) > 1:
        bits = [float(r.results["recon"]["bits_per_pixel"]) for r in rd]
        psnrs = [float(r.results["recon"]["psnr"]) for r in rd]
        lfs = [r.key[2:] for r in rd]
        open_ = [i for i, b in enumerate(bits) if b >= COLLAPSED_BITS_PER_PIXEL]
        for claim, values, measured in (
            (
                "bits/pixel rise with c_lf (Table 2)",
                bits,
                f"c_lf {', '.join(lfs)}: " + " → ".join(f"{v:.3g}" for v in bits),
            ),
            ("PSNR rises with c_lf (Table 2)", psnrs, " → ".join(f"{v:.1f} dB" for v in psnrs)),
        ):
            rows.append((claim, measured, _rising_verdict(values, open_, lfs)))

    def compare(claim: str, key: str, higher: bool, value: Callable[[str], float | None], unit: str) -> None:
        v, ref = value(key), value(base.key)
        if v is None or ref is None:
            return
        rows.append((claim, f"{v:.3g} vs {ref:.3g} {unit}", _yes(v > ref if higher else v < ref)))

    compare("λ_z(0) = 10 measures a much lower rate (Table 6 B: 0.008 vs 0.059)", "lam10", False, bpp, "bits/px")
    compare("prior stop-gradient: a higher, unregulated rate (Table 6 A: 0.121 vs 0.059)", "sg", True, bpp, "bits/px")
    compare("an N(0, I) prior needs more bits (Table 5: 0.39 vs 0.079)", "normal", True, bpp, "bits/px")
    compare("an N(0, I) prior gives worse samples (Table 5: gFID 2.5 vs 1.4)", "normal", True, fd, "FD-shapes")
    compare("an MSE decoder gives worse samples (Table 5: gFID 2.4 vs 1.4)", "mse", True, fd, "FD-shapes")
    s2, prior = fd(base.key), fd(base.key, "prior_fd")
    if s2 is not None and prior is not None:
        rows.append(
            ("stage-2 samples beat the stage-1 prior's (§4)", f"FD-shapes {s2:.3g} vs {prior:.3g}", _yes(s2 < prior))
        )
    lines = [
        "## The paper's claims, checked on these numbers",
        "",
        "Measured here, at this budget; a “no” is a finding about small, short runs, not a tuned-away number. "
        f"The FD-shapes floor ({floor['value']:.3g}) is the noise between two real sets; for samples far from "
        "the data the sampling noise is larger (not measured here), so a few percent between two FDs in the "
        "hundreds is not a difference.",
        "",
        "| claim (paper) | measured | holds here |",
        "|---|---|---|",
    ]
    lines += [f"| {c} | {m} | {verdict} |" for c, m, verdict in rows]
    return [*lines, ""]


def _report(plan: StudyPlan, floor: dict[str, Any], wall: float, out: Path, assets: Path) -> dict[str, Any]:
    from ul_engine.eval.metrics.features import load_shapes_classifier

    _, clf = load_shapes_classifier()
    rel = assets.name
    b = plan.budget
    rd = [r for r in plan.runs if r.group == "rd"]
    by_key = {r.key: r for r in plan.runs}
    base = by_key[_lf_key(plan.baseline_lf)]

    def bpp(r: StudyRun) -> float:
        return float(r.results["recon"]["bits_per_pixel"])

    def psnr(r: StudyRun) -> float:
        return float(r.results["recon"]["psnr"])

    series = [("UL, c_lf sweep", (31, 119, 180), [(bpp(r), psnr(r), f"c_lf {r.key[2:]}") for r in rd])]
    others = {  # ASCII names: PIL's default font has no λ or ·
        "normal": ("N(0,I) prior", (214, 39, 40)),
        "mse": ("MSE decoder", (44, 160, 44)),
        "lam10": ("lambda_z(0) = 10", (148, 103, 189)),
        "sg": ("prior stop-gradient", (255, 127, 14)),
        "lv": ("learned variance", (140, 86, 75)),
    }
    for key, (name, color) in others.items():
        if key in by_key:
            r = by_key[key]
            series.append((f"{name} (c_lf {plan.baseline_lf:g})", color, [(bpp(r), psnr(r), "")]))
    plot_points(
        series,
        assets / "rate-distortion.png",
        xlabel="bits per pixel (prior's bound)",
        ylabel="PSNR dB",
        title=f"Rate-distortion, {plan.preset}{' (quick)' if plan.quick else ''}: PSNR vs bits/pixel over c_lf",
    )
    budget = f"{b.steps} steps" if b.steps is not None else f"{b.minutes:g} minutes"
    s2_budget = f"{b.stage2_steps} steps" if b.stage2_steps is not None else f"{b.minutes:g} minutes"
    cmd = "ul study " + " ".join(shlex.quote(a) for a in plan.argv)
    train_total = sum(
        (r.results.get("train_seconds") or 0.0) + (r.results.get("stage2_train_seconds") or 0.0) for r in plan.runs
    )
    eval_total = sum(
        (r.results.get(k) or {}).get("eval_seconds", 0.0) for r in plan.runs for k in ("recon", "prior_fd", "stage2_fd")
    )
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Results",
        "",
        f"Written by `{cmd}` on {now}, {platform.machine()} CPU. This call took {wall / 60:.1f} minutes (wall "
        f"clock; runs and evaluations left by an earlier call are reused). From scratch: training "
        f"{train_total / 60:.1f} minutes, evaluation {eval_total / 60:.1f} minutes.",
        "",
        f"Budget: stage 1 {budget} per run, stage 2 {s2_budget}; {b.eval_n} validation images for PSNR/SSIM/bits "
        f"({b.decoder_steps} decoder steps); {b.fd_n} samples against {b.fd_n} validation images for FD-shapes "
        f"({b.base_steps} base-model steps, {b.decoder_steps} decoder steps, no guidance). Preset `{plan.preset}`"
        + (
            " with the quick grid's small networks (the smoke preset's sizes, `QUICK_MODEL` in eval/study.py)."
            if plan.quick
            else "."
        )
        + " These are small-scale mechanics checks, not the paper's numbers: short budgets, tiny networks, and "
        "FD-shapes instead of FID.",
        "",
        "## The FD-shapes feature network",
        "",
        "FD-shapes is the Fréchet distance between embeddings of a small CNN trained on the `shapes` generator's "
        "own labels (kind of the largest shape, number of shapes; the largest shape's centre, size and colour "
        "and the background colours regressed). It is not FID; FD-shapes numbers compare only with each other "
        "(same weights, same sample count). Real FID needs `--inception-weights PATH` (see `ul eval`).",
        "",
        f"- weights: `resources/metrics/{Path(clf['path']).name}` (sha256 `{clf['sha256'][:16]}…`, "
        f"{clf['train']['parameters']:,} parameters)",
        f"- trained by `{clf.get('command', '')}` (seed {clf['train']['seed']}, {clf['train']['steps']} steps × "
        f"{clf['train']['batch_size']} fresh images, {clf['train']['seconds']:.0f} s on {clf['train']['threads']} "
        "CPU thread)",
        f"- held-out accuracy on {clf['heldout']['n']} images of a disjoint seed stream: kind of the largest "
        f"shape **{clf['heldout']['kind_accuracy']:.2%}**, number of shapes **{clf['heldout']['count_accuracy']:.2%}** "
        "(a small shape can hide under the largest, which is drawn last); centre error "
        f"{clf['heldout']['center_mae_px']:.2f} px, colour error {clf['heldout']['color_mae_rgb']:.1f}/255",
        f"- floor: FD-shapes between two disjoint sets of {b.fd_n} real images = **{floor['value']:.3g}** "
        f"(KID {floor['kid']:.2g}); a model cannot score below sampling noise.",
        "",
        "## Rate–distortion over the loss factor (Table 2 at small scale)",
        "",
        "| c_lf | bits/pixel | bits/latent dim | PSNR (dB) | SSIM | steps | train time |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rd:
        rec = r.results["recon"]
        t = r.results["train_seconds"]
        lines.append(
            f"| {r.key[2:]} | {_fmt(rec['bits_per_pixel'])} | {_fmt(rec['bits_per_dim'])} | {rec['psnr']:.2f} | "
            f"{_fmt(rec['ssim'])} | {r.results['steps']} | {'–' if t is None else f'{t:.0f} s'} |"
        )
    lines += [
        "",
        "Bits are the prior's bound E[L_z]/ln 2 (reference §3.5), Monte-Carlo over 16 stratified t per image, "
        "per image pixel (H·W) and per latent dimension. Paper (ImageNet-512, Table 2): 0.035 → 0.116 "
        "bits/pixel and 25.7 → 30.1 dB for c_lf 1.3 → 2.1.",
        "",
        f"![rate–distortion]({rel}/rate-distortion.png)",
        "",
        "Reconstructions (top: validation images, bottom: decoded from z0):",
        "",
    ]
    for r in rd:
        lines.append(f"- c_lf = {r.key[2:]}: ![recon]({rel}/recon-{r.key}.png)")
    lines += [
        "",
        f"## Autoencoder ablations (Table 5), c_lf = {plan.baseline_lf:g}",
        "",
        "| prior | decoder loss | bits/pixel (prior) | bits/pixel (stage-2 ELBO) | PSNR (dB) | FD-shapes (stage 2) "
        "| KID |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for key, prior, dec in (
        (base.key, "diffusion", "diffusion"),
        ("mse", "diffusion", "MSE"),
        ("normal", "N(0, I)", "diffusion"),
    ):
        if key not in by_key:
            continue
        r = by_key[key]
        fd = r.results.get("stage2_fd") or {}
        lines.append(
            f"| {prior} | {dec} | {_fmt(bpp(r))} | {_fmt(r.results.get('base_bits_per_pixel'))} | {psnr(r):.2f} | "
            f"{_fmt(fd.get('value'))} | {_fmt(fd.get('kid'), 2)} |"
        )
    lines += [
        "",
        "Paper (ImageNet-512): bpd 0.079 / 0.072 / 0.39 (prior) and gFID 1.4 / 2.4 / 2.5 for UL / MSE decoder / "
        "normal prior. The N(0, I) prior's bits are its exact KL on z0, which costs ≈ ½·(σ0² − 1 − log σ0²) ≈ 2 "
        "nats per latent dimension even for an empty dimension. The MSE decoder is the same net read "
        "deterministically at x_t = 0 (docs/architecture.md, Ablations).",
        "",
        "## Component ablations (Table 6)",
        "",
        "| variant | bits/pixel | PSNR (dB) | SSIM | FD-shapes (stage 2) |",
        "|---|---:|---:|---:|---:|",
    ]
    for key in (base.key, "sg", "lam10", "lv"):
        if key not in by_key:
            continue
        r = by_key[key]
        fd = r.results.get("stage2_fd") or {}
        label = f"UL baseline (c_lf = {plan.baseline_lf:g})" if key == base.key else r.label
        lines.append(
            f"| {label} | {_fmt(bpp(r))} | {psnr(r):.2f} | {_fmt(r.results['recon']['ssim'])} | "
            f"{_fmt(fd.get('value'))} |"
        )
    lines += [
        "",
        "Paper (Table 6): stop-gradient + discounted KL 0.121 bits/pixel (rFID 1.81); λ_z(0) = 10: 0.008 "
        "bits/pixel, rFID 28.3 (the prior cannot measure the rate, information moves to the decoder); "
        "learned variance 0.060 (gFID 1.81 vs 1.54). For the stop-gradient row the bits are the (detached) "
        "prior's estimate; the encoder is regularised by "
        f"{STOP_GRADIENT_KL_WEIGHT:g}·KL[q(z0|x) ‖ N(0, I)] (the paper's discount is not given).",
        "",
        "## Stage 2 vs samples from the stage-1 prior (§4)",
        "",
        "| samples | FD-shapes | KID | kind histogram (circle, square, triangle, diamond) |",
        "|---|---:|---:|---|",
        f"| real images (second set; the floor) | {_fmt(floor['value'])} | {_fmt(floor['kid'], 2)} | "
        f"{floor['kind_histogram_fake']} |",
    ]
    for label, fd in (
        (f"stage-1 prior (unweighted ELBO), c_lf = {plan.baseline_lf:g}", base.results.get("prior_fd")),
        (f"stage-2 base model (sigmoid weighting), c_lf = {plan.baseline_lf:g}", base.results.get("stage2_fd")),
    ):
        if fd:
            lines.append(f"| {label} | {_fmt(fd['value'])} | {_fmt(fd['kid'], 2)} | {fd['kind_histogram_fake']} |")
    lines += [
        "",
        f"Real kind histogram: {floor['kind_histogram_real']}. Both sample sets go through the same decoder; only "
        "the model of z0 differs (the prior was trained jointly with the unweighted ELBO, the base model "
        "afterwards on frozen latents with the sigmoid weighting).",
        "",
        f"Real: ![real]({rel}/real.png)",
        "",
        f"Stage-1 prior: ![prior samples]({rel}/samples-{base.key}-prior.png)",
        "",
        f"Stage 2: ![stage-2 samples]({rel}/samples-{base.key}-s2.png)",
        "",
    ]
    for key in ("normal", "mse", "sg"):
        r = by_key.get(key)
        if r is not None and r.stage2:
            lines.append(f"Stage 2 on the {r.label} autoencoder: ![samples]({rel}/samples-{key}-s2.png)")
            lines.append("")
    lines += _checks(plan, by_key, base, floor)
    lines += ["## Commands", "", "The whole study:", "", "```", cmd, "```", ""]
    lines += ["Each run on its own (what the study does, run by run; bash):", "", "```bash"]
    if plan.common:
        lines.append("COMMON=(" + " ".join(f"--set {shlex.quote(o)}" for o in plan.common) + ")")
    for r in plan.runs:
        lines += _commands(plan, r, '"${COMMON[@]}"' if plan.common else "")
    lines += ["```", ""]
    text = "\n".join(lines)
    from ul_engine.core.io import atomic_write_bytes

    atomic_write_bytes(out, lambda f: f.write(text.encode()))
    data = {
        "command": cmd,
        "written": now,
        "wall_seconds": round(wall, 1),
        "preset": plan.preset,
        "quick": plan.quick,
        "budget": asdict(plan.budget),
        "baseline_lf": plan.baseline_lf,
        "common_overrides": plan.common,
        "fd_floor": floor,
        "classifier": {k: clf[k] for k in ("sha256", "heldout", "train")},
        "runs": [
            {"key": r.key, "name": r.name, "label": r.label, "group": r.group, "overrides": r.overrides, **r.results}
            for r in plan.runs
        ],
    }
    from ul_engine.core.io import write_json

    write_json(assets / "study.json", data)
    return {"out": str(out), "assets": str(assets), **data}
