"""Screenshots of what a new user sees, with the shipped demo model, for the user guide (docs/user-guide.md).
Run in a real window under Xvfb at 1280×800 on an empty data folder:

    xvfb-run -s "-screen 0 1280x800x24" env QT_QPA_PLATFORM=xcb \
        .venv/bin/python -m tools.screenshots_first_run --home /tmp/ul-first-run --out docs/screenshots

Shots: first-run.png (the Runs page's welcome), first-run-reconstruct.png (a shipped sample photo through the
demo model), first-run-latents.png (its latent), first-run-generate.png (demo samples), and
first-run-monitor.png (a smoke run started from the app, training).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.screenshots_first_run")
    p.add_argument("--home", type=Path, required=True, help="an empty data folder (emptied first)")
    p.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    p.add_argument("--decoder-steps", type=int, default=8)  # the demo bundle's default
    p.add_argument("--sampler", default="ancestral")  # the demo bundle's default
    p.add_argument("--photos", type=int, default=1, help="how many shipped photos to reconstruct (full size: slow)")
    p.add_argument("--monitor-steps", type=int, default=60, help="steps the smoke run trains before its shot")
    args = p.parse_args(argv)
    home = args.home.absolute()
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)

    from tools.shotkit import open_window
    from ul_engine.core.config import resolve
    from ul_engine.core.demo import sample_photos

    kit = open_window(home, args.out, "screenshots-first-run.ini", install_demo=True)
    window, ctx, wait = kit.window, kit.ctx, kit.wait
    photos = sample_photos()
    if not photos or not any(r.status == "shipped" for r in ctx.store.list_runs()):
        raise SystemExit("no demo model or sample photos: resources/models/demo/ and resources/samples/")

    window.show_page("runs")
    kit.pump(1.0)
    kit.shot(window, "first-run")

    window.runs.welcome.reconstruct_button.click()
    page = window.page("reconstruct")
    page.steps.setValue(args.decoder_steps)
    page.sampler.setCurrentText(args.sampler)
    page.samples.setValue(1)
    page.add_paths([str(p) for p in photos[: args.photos]])
    wait(lambda: not page.is_busy(), timeout=1200)
    page.select(page.table_model.items[0])
    page.tabs.setCurrentWidget(page.split)
    page.split.set_split(0.5)
    kit.shot(window, "first-run-reconstruct")

    latents = window.open_latents(str(photos[0]), ctx.store.get_run("demo").id)
    wait(lambda: latents.results["a"] is not None, timeout=600)
    kit.pump(1.0)
    kit.shot(window, "first-run-latents")

    window.show_page("generate")
    generate = window.page("generate")
    generate.n.setValue(8)
    generate.seed.setValue(0)
    generate.generate()
    wait(lambda: not generate.busy(), timeout=1200)
    kit.shot(window, "first-run-generate")

    run = ctx.store.create_run(name="shapes-first", stage=1, preset="smoke",
                               config=resolve("smoke", ["train.steps=2000"]).to_dict(), total_steps=2000)  # fmt: skip
    ctx.controller.start(run.id)
    wait(lambda: ctx.store.get_run(run.id).step >= args.monitor_steps, timeout=900)
    monitor = window.open_monitor(run.id)
    wait(lambda: monitor.run_id == run.id, timeout=60)
    kit.pump(10.0)  # the metric fetcher reads the series and the plots draw
    kit.shot(window, "first-run-monitor")
    ctx.controller.stop(run.id)
    kit.pump(2.0)

    window._close_ready = True
    window.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
