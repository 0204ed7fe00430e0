"""`ul metrics`: a run's stored series out to CSV, JSON lines or a TensorBoard event folder.

One row per logged point: key, step, wall_time (unix seconds), value. A non-finite value (a NaN step the
loop recorded) is an empty CSV cell and a JSON null, never "nan". CSV and JSONL are torch-free (the app
writes them in-process); TensorBoard events are written with torch.utils.tensorboard, each point with its
own step and wall time, into an event folder that `tensorboard --logdir` opens.
"""

from __future__ import annotations

import csv
import fnmatch
import io as _io
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ul_engine.core import io
from ul_engine.core.errors import ULError

FORMATS = ("csv", "jsonl", "tensorboard")
FIELDS = ("key", "step", "wall_time", "value")
Progress = Callable[[int, int], None]


def select_keys(store: Any, run_id: int, pattern: str | None) -> list[str]:
    """The run's metric names matching a shell-style glob (`loss/*`, `rate/bits_*`); all when no pattern."""
    keys = store.metric_keys(run_id)
    if pattern:
        keys = [k for k in keys if fnmatch.fnmatchcase(k, pattern)]
    return keys


def iter_points(store: Any, run_id: int, keys: list[str]) -> Iterator[tuple[str, int, float, float | None]]:
    """(key, step, wall_time, value or None) in key order, then step order; raw (undecimated) reads."""
    for key in keys:
        series = store.read_metric(run_id, key)
        for step, wall, value in zip(series.steps.tolist(), series.wall_times.tolist(), series.values.tolist(),
                                     strict=True):  # fmt: skip
            yield key, int(step), float(wall), value if math.isfinite(value) else None


def export_metrics(
    store: Any,
    run_ref: int | str,
    fmt: str,
    out: str | Path,
    *,
    keys: str | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Write the run's series matching `keys` to `out`; returns what `ul metrics --json` prints."""
    if fmt not in FORMATS:
        raise ULError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    run = store.get_run(run_ref)
    selected = select_keys(store, run.id, keys)
    if not selected:
        known = ", ".join(store.metric_keys(run.id)[:8]) or "none yet"
        raise ULError(f"run {run.name} has no metric matching {keys or '*'} (its metrics: {known})")
    out = Path(out).expanduser()
    writer = {"csv": write_csv, "jsonl": write_jsonl, "tensorboard": write_tensorboard}[fmt]
    points = writer(iter_points(store, run.id, selected), out, len(selected), progress)
    return {"run": run.id, "name": run.name, "format": fmt, "out": str(out), "keys": selected, "points": points}


def _counting(points: Iterator[tuple[str, int, float, float | None]], n_keys: int, progress: Progress | None):
    """Pass points through, reporting keys done as each key ends."""
    last, done = None, 0
    for p in points:
        if p[0] != last:
            if last is not None:
                done += 1
                if progress is not None:
                    progress(done, n_keys)
            last = p[0]
        yield p
    if progress is not None:
        progress(n_keys, n_keys)


def write_csv(points: Iterator[Any], out: Path, n_keys: int = 0, progress: Progress | None = None) -> int:
    if out.is_dir():
        raise ULError(f"--out {out} is a folder; give a .csv file")
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(FIELDS)
    count = 0
    for key, step, wall, value in _counting(points, n_keys, progress):
        w.writerow([key, step, repr(wall), "" if value is None else repr(value)])
        count += 1
    blob = buf.getvalue().encode()
    io.atomic_write_bytes(out, lambda f: f.write(blob))
    return count


def write_jsonl(points: Iterator[Any], out: Path, n_keys: int = 0, progress: Progress | None = None) -> int:
    if out.is_dir():
        raise ULError(f"--out {out} is a folder; give a .jsonl file")
    lines = [
        json.dumps({"key": k, "step": s, "wall_time": t, "value": v}, allow_nan=False)
        for k, s, t, v in _counting(points, n_keys, progress)
    ]
    blob = ("\n".join(lines) + ("\n" if lines else "")).encode()
    io.atomic_write_bytes(out, lambda f: f.write(blob))
    return len(lines)


def write_tensorboard(points: Iterator[Any], out: Path, n_keys: int = 0, progress: Progress | None = None) -> int:
    """One event file in the folder `out` (created; event files already there are replaced). NaN points stay
    NaN in the events (TensorBoard leaves them out of the plot)."""
    if out.exists() and not out.is_dir():
        raise ULError(f"--out {out} is a file; TensorBoard needs a folder")
    SummaryWriter = tensorboard_writer_class()
    out.mkdir(parents=True, exist_ok=True)
    earlier = set(out.glob("events.out.tfevents.*"))
    writer = SummaryWriter(log_dir=str(out))
    count = 0
    try:
        for key, step, wall, value in _counting(points, n_keys, progress):
            writer.add_scalar(key, float("nan") if value is None else value, global_step=step, walltime=wall)
            count += 1
    finally:
        writer.close()
    for old in earlier:  # an export replaces the folder's events; TensorBoard would show both copies otherwise
        old.unlink(missing_ok=True)
    return count


def tensorboard_writer_class() -> Any:
    """torch.utils.tensorboard.SummaryWriter, or a one-line error naming the extra to install."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # why: an optional extra, asked for only here
    except ImportError:
        raise ULError(
            "TensorBoard output needs the tensorboard package: pip install 'ul-studio[tensorboard]'"
        ) from None
    return SummaryWriter


class TensorBoardMirror:
    """`train.log_to = ["tensorboard"]`: what the trainer logs, also written live as TensorBoard events.

    The writer opens with the first logged step as `purge_step`, so after a resume TensorBoard drops the
    events of steps that the run abandoned (the store truncates the same steps)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.writer_class = tensorboard_writer_class()  # fails before training, not at the first flush
        self.writer: Any = None

    def write(self, rows: list[tuple[int, float, dict[str, float]]]) -> None:
        if not rows:
            return
        if self.writer is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.writer = self.writer_class(log_dir=str(self.folder), purge_step=rows[0][0])
        for step, wall, values in rows:
            for key, value in values.items():
                self.writer.add_scalar(key, value, global_step=step, walltime=wall)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
