"""The Rate–distortion page's screenshot for the user guide (offscreen is enough):

    QT_QPA_PLATFORM=offscreen .venv/bin/python -m tools.screenshot_rd --home /tmp/ul-rd-shots --prepare \
        --out docs/screenshots

`--prepare` trains three smoke stage-1 runs that differ only in the loss factor (1, 3 and 10; 300 steps,
a checkpoint every 100) with the `ul` command. The script then presses **Evaluate missing** on the page
(each checkpoint through `ul eval` in a worker, 32 images), waits for the points, sets Log x, hovers the
best point and grabs the window: rate-distortion.png.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

LOSS_FACTORS = (1.0, 3.0, 10.0)


def ul(home: Path, *args: str) -> None:
    cmd = [sys.executable, "-m", "ul_engine.cli", "--home", str(home), *args]
    print("+", " ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})


def prepare(home: Path, steps: int) -> None:
    for lf in LOSS_FACTORS:
        ul(home, "train", "--preset", "smoke", "--steps", str(steps), "--name", f"smoke-lf{lf:g}",
           "--set", f"loss.loss_factor={lf}", "--set", f"train.checkpoint_every={max(1, steps // 3)}",
           "--set", "train.keep_checkpoints=5")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.screenshot_rd")
    p.add_argument("--home", type=Path, required=True)
    p.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    p.add_argument("--prepare", action="store_true", help="train the example runs first")
    p.add_argument("--steps", type=int, default=300, help="training steps of each example run")
    p.add_argument("--n", type=int, default=32, help="validation images per evaluation")
    args = p.parse_args(argv)
    home = args.home.absolute()
    if args.prepare:
        prepare(home, args.steps)
    from PySide6.QtCore import QEvent, QPointF, Qt
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication

    from tools.shotkit import open_window

    kit = open_window(home, args.out, "screenshots-rd.ini")
    window = kit.window
    window.show_page("rd")
    page = window.page("rd")
    page.n_images.setValue(args.n)
    page.evaluate_missing()
    kit.wait(lambda: not page.evaluator.is_busy(), timeout=1800)
    page.refresh()
    page.log_x.setChecked(True)  # the low loss factors' rates are a hundredth of the high one's
    kit.pump(0.5)
    best = max(page.scatter.points(), key=lambda s: s.pos().y())
    pos = page.plot.mapFromScene(page.scatter.mapToScene(best.pos()))
    move = QMouseEvent(QEvent.Type.MouseMove, QPointF(pos), QPointF(page.plot.viewport().mapToGlobal(pos)),
                       Qt.MouseButton.NoButton, Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier)  # fmt: skip
    QApplication.sendEvent(page.plot.viewport(), move)
    kit.shot(window, "rate-distortion")
    window._close_ready = True
    window.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
