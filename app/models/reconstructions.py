"""What the Reconstruct page does with image jobs that needs no Qt: walking folders in batches, checking an
input, decoding it for showing at once, the two images a comparison shows, the metrics text, and the export.

Each function runs where the page puts it: the walk, the check, the decode and the export on a background
thread (`app.workers.background`), the texts on the GUI thread.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from app.models.jobs import DONE, ERROR, RUNNING, ImageJob
from ul_engine.core.imaging import save_png
from ul_engine.core.media import load_image_rgb, probe_image
from ul_engine.core.reconstruction import csv_row, entry_strip, file_sha256, iter_inputs, write_metrics_csv

SCAN_BATCH = 200
SCAN_REPORT_S = 0.2  # a slow disk still shows files as they are found

PAIRS = (
    ("input-a", "Input ↔ reconstruction"),
    ("input-b", "Input ↔ B's reconstruction"),
    ("a-b", "Reconstruction A ↔ B"),
    ("input-mean", "Input ↔ mean of K decodes"),
)
B_PAIRS = ("input-b", "a-b")  # offered only when a model B is chosen


def scan_folder(folder: str, report: Callable[[list[str]], None], cancelled: Callable[[], bool]) -> int:
    """Walk `folder` for image files, reporting them in batches; returns how many were found."""
    batch: list[str] = []
    count = 0
    last = time.monotonic()
    for path in iter_inputs([folder], cancelled=cancelled):
        batch.append(str(path))
        count += 1
        if len(batch) >= SCAN_BATCH or time.monotonic() - last > SCAN_REPORT_S:
            report(batch)
            batch, last = [], time.monotonic()
    if batch and not cancelled():
        report(batch)
    return count


def check_input(path: str) -> str:
    """The header probe (the reader's own refusals: empty, not an image, a decompression bomb) and the
    sha256 of the file's bytes, which keys the reconstruction cache."""
    probe_image(path)
    return file_sha256(path)


def decode_input(path: str) -> np.ndarray:
    """The input as the engine reads it (orientation, 16-bit, CMYK, alpha handled): RGB uint8."""
    return load_image_rgb(path).array


def read_rgb(path: str) -> np.ndarray:
    """A PNG the engine wrote (input copy, reconstruction, mean)."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def has_result(job: ImageJob | None) -> bool:
    return job is not None and job.state in (DONE, RUNNING) and bool(job.entry and job.entry.get("ok"))


def pair_images(job: ImageJob, key: str) -> tuple[np.ndarray, str, np.ndarray, str]:
    """The two images (and their titles) that the comparison `key` (one of PAIRS) shows for a job."""
    entry, compare = job.entry or {}, job.compare or {}
    files = entry.get("files") or {}
    b_files = compare.get("files") or {} if compare.get("ok") else {}
    a_title = f"A: {entry.get('run_name', 'A')} @ step {entry.get('checkpoint_step')}"
    b_title = f"B: {compare.get('run_name', 'B')} @ step {compare.get('checkpoint_step')}"
    if key == "input-b" and b_files:
        return read_rgb(files["input"]), "Input", read_rgb(b_files["reconstruction"]), b_title
    if key == "a-b" and b_files:
        return read_rgb(files["reconstruction"]), a_title, read_rgb(b_files["reconstruction"]), b_title
    if key == "input-mean" and files.get("mean"):
        k = (entry.get("params") or {}).get("samples")
        return read_rgb(files["input"]), "Input", read_rgb(files["mean"]), f"Mean of {k} decodes"
    return read_rgb(files["input"]), "Input", read_rgb(files["reconstruction"]), f"Reconstruction ({a_title})"


def short_title(title: str) -> str:
    """The part of a view title before its details: "A: run @ step 20" → "A"."""
    return title.split(":")[0].split(" (")[0]


METRIC_ROWS = (
    ("PSNR", "psnr", "{:.2f} dB"),
    ("SSIM", "ssim", "{:.4f}"),
    ("bits / pixel", "bits_per_pixel", "{:.4f}"),
    ("bits / latent dim", "bits_per_dim", "{:.3f}"),
    ("latent bits", "bits", "{:,.0f}"),
    ("decode", "decode_seconds", "{:.2f} s"),
    ("PSNR of mean", "psnr_mean", "{:.2f} dB"),
    ("mean std", "std_mean", "{:.2f} levels"),
)
OPTIONAL_METRICS = ("psnr_mean", "std_mean")  # only with K ≥ 2


def _metric_block(entry: dict[str, Any], label: str) -> list[str]:
    rows = [f"<tr><td colspan='2'><b>{label}</b> {esc(entry.get('run_name', ''))} "
            f"@ {entry.get('checkpoint_step')}</td></tr>"]  # fmt: skip
    if not entry.get("ok"):
        return [*rows, f"<tr><td colspan='2' style='color:#d32f2f'>{esc(entry.get('error') or '')}</td></tr>"]
    m = entry.get("metrics") or {}
    for name, key, fmt in METRIC_ROWS:
        value = m.get(key)
        if value is None and key in OPTIONAL_METRICS:
            continue
        rows.append(f"<tr><td>{name}</td><td align='right'>{'–' if value is None else fmt.format(value)}</td></tr>")
    return rows


def metrics_html(job: ImageJob | None) -> str:
    """The metrics panel's text for a job: its metrics (A and B), size and settings, notices and error."""
    if job is None:
        return "<p><i>Select an image to see its metrics.</i></p>"
    head = f"<b>{esc(job.name)}</b>"
    if job.state == ERROR and not (job.entry and job.entry.get("ok")):
        return head + f"<p style='color:#d32f2f'>{esc(job.message())}</p>"
    if job.state not in (DONE, RUNNING) or not job.entry:
        return head + f"<p>{esc(job.status_text())}</p>"
    table = ["<table cellspacing='0' cellpadding='2'>", *_metric_block(job.entry, "A")]
    if job.compare is not None:
        table += _metric_block(job.compare, "B")
    table.append("</table>")
    e = job.entry
    p = e.get("params") or {}
    size = f"{e.get('width')}×{e.get('height')}"
    if (e.get("source_width"), e.get("source_height")) != (e.get("width"), e.get("height")):
        size += f" (from {e.get('source_width')}×{e.get('source_height')})"
    info = (f"<p>{size} px · {p.get('decoder_steps')} steps {p.get('sampler')} · seed {p.get('seed')}"
            f" · K = {p.get('samples')}{' · <i>cached</i>' if job.cached else ''}</p>")  # fmt: skip
    notices = "".join(f"<li>{esc(n)}</li>" for n in job.notices)
    extra = f"<p style='color:#d32f2f'>{esc(job.error)}</p>" if job.error else ""
    return head + info + "".join(table) + (f"<p>Notices:</p><ul>{notices}</ul>" if notices else "") + extra


def export_jobs(folder: Path, jobs: Iterable[ImageJob]) -> tuple[int, list[str]]:
    """Write each finished image's reconstruction(s), its comparison strip and metrics.csv to `folder`;
    returns (images written, problems)."""
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    written = 0
    stems: dict[str, int] = {}
    folder.mkdir(parents=True, exist_ok=True)
    for job in jobs:
        if job.entry is None:
            if job.error:
                rows.append(csv_row({"input": job.path, "error": job.error}))
            continue
        entry, compare = job.entry, job.compare
        rows.append(csv_row(entry, "A"))
        if compare is not None:
            rows.append(csv_row(compare, "B"))
        if not entry.get("ok"):
            continue
        stem = Path(job.path).stem
        stems[stem] = stems.get(stem, 0) + 1
        if stems[stem] > 1:
            stem = f"{stem}-{stems[stem]}"
        try:
            _export_one(folder, stem, entry, compare)
            written += 1
        except (OSError, KeyError, ValueError) as exc:
            problems.append(f"{job.path}: {exc}")
    try:
        write_metrics_csv(folder / "metrics.csv", rows)
    except OSError as exc:
        problems.append(f"metrics.csv: {exc}")
    return written, problems


def _export_one(folder: Path, stem: str, entry: dict[str, Any], compare: dict[str, Any] | None) -> None:
    files = entry["files"]
    shutil.copyfile(files["reconstruction"], folder / f"{stem}.recon.png")
    if files.get("mean"):
        shutil.copyfile(files["mean"], folder / f"{stem}.mean.png")
        shutil.copyfile(files["std_png"], folder / f"{stem}.std.png")
    if compare is not None and compare.get("ok"):
        shutil.copyfile(compare["files"]["reconstruction"], folder / f"{stem}.recon-B.png")
    save_png(folder / f"{stem}.compare.png", entry_strip(entry, compare))


def esc(text: Any) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
