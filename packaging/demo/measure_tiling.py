"""Whole sample photos through the shipped demo: tiles decoded alone (overlap 0) vs blended windows.

    python packaging/demo/measure_tiling.py HOME OUT 0,16

HOME is any data folder (the demo run is always there); OUT gets each reconstruction and `tiling.json`.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ul_engine.inference.loading import load_run
from ul_engine.inference.reconstruct import Reconstructor
from ul_engine.store import Store


def main() -> None:
    home, out = Path(sys.argv[1]), Path(sys.argv[2])
    overlaps = [int(v) for v in sys.argv[3].split(",")]
    out.mkdir(parents=True, exist_ok=True)
    loaded = load_run(Store.open(home), "demo")
    rec = Reconstructor(loaded)
    down = loaded.stage1.tile // loaded.stage1.latent_tile
    results = []
    for overlap in overlaps:
        loaded.stage1.latent_overlap = overlap // down
        for name in ("chelsea", "coffee", "rocket"):
            start = time.perf_counter()
            entry = rec.image(
                Path(f"resources/samples/{name}.jpg"), rec.default_params(), out_dir=out / f"ov{overlap}-{name}",
                use_cache=False,
            )  # fmt: skip
            m = entry["metrics"]
            results.append({"overlap": overlap, "photo": name, "psnr": m.get("psnr"), "ssim": m.get("ssim"),
                            "seconds": round(time.perf_counter() - start, 1)})  # fmt: skip
            print(json.dumps(results[-1]), flush=True)
    (out / "tiling.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
