"""`ul bench --app`: the figures a user feels in the app, next to the training figures.

- the app's cold start (process start → main window shown) and the Monitor's redraw of 4 × N points, measured by
  `python -m app.bench` in a child process: the engine never imports Qt, and a cold start needs a fresh process
  anyway;
- the store's metric read speed: a series of N points written to a temporary SQLite store, then read back
  decimated to a plot's width (whole run and a 10 % zoom) and raw, as the Monitor and the exports do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

APP_BENCH_TIMEOUT_S = 600


def app_figures(points: int, launches: int = 3, repeats: int = 5) -> dict[str, Any]:
    """Cold start and Monitor redraw from `python -m app.bench`, or why they could not be measured."""
    env = {**os.environ}
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    cmd = [
        sys.executable, "-m", "app.bench", "--json-line",
        "--launches", str(launches), "--points", str(points), "--repeats", str(repeats),
    ]  # fmt: skip
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=APP_BENCH_TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        return {"available": False, "reason": f"the app bench took over {APP_BENCH_TIMEOUT_S} s"}
    if out.returncode != 0:
        tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return {"available": False, "reason": f"the app bench failed: {tail}"}
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("{")][-1]
    return {"available": True, "platform": env["QT_QPA_PLATFORM"], **json.loads(line)}


def metric_read_figures(points: int, max_points: int = 1500, repeats: int = 10) -> dict[str, Any]:
    """Write one `points`-long series to a fresh store, then time the Monitor's and the export's reads."""
    from ul_engine.store import Store  # lazy: SQLAlchemy (`ul` imports this module for every command)
    from ul_engine.store.bench import fill, read_benchmark  # lazy: SQLAlchemy

    with tempfile.TemporaryDirectory(prefix="ul-bench-read-") as tmp:
        store = Store.open(Path(tmp))
        try:
            run = store.create_run(name=None, stage=1, preset="bench-read", config={"points": points})
            fill_s = fill(store, run.id, "loss", points, batch=min(50_000, points))
            reads = read_benchmark(store, run.id, "loss", max_points, repeats)
        finally:
            store.close()
    return {"points": points, "max_points": max_points, "fill_rows_per_s": round(points / fill_s), **reads}


def describe(result: dict[str, Any]) -> list[str]:
    """Human lines for `ul bench` without --json."""
    lines = []
    app = result.get("app", {})
    if app.get("available"):
        start, mon = app["launch_to_shown_s"], app["monitor"]
        lines.append(f"app cold start: {start['median']:.2f} s median (max {start['max']:.2f} s, goal < 2 s)")
        lines.append(
            f"monitor redraw, {mon['curves']} × {mon['points_per_curve']:,} points: "
            f"{mon['raw']['redraw_ms_median']:.1f} ms median raw, "
            f"{mon['smoothed']['redraw_ms_median']:.1f} ms smoothed (goal < 50 ms)"
        )
    elif app:
        lines.append(f"app: not measured ({app['reason']})")
    read = result.get("metric_read")
    if read:
        lines.append(
            f"metric read, {read['points']:,} points → {read['max_points']} px: "
            f"{read['decimated_full_ms']['median']:.1f} ms median; raw {read['raw_read_ms']:.0f} ms"
        )
    return lines
