"""Screenshots of the Generate and Latents pages for the user guide, in a real window (Xvfb, 1280×800):

    xvfb-run -s "-screen 0 1280x800x24" env QT_QPA_PLATFORM=xcb \
        .venv/bin/python -m tools.screenshots_explore --home /tmp/ul-explore-shots --prepare --out docs/screenshots

`--prepare` trains a smoke stage-1 run (800 steps, loss factor 6, sigmoid bias 2) and a stage-2 run on it
(600 steps) with the `ul` command.
The script then generates 16 samples on the Generate page, opens two of them in Latents (A and B) and grabs
the pages: generate.png, latents.png (interpolation) and latents-noise.png (the noise-level scrubber).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path


def ul(home: Path, *args: str) -> None:
    cmd = [sys.executable, "-m", "ul_engine.cli", "--home", str(home), *args]
    print("+", " ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})


def prepare(home: Path) -> None:
    # a higher loss factor and sigmoid bias put more bits in the latent, so the pictures show something
    ul(home, "train", "--preset", "smoke", "--steps", "800", "--name", "shapes-smoke",
       "--set", "loss.loss_factor=6", "--set", "loss.sigmoid_bias=2")  # fmt: skip
    ul(home, "train", "--preset", "smoke", "--stage", "2", "--from-run", "shapes-smoke", "--steps", "600",
       "--name", "shapes-base")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.screenshots_explore")
    p.add_argument("--home", type=Path, required=True)
    p.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    p.add_argument("--prepare", action="store_true", help="train the example runs first")
    args = p.parse_args(argv)
    home = args.home.absolute()
    if args.prepare:
        prepare(home)
    from tools.shotkit import open_window

    kit = open_window(home, args.out, "screenshots-explore.ini")
    window = kit.window
    pump, wait = kit.pump, kit.wait
    shot = kit.shot

    window.show_page("generate")
    generate = window.page("generate")
    generate.n.setValue(16)
    generate.seed.setValue(0)
    generate.generate()
    wait(lambda: not generate.busy())
    shot(window, "generate")

    paths = generate.gallery.paths()
    latents = window.open_latents(paths[0], generate.run_id())
    wait(lambda: latents.results["a"] is not None)
    latents.set_image("b", paths[5])
    wait(lambda: latents.results["b"] is not None and len(latents.strip.frames) > 0)
    wait(lambda: not latents.interp.busy())
    latents.interp.slider.setValue(40)
    wait(lambda: not latents.interp.busy())
    shot(window, "latents")

    latents.tabs.setCurrentIndex(1)
    latents.denoiser.setCurrentIndex(latents.denoiser.findData("base"))
    latents.noise.slider.setValue(70)
    pump(0.2)
    wait(lambda: not latents.noise.busy())
    shot(window, "latents-noise")

    window._close_ready = True
    window.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
