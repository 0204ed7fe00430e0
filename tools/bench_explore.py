"""Scrubbing as the user sees it: the Latents page (offscreen) with a real session worker, a slider dragged
for a few seconds at 60 moves per second; how many previews reached the screen and how long each took from
the request to the picture (docs/benchmarks.md, "Latents and Generate").

    .venv/bin/python -m tools.bench_explore              # --preset shapes-32 --seconds 4 --preview-steps 4

Weights do not change the cost: the preset is trained for one step of each stage into a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _ul(home: Path, *args: str) -> None:
    cmd = [sys.executable, "-m", "ul_engine.cli", "--home", str(home), *args, "--json"]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.bench_explore")
    p.add_argument("--preset", default="shapes-32")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--preview-steps", default="2,4,8", help="preview decoder steps to try, comma-separated")
    args = p.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    tmp = tempfile.TemporaryDirectory(prefix="ul-bench-explore-")
    home = Path(tmp.name) / "home"
    _ul(home, "train", "--preset", args.preset, "--steps", "1", "--name", "b1")
    _ul(home, "train", "--preset", args.preset, "--stage", "2", "--from-run", "b1", "--steps", "1", "--name", "b2",
        "--set", "train.latent_cache_size=64")  # fmt: skip

    import numpy as np
    from PIL import Image
    from PySide6.QtCore import QEventLoop, QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    from app.context import AppContext
    from app.pages.latents import LatentsPage
    from app.settings import Settings

    qapp = QApplication.instance() or QApplication(sys.argv[:1])
    settings = Settings(QSettings(str(Path(tmp.name) / "s.ini"), QSettings.Format.IniFormat))
    ctx = AppContext(home, settings, start_session=True)
    ctx.start()
    page = LatentsPage(ctx)
    page.resize(1120, 760)
    page.show()

    def pump_until(cond, timeout: float = 300.0) -> None:
        end = time.time() + timeout
        while not cond() and time.time() < end:
            qapp.processEvents()
            time.sleep(0.002)

    rng = np.random.default_rng(0)
    res = int(ctx.store.get_run("b2").config["data"]["resolution"])
    for slot in ("a", "b"):
        path = Path(tmp.name) / f"{slot}.png"
        Image.fromarray(rng.integers(0, 256, (res, res, 3), dtype=np.uint8)).save(path)
        page.set_image(slot, path)
        pump_until(lambda s=slot: page.results[s] is not None)
    scrub = page.interp
    pump_until(lambda: not scrub.busy() and len(page.strip.frames) > 0)  # the film strip is decoded first
    rows = []
    for steps in [int(s) for s in args.preview_steps.split(",")]:
        page.preview_steps.setValue(steps)
        scrub.latencies_ms.clear()
        scrub.shown.clear()
        scrub.slider.setSliderDown(True)
        counter = [0]

        def move(counter: list[int] = counter) -> None:  # a hand on the slider: a new position every 1/60 s
            counter[0] += 1
            scrub.slider.setValue(int(50 + 45 * np.sin(counter[0] / 20)))

        timer = QTimer()
        timer.setInterval(16)
        timer.timeout.connect(move)
        loop = QEventLoop()
        QTimer.singleShot(int(args.seconds * 1000), loop.quit)
        start = time.perf_counter()
        timer.start()
        loop.exec()  # the GUI idles between events, as it does for a user
        timer.stop()
        elapsed = time.perf_counter() - start
        scrub.slider.setSliderDown(False)
        done = QEventLoop()
        poll = QTimer()
        poll.setInterval(5)
        poll.timeout.connect(lambda done=done: None if scrub.busy() else done.quit())
        poll.start()
        done.exec()
        poll.stop()
        moves = counter[0]
        previews = [ms for preview, ms in scrub.latencies_ms if preview]
        full = [ms for preview, ms in scrub.latencies_ms if not preview]
        row = {
            "preview_steps": steps,
            "moves": moves,
            "previews_shown": len(previews),
            "previews_per_s": len(previews) / elapsed,
            "preview_median_ms": statistics.median(previews) if previews else None,
            "preview_p90_ms": float(np.percentile(previews, 90)) if previews else None,
            "full_steps": page.full_steps.value(),
            "full_ms": full[-1] if full else None,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    page.close()
    ctx.shutdown()
    print(json.dumps({"preset": args.preset, "load_average": os.getloadavg(), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
