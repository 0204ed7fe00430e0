"""Screenshots of the Reconstruct page for the user guide, in a real window (run under Xvfb at 1280×800):

    xvfb-run -s "-screen 0 1280x800x24" env QT_QPA_PLATFORM=xcb \
        .venv/bin/python -m tools.screenshot_reconstruct --home /tmp/ul-shots-rec --prepare --out docs/screenshots

`--prepare` trains a smoke run for 400 steps (checkpoints at 200 and 400). The script drops a few shapes
images, a photo (`--photo`, optional) and two broken files, with K = 4 decodes and the step-200
checkpoint as the comparison, then grabs the page with the A/B split and with the std map.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path


def prepare(home: Path) -> None:
    cmd = [sys.executable, "-m", "ul_engine.cli", "--home", str(home), "train", "--preset", "smoke", "--steps", "400",
           "--name", "shapes-smoke", "--set", "train.checkpoint_every=200"]  # fmt: skip
    print("+", " ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})


def inputs(folder: Path, photo: Path | None) -> list[Path]:
    import numpy as np
    from PIL import Image

    from ul_engine.data.shapes import render_shapes

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(3):
        arr, _, _ = render_shapes(np.random.default_rng(100 + i), 48)
        path = folder / f"shapes-{i + 1}.png"
        Image.fromarray(arr).save(path)
        out.append(path)
    if photo is not None:
        im = Image.open(photo).convert("RGB")
        im.thumbnail((96, 96), Image.Resampling.LANCZOS)
        path = folder / f"{photo.stem}-96.png"
        im.save(path)
        out.append(path)
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.jpg").write_text("not a picture\n")
    return [*out, folder / "empty.png", folder / "notes.jpg"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.screenshot_reconstruct")
    p.add_argument("--home", type=Path, required=True)
    p.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    p.add_argument("--prepare", action="store_true", help="train the example run first")
    p.add_argument("--photo", type=Path, help="a photo to add to the dropped images")
    args = p.parse_args(argv)
    home = args.home.absolute()
    if args.prepare:
        prepare(home)
    from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
    from PySide6.QtGui import QDragEnterEvent, QDropEvent
    from PySide6.QtWidgets import QApplication

    from tools.shotkit import open_window

    kit = open_window(home, args.out, "screenshots.ini")
    window, pump = kit.window, kit.pump

    def shot(name: str) -> None:
        kit.shot(window, name)

    window.show_page("reconstruct")
    page = window.page("reconstruct")
    page.samples.setValue(4)
    page.compare_picker.select(page.picker.current()["run_id"])
    page.compare_picker.step_box.setCurrentIndex(1)  # the earlier checkpoint
    files = inputs(home / "inputs", args.photo)
    md = QMimeData()
    md.setUrls([QUrl.fromLocalFile(str(f)) for f in files])
    event = QDropEvent(QPointF(page.drop_zone.rect().center()), Qt.DropAction.CopyAction, md,
                       Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)  # fmt: skip
    enter = QDragEnterEvent(page.drop_zone.rect().center(), Qt.DropAction.CopyAction, md,
                            Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)  # fmt: skip
    QApplication.sendEvent(page.drop_zone, enter)
    QApplication.sendEvent(page.drop_zone, event)
    deadline = time.time() + 600
    while page.is_busy() and time.time() < deadline:
        pump(0.3)
    page.select(page.table_model.items[0])
    page.tabs.setCurrentWidget(page.split)
    page.split.set_split(0.45)
    shot("reconstruct")
    page.tabs.setCurrentWidget(page.samples_stack)
    shot("reconstruct-samples")
    window._close_ready = True
    window.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
