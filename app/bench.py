"""`python -m app.bench`: the app's two speed goals, as JSON.

- launch_to_shown_s: from process start to the main window's first show, for `python -m app --home TMP`
  (a fresh process each time; the app prints the time and quits when UL_STUDIO_BENCH_LAUNCH=1). Goal < 2 s.
- monitor redraw with 4 curves × 1 000 000 points (offscreen, 1280×800 window): the series handed to the
  curves again and the window painted (`grab`); a live redraw (100 new points appended to every series first,
  as while a run trains: the smoothing, the min/max levels and the visible points are brought up to date);
  and a zoom (new x range) painted. Goal < 50 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph
from PySide6 import __version__ as pyside_version
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication

from app.context import AppContext
from app.main_window import MainWindow
from app.settings import Settings


def launch_times(repeats: int) -> list[float]:
    times = []
    with tempfile.TemporaryDirectory(prefix="ul-bench-launch-") as home:
        env = {**os.environ, "UL_STUDIO_BENCH_LAUNCH": "1"}
        env.setdefault("QT_QPA_PLATFORM", "offscreen")
        for _ in range(repeats):
            out = subprocess.run(
                [sys.executable, "-m", "app", "--home", home],
                capture_output=True, text=True, timeout=120, env=env,
            )  # fmt: skip
            if out.returncode != 0:
                raise RuntimeError(f"the app did not start: {out.stderr.strip()[-500:]}")
            line = [ln for ln in out.stdout.splitlines() if ln.startswith("{")][-1]
            times.append(float(json.loads(line)["launch_to_shown_s"]))
    return times


def monitor_redraw(points: int, curves: int, repeats: int) -> dict[str, Any]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # read when the QApplication is made
    qapp = QApplication.instance() or QApplication(sys.argv[:1])

    with tempfile.TemporaryDirectory(prefix="ul-bench-monitor-") as home:
        settings = Settings(QSettings(str(Path(home) / "s.ini"), QSettings.Format.IniFormat))
        ctx = AppContext(Path(home) / "home", settings, start_session=False)
        window = MainWindow(ctx, restore=False)
        window.resize(1280, 800)
        window.show()
        monitor = window.page("monitor")
        window.show_page("monitor")
        rng = np.random.default_rng(0)
        steps = np.arange(1, points + 1, dtype=np.float64)
        keys = ["loss/total", "loss/decoder", "rate/bits_per_pixel", "optim/grad_norm"][:curves]
        monitor.run_id = 1
        monitor.metrics.watched = [1]
        for key in keys:
            monitor.metrics.put(1, key, steps, np.cumsum(rng.standard_normal(points)) + 1e4, steps)
        qapp.processEvents()

        def full_redraw() -> float:
            monitor._dirty.update((1, k) for k in keys)
            t = time.perf_counter()
            monitor.flush()
            window.grab()
            return 1000 * (time.perf_counter() - t)

        def live_redraw(i: int) -> float:
            t = time.perf_counter()
            for key in keys:
                buf = monitor.metrics.get(1, key)
                new = buf.steps[-1] + np.arange(1, 101, dtype=np.float64)
                buf.append(new, buf.values[-1] + np.cumsum(rng.standard_normal(100)), new)
                monitor._dirty.add((1, key))
            monitor.flush()
            window.grab()
            return 1000 * (time.perf_counter() - t)

        def zoom_redraw(i: int) -> float:
            lo, hi = points * (i % 5) / 10, points * (1 - (i % 3) / 10)
            t = time.perf_counter()
            for panel in monitor.panels.values():
                panel.item.setXRange(lo, hi, padding=0)
            window.grab()
            return 1000 * (time.perf_counter() - t)

        result: dict[str, Any] = {}
        for label, weight in (("raw", 0), ("smoothed", 60)):
            monitor.options.smoothing.setValue(weight)
            t = time.perf_counter()
            monitor._relayout_panels()
            monitor.flush()
            window.grab()
            first = 1000 * (time.perf_counter() - t)
            full = [full_redraw() for _ in range(repeats)]
            live = [live_redraw(i) for i in range(repeats)]
            for panel in monitor.panels.values():
                panel.item.enableAutoRange()
            zoom = [zoom_redraw(i) for i in range(repeats)]
            for panel in monitor.panels.values():
                panel.item.enableAutoRange()
            result[label] = {
                "first_draw_ms": round(first, 1),
                "redraw_ms_median": round(statistics.median(full), 1),
                "redraw_ms_max": round(max(full), 1),
                "live_ms_median": round(statistics.median(live), 1),
                "live_ms_max": round(max(live), 1),
                "zoom_ms_median": round(statistics.median(zoom), 1),
                "zoom_ms_max": round(max(zoom), 1),
            }
        window._close_ready = True
        window.close()
        ctx.shutdown()
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m app.bench")
    p.add_argument("--launches", type=int, default=5)
    p.add_argument("--points", type=int, default=1_000_000)
    p.add_argument("--curves", type=int, default=4)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--json-line", action="store_true", help="one compact JSON line (for `ul bench --app`)")
    args = p.parse_args(argv)
    launches = launch_times(args.launches)
    redraw = monitor_redraw(args.points, args.curves, args.repeats)

    out = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, PySide6 {pyside_version}, pyqtgraph {pyqtgraph.__version__}",
        "platform": os.environ.get("QT_QPA_PLATFORM", "offscreen"),
        "launch_to_shown_s": {
            "median": round(statistics.median(launches), 3),
            "min": round(min(launches), 3),
            "max": round(max(launches), 3),
            "runs": [round(t, 3) for t in launches],
        },
        "monitor": {"curves": args.curves, "points_per_curve": args.points, **redraw},
    }
    print(json.dumps(out) if args.json_line else json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
