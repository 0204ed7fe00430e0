"""Screenshots of every page for the user guide, taken in a real window (run under Xvfb at 1280×800):

    xvfb-run -s "-screen 0 1280x800x24" env QT_QPA_PLATFORM=xcb \
        .venv/bin/python -m tools.screenshots --home /tmp/ul-shots --prepare --out docs/screenshots

`--prepare` trains a few smoke runs with the `ul` command first (two stage-1 runs with different loss
factors, a stage-2 run on the first, a run that fails); the script then starts one more run in the app,
waits until it has trained a while, and grabs each page, the New run dialog and the close question.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path


def ul(home: Path, *args: str) -> None:
    cmd = [sys.executable, "-m", "ul_engine.cli", "--home", str(home), *args]
    print("+", " ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})


def prepare(home: Path) -> None:
    ul(home, "train", "--preset", "smoke", "--steps", "300", "--name", "shapes-lf1.5")
    ul(home, "train", "--preset", "smoke", "--steps", "300", "--name", "shapes-lf3", "--set", "loss.loss_factor=3.0")
    ul(home, "train", "--preset", "smoke", "--stage", "2", "--from-run", "shapes-lf1.5", "--steps", "200",
       "--name", "shapes-base")  # fmt: skip
    ul(home, "train", "--preset", "folder-64", "--name", "my-photos", "--set", 'data.path="/nonexistent/photos"')


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.screenshots")
    p.add_argument("--home", type=Path, required=True)
    p.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    p.add_argument("--prepare", action="store_true", help="train the example runs first")
    p.add_argument("--live-steps", type=int, default=120, help="steps the live run trains before the shots")
    args = p.parse_args(argv)
    home = args.home.absolute()
    if args.prepare:
        prepare(home)
    from app import theme
    from tools.shotkit import open_window
    from ul_engine.core.config import resolve
    from ul_engine.core.supervisor import StopLadder

    kit = open_window(home, args.out, "screenshots.ini")
    kit.ctx.settings.set_estimate("smoke", "cpu", 88.0)
    qapp, ctx, window = kit.qapp, kit.ctx, kit.window
    pump = kit.pump
    shot = kit.shot

    store = ctx.store
    live = store.create_run(
        name="shapes-live", stage=1, preset="smoke", config=resolve("smoke", ["train.steps=1500"]).to_dict(),
        total_steps=1500,
    )  # fmt: skip
    queued = store.create_run(name="shapes-next", stage=1, preset="smoke", config=resolve("smoke").to_dict(),
                              total_steps=60)  # fmt: skip
    ctx.controller.start(live.id, "cpu")
    ctx.controller.start(queued.id, "cpu")
    deadline = time.time() + 300
    while time.time() < deadline and store.get_run(live.id).step < args.live_steps:
        pump(0.5)
    pump(1.0)

    window.show_page("runs")
    window.runs.select_run(live.id)
    shot(window, "runs")

    monitor = window.open_monitor(live.id)
    monitor.options.smoothing.setValue(60)
    pump(2.0)
    shot(window, "monitor")

    by_name = {r.info.name: r.id for r in ctx.repo.ordered()}
    monitor.show_runs(by_name["shapes-lf1.5"], [by_name["shapes-lf3"]])
    pump(2.5)
    shot(window, "monitor-compare")
    monitor.show_runs(by_name["shapes-base"])
    pump(2.0)
    shot(window, "monitor-stage2")

    # The Reconstruct, Latents and Generate shots come from screenshot_reconstruct and screenshots_explore.

    window.show_page("runs")
    dialog = window.runs._open_dialog(preset="smoke")
    dialog.resize(760, 800)
    dialog.move(260, 0)
    pump(0.8)
    shot(dialog, "new-run")
    dialog.advanced_toggle.setChecked(True)
    dialog.knobs.loss_factor.setValue(12.0)
    dialog.validate_now()
    pump(0.5)
    shot(dialog, "new-run-invalid")
    dialog.reject()

    theme.apply(qapp, theme.DARK)
    window.apply_theme()
    monitor.show_runs(live.id)
    window.show_page("monitor")
    pump(2.0)
    shot(window, "monitor-dark")
    theme.apply(qapp, theme.LIGHT)
    window.apply_theme()

    from PySide6.QtWidgets import QMessageBox

    box = QMessageBox(window)
    box.setIcon(QMessageBox.Icon.Question)
    box.setWindowTitle("Training is running")
    box.setText("shapes-live is training.")
    box.setInformativeText(
        "Keep training in the background: the run goes on and UL Studio re-attaches to it when you open it "
        "again (queued runs wait until then).\nStop: save a checkpoint and stop; you can resume later."
    )
    box.addButton("Keep training", QMessageBox.ButtonRole.AcceptRole)
    box.addButton("Stop and quit", QMessageBox.ButtonRole.DestructiveRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.open()
    pump(0.5)
    shot(box, "close-question")
    box.close()

    ctx.runner.stop_all(StopLadder(grace_s=20))
    deadline = time.time() + 60
    while ctx.runner.is_busy() and time.time() < deadline:
        pump(0.3)
    window._close_ready = True
    window.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
