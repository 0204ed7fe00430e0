"""Benchmark of the Reconstruct page: time from a drop to the reconstruction shown, for one image, through the
real session worker, and how it scales with the decoder steps.

    .venv/bin/python -m tools.bench_reconstruct --home /tmp/ul-bench --prepare --image photo-256.png

`--prepare` trains the models it times (weights do not change the timing): `smoke` (20 steps) and
`shapes-32` (2 steps). Each timing is a cache miss (a fresh seed); "cached" drops the same file again.
"Shown" means the row is done and the page has repainted with the images and the metrics.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

RUNS = (("smoke", ["--steps", "20"]), ("shapes-32", ["--steps", "2"]))


def prepare(home: Path) -> None:
    for preset, extra in RUNS:
        cmd = [sys.executable, "-m", "ul_engine.cli", "--home", str(home), "train", "--preset", preset,
               "--name", f"bench-{preset}", *extra]  # fmt: skip
        print("+", " ".join(cmd[2:]), flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.bench_reconstruct")
    p.add_argument("--home", type=Path, required=True)
    p.add_argument("--prepare", action="store_true", help="train the benchmark runs first")
    p.add_argument("--image", type=Path, help="the image to drop (default: a 256×256 procedural one)")
    p.add_argument("--steps", default="4,8,16,32,64", help="decoder steps to time, comma-separated")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    home = args.home.absolute()
    if args.prepare:
        prepare(home)
    image = args.image
    if image is None:
        import numpy as np
        from PIL import Image

        yy, xx = np.mgrid[0:256, 0:256]
        rgb = np.stack([xx, yy, (xx + yy) // 2], -1).astype(np.uint8)
        image = home / "bench-256.png"
        Image.fromarray(rgb).save(image)

    from PySide6.QtCore import QMimeData, QPointF, QSettings, Qt, QUrl
    from PySide6.QtGui import QDragEnterEvent, QDropEvent
    from PySide6.QtWidgets import QApplication

    qapp = QApplication.instance() or QApplication(sys.argv[:1])
    from app.context import AppContext
    from app.models.jobs import DONE
    from app.pages.reconstruct import ReconstructPage
    from app.settings import Settings

    settings = Settings(QSettings(str(home / "bench.ini"), QSettings.Format.IniFormat))
    t_launch = time.perf_counter()
    ctx = AppContext(home, settings, start_session=True)
    ctx.start()
    page = ReconstructPage(ctx)
    page.resize(1280, 760)
    page.show()

    def pump_until(cond, timeout: float = 600.0) -> None:
        end = time.perf_counter() + timeout
        while not cond():
            qapp.processEvents()
            if time.perf_counter() > end:
                raise TimeoutError("timed out")
            time.sleep(0.001)

    pump_until(lambda: ctx.session is not None and ctx.session.is_ready)
    print(f"session worker ready {time.perf_counter() - t_launch:.2f} s after the context started", flush=True)

    def drop_and_wait() -> tuple[float, float, dict]:
        """(seconds to the reconstruction shown, seconds to every metric shown, the entry)."""
        md = QMimeData()
        md.setUrls([QUrl.fromLocalFile(str(image))])
        event = QDropEvent(QPointF(page.drop_zone.rect().center()), Qt.DropAction.CopyAction, md,
                           Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)  # fmt: skip
        enter = QDragEnterEvent(page.drop_zone.rect().center(), Qt.DropAction.CopyAction, md,
                                Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)  # fmt: skip
        page.clear()
        qapp.processEvents()
        t0 = time.perf_counter()
        QApplication.sendEvent(page.drop_zone, enter)
        QApplication.sendEvent(page.drop_zone, event)
        pump_until(lambda: bool(page.table_model.items))
        item = page.table_model.items[0]
        pump_until(lambda: page._shown is item and page.side.views[1].has_image())
        page.repaint()
        qapp.processEvents()
        shown = time.perf_counter() - t0
        pump_until(lambda: item.state not in ("queued", "checking", "running"))
        page.repaint()
        qapp.processEvents()
        done = time.perf_counter() - t0
        assert item.state == DONE, item.error
        return shown, done, item.entry

    by_name = {m.name: m for m in page.picker.models}
    seed = int(time.time()) % 100_000
    rows = []
    for preset, _ in RUNS:
        model = by_name.get(f"bench-{preset}")
        if model is None:
            print(f"no run bench-{preset} (use --prepare)", file=sys.stderr)
            continue
        page.picker.select(model.run_id)
        default = model.decoder_steps
        page.steps.setValue(default)
        seed += 1000
        page.seed.setValue(seed)
        cold, cold_done, entry = drop_and_wait()
        rows.append((preset, f"{default} (default), first drop: model load", cold, cold_done, entry, 1))
        steps = sorted({*(int(s) for s in args.steps.split(",")), default})
        for n in steps:
            page.steps.setValue(n)
            shown, done, decodes, workers = [], [], [], []
            for _ in range(args.repeats):
                seed += 1
                page.seed.setValue(seed)
                t_shown, t_done, entry = drop_and_wait()
                shown.append(t_shown)
                done.append(t_done)
                decodes.append(entry["metrics"]["decode_seconds"])
                workers.append(entry["metrics"]["seconds"])
            label = f"{n}" + (" (default)" if n == default else "")
            medians = {"decode_seconds": statistics.median(decodes), "seconds": statistics.median(workers)}
            rows.append((preset, label, statistics.median(shown), statistics.median(done), {"metrics": medians},
                         args.repeats))  # fmt: skip
        t_shown, t_done, entry = drop_and_wait()  # the same file, seed and steps again: from the cache
        rows.append((preset, f"{n}, cached", t_shown, t_done, entry, 1))

    print()
    print("| model | decoder steps | drop → reconstruction shown | drop → all metrics | decode | worker total | n |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for preset, label, t_shown, t_done, entry, n in rows:
        m = entry.get("metrics", {})
        cached = entry.get("cached")
        dec = "–" if cached else f"{m.get('decode_seconds', 0):.2f} s"
        whole = "–" if cached else f"{m.get('seconds', 0):.2f} s"
        print(f"| {preset} | {label} | {t_shown:.2f} s | {t_done:.2f} s | {dec} | {whole} | {n} |")
    page.shutdown()
    ctx.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
