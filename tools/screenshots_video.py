"""Screenshots of the video features for the user guide, in a real window (Xvfb, 1280×800):

    xvfb-run -s "-screen 0 1280x800x24" env QT_QPA_PLATFORM=xcb \
        .venv/bin/python -m tools.screenshots_video --home /tmp/ul-video-shots --prepare --out docs/screenshots

`--prepare` trains a `bouncing-smoke` stage-1 run (1,200 steps) and a stage-2 run on it (800 steps; about 6
minutes together on 2 busy CPU cores) with the `ul` command, and writes a bouncing clip (the engine's
procedural data, 24 frames) to drop. The script then drops the clip on the Reconstruct page
(video-reconstruct.png: synced players, PSNR per frame, bits), draws clips on the Generate page
(video-generate.png) and continues the dropped clip from its first 4 frames (video-continue.png).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

CLIP = "clips/bouncing.mp4"


def ul(home: Path, *args: str) -> None:
    cmd = [sys.executable, "-m", "ul_engine.cli", "--home", str(home), *args]
    print("+", " ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})


def write_clip(path: Path, frames: int = 24, resolution: int = 16, seed: int = 7) -> Path:
    """A clip of the bouncing data (torch-free) as an MP4 at the model's resolution."""
    import numpy as np

    from ul_engine.core import video_io
    from ul_engine.data.bouncing import render_bouncing

    clip, _, _ = render_bouncing(np.random.default_rng(seed), resolution, frames)
    video_io.write_mp4(path, list(clip), fps=8, min_side=1)
    return path


def prepare(home: Path, stage1_steps: int, stage2_steps: int) -> None:
    ul(home, "train", "--preset", "bouncing-smoke", "--steps", str(stage1_steps), "--name", "bounce-smoke",
       "--set", f"train.checkpoint_every={stage1_steps}")  # fmt: skip
    ul(home, "train", "--preset", "bouncing-smoke", "--stage", "2", "--from-run", "bounce-smoke",
       "--steps", str(stage2_steps), "--name", "bounce-base",
       "--set", f"train.checkpoint_every={stage2_steps}")  # fmt: skip
    write_clip(home / CLIP)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.screenshots_video")
    p.add_argument("--home", type=Path, required=True)
    p.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    p.add_argument("--prepare", action="store_true", help="train the example runs and write the clip first")
    p.add_argument("--stage1-steps", type=int, default=1200)
    p.add_argument("--stage2-steps", type=int, default=800)
    args = p.parse_args(argv)
    home = args.home.absolute()
    if args.prepare:
        prepare(home, args.stage1_steps, args.stage2_steps)
    from tools.shotkit import open_window

    kit = open_window(home, args.out, "screenshots-video.ini")
    window, wait, shot = kit.window, kit.wait, kit.shot
    clip = home / CLIP

    window.show_page("reconstruct")
    rec = window.page("reconstruct")
    rec.picker.select(next(m.run_id for m in rec.picker.models if m.name == "bounce-smoke"))
    rec.add_paths([str(clip)])
    view = rec.video_view
    wait(lambda: not view.busy() and not view.loader.busy())
    view.player.clock.seek(9)
    shot(window, "video-reconstruct")

    window.show_page("generate")
    gen = window.page("generate")
    gen.runs.select(next(i for i, r in gen.runs.infos.items() if r.name == "bounce-base"))
    gen.n.setValue(6)
    gen.seed.setValue(0)
    gen.generate()
    wait(lambda: not gen.busy())
    for player in gen.video.gallery.players:
        player.clock.pause()
        player.clock.seek(5)
    shot(window, "video-generate")

    gen.video.set_context(str(clip))
    wait(lambda: gen.video.context is not None)
    gen.video.k.setValue(4)
    gen.n.setValue(3)
    gen.generate()
    wait(lambda: not gen.busy())
    for player in gen.video.gallery.players:
        player.clock.pause()
        player.clock.seek(6)
    shot(window, "video-continue")

    window._close_ready = True
    window.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
