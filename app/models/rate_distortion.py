"""The Rate–distortion page's data, without Qt: each checkpoint's tooltip and table cells, what the page says when
there is nothing to plot or while evaluations run, one colour per run, and the run's validation images (cut from
its newest preview grid) that a click opens in Reconstruct.

The points themselves come from `ul_engine.core.rate_distortion.collect`; the page draws them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

from ul_engine.core.rate_distortion import RDPoint
from ul_engine.store import RunInfo, Store

COLUMNS = ("Run", "Step", "Loss factor", "Bits/pixel", "PSNR dB", "SSIM", "Measured on")
EMPTY_NO_CHECKPOINTS = (
    "<h3>No checkpoints yet</h3><p>This page plots each checkpoint of your stage-1 runs at its rate (bits per "
    "pixel the latent costs, x) and its reconstruction quality (PSNR in dB, y): up and to the left is better. "
    "Train a stage-1 run on the Runs page; its checkpoints appear in the table below, ready to evaluate.</p>"
)
EMPTY_NOT_EVALUATED = (
    "<h3>Nothing evaluated yet</h3><p>{n} checkpoint{s} in the table below can be evaluated: select some and "
    "press <b>Evaluate selected</b>, or press <b>Evaluate missing</b>. Each becomes a point at its rate (bits "
    "per pixel, x) and reconstruction quality (PSNR in dB, y).</p>"
)
PREVIEW_PAD = 2  # ul_engine.core.imaging.grid's padding between tiles


def point_tip(p: RDPoint) -> str:
    """The tooltip of a point (and of its table row)."""
    lf = "?" if p.loss_factor is None else f"{p.loss_factor:g}"
    lines = [f"{p.run_name} · step {p.step:,}", f"loss factor c_lf = {lf}"]
    if p.evaluated:
        assert p.psnr is not None and p.bits_per_pixel is not None
        lines.append(f"{p.bits_per_pixel:.4g} bits/pixel · PSNR {p.psnr:.2f} dB")
        if p.ssim is not None and math.isfinite(p.ssim):
            lines.append(f"SSIM {p.ssim:.4f}")
        if p.n is not None:
            steps = f", {p.decoder_steps} decoder steps" if p.decoder_steps else ""
            lines.append(f"measured on {p.n} validation images{steps}")
        lines.append("click: open its reconstructions")
    else:
        lines.append("not evaluated yet")
    return "\n".join(lines)


def preview_inputs(store: Store, run: RunInfo) -> list[str]:
    """The run's fixed validation images, cut from the input row of its newest preview grid (PNG files).

    A stage-1 preview is the grid of `count` validation inputs over their reconstructions, scaled up by a
    whole factor (ul_engine.train.runner.write_preview); the crops are written once to previews/inputs/.
    """
    previews = [a for a in store.list_artifacts(run.id, kind="preview") if a.path.is_file()]
    res = int(((run.config or {}).get("data") or {}).get("resolution") or 0)
    if not previews or res < 1:
        return []
    newest = previews[-1]
    count = int((newest.params or {}).get("count") or 0)
    out_dir = newest.path.parent / "inputs"
    wanted = [out_dir / f"validation-{k:02d}.png" for k in range(count)]
    if count and all(p.is_file() for p in wanted):
        return [str(p) for p in wanted]
    try:
        with Image.open(newest.path) as img:
            grid = np.asarray(img.convert("RGB"))
    except OSError:
        return []
    tile = res + PREVIEW_PAD
    height, width = grid.shape[:2]
    if count < 1 or height % (2 * tile - PREVIEW_PAD):
        return []
    scale = height // (2 * tile - PREVIEW_PAD)
    if width != scale * (count * tile - PREVIEW_PAD):
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    for k, path in enumerate(wanted):
        x0 = k * tile * scale
        crop = grid[0 : res * scale : scale, x0 : x0 + res * scale : scale]
        Image.fromarray(np.ascontiguousarray(crop)).save(path)
    return [str(p) for p in wanted]


def table_cells(p: RDPoint) -> tuple[str, ...]:
    """One row of the table, in COLUMNS order."""
    measured = f"{p.n} images" + (f", {p.decoder_steps} steps" if p.decoder_steps else "") if p.n else ""
    return (
        p.run_name,
        f"{p.step:,}",
        "" if p.loss_factor is None else f"{p.loss_factor:g}",
        "" if p.bits_per_pixel is None else f"{p.bits_per_pixel:.4g}",
        "not evaluated" if p.psnr is None else f"{p.psnr:.2f}",
        "" if p.ssim is None or not math.isfinite(p.ssim) else f"{p.ssim:.4f}",
        measured,
    )


def run_colors(points: Sequence[RDPoint], palette: Sequence[str]) -> dict[int, str]:
    """One colour per run, in the order runs were created (stable while runs are added)."""
    run_ids = sorted({p.run_id for p in points})
    return {rid: palette[i % len(palette)] for i, rid in enumerate(run_ids)}


def plotted(points: Sequence[RDPoint], *, log_x: bool) -> list[tuple[float, float, RDPoint]]:
    """(x, y, point) of every evaluated point; a log axis leaves out rates of 0 (the table still lists them)."""
    out = []
    for p in points:
        if not p.evaluated:
            continue
        bpp = float(p.bits_per_pixel or 0.0)
        if log_x and bpp <= 0.0:
            continue
        out.append((math.log10(bpp) if log_x else bpp, float(p.psnr or 0.0), p))
    return out


def legend_name(p: RDPoint) -> str:
    lf = f" (c_lf {p.loss_factor:g})" if p.loss_factor is not None else ""
    return f"{p.run_name}{lf}"


def empty_text(points: Sequence[RDPoint]) -> str:
    """A sentence instead of an empty 0–1 plot: what the plot will show and how to get there."""
    if not points:
        return EMPTY_NO_CHECKPOINTS
    if any(p.evaluated for p in points):  # all points are off a log axis
        return "No point has bits/pixel above 0, so none can be drawn on a log axis: untick Log x."
    return EMPTY_NOT_EVALUATED.format(n=len(points), s="s" if len(points) != 1 else "")


def status_text(points: Sequence[RDPoint]) -> str:
    done = sum(1 for p in points if p.evaluated)
    if not points:
        return "No checkpoints yet: train a stage-1 run; each checkpoint can then be evaluated here."
    text = f"{done} of {len(points)} checkpoints evaluated"
    missing = len(points) - done
    if missing:
        text += f"; {missing} without a result (Evaluate runs `ul eval` on them)"
    return text


def training_note(names: Sequence[str]) -> str:
    """What Evaluate missing says about runs still training: their later checkpoints are still to come."""
    if not names:
        return ""
    return (f"{', '.join(names)} {'is' if len(names) == 1 else 'are'} still training: its checkpoints so far "
            "are evaluated; press Evaluate missing again for the ones still to come")  # fmt: skip


def run_name(points: Sequence[RDPoint], run_id: int) -> str:
    return next((p.run_name for p in points if p.run_id == run_id), f"run {run_id}")
