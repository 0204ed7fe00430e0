"""Measure a demo bundle on the held-out photos: the decoder sampler × steps table, and whole photos.

    # 64×64 held-out crops (from make_photo_crops.py): PSNR, SSIM, colour shift and seconds per sampler and steps
    python packaging/demo/measure_demo.py crops BUNDLE /tmp/photos/heldout OUT.json --steps 4,8,16,32,64
    # the whole sample photos through the shipped path (tiles, blended windows): metrics, timings, pictures
    python packaging/demo/measure_demo.py photos BUNDLE OUT_DIR --sampler ddim --steps 8
    # the colour shift's spread over seeds
    for s in 1 2 3; do python packaging/demo/measure_demo.py photos BUNDLE OUT_DIR/seed$s --seed $s; done

BUNDLE is an exported bundle folder (it is loaded as the run `demo` through $UL_DEMO_MODEL in a fresh data
folder, exactly as the app loads the shipped one). "Colour shift" is the largest difference, over the three
channels, between the mean colour of the input and of its reconstruction, in 0–255 levels; the target is ≤ 3.
Threads: torch uses $UL_THREADS threads (default 2, the machine the timing goal is stated for).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ul_engine.core.reconstruction import comparison_strip
from ul_engine.core.samplers import SAMPLERS
from ul_engine.eval.metrics.fidelity import psnr_ssim
from ul_engine.inference.loading import load_run
from ul_engine.inference.reconstruct import Reconstructor
from ul_engine.model import LN2
from ul_engine.store import Store

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "resources" / "samples"


def load_demo(bundle: Path, home: Path) -> object:
    os.environ["UL_DEMO_MODEL"] = str(bundle.resolve())
    return load_run(Store.open(home), "demo")


def colour_shift(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Largest per-channel difference of the two images' mean colours, in 0–255 levels."""
    ref = reference.reshape(-1, 3).astype(np.float64).mean(axis=0)
    est = estimate.reshape(-1, 3).astype(np.float64).mean(axis=0)
    return float(np.abs(ref - est).max())


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] → (B, H, W, 3) uint8, rounded as the app saves reconstructions."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def crops(args: argparse.Namespace) -> None:
    """Every sampler × step count on the held-out crops (one batch, the same latent noise and seeds for all)."""
    with tempfile.TemporaryDirectory() as home:
        model = load_demo(args.bundle, Path(home)).stage1.inner
        files = sorted(args.heldout.glob("*.png"))
        if args.per_photo:  # the first n crops of each photo
            files = [f for f in files if int(f.stem.rsplit("-", 1)[1]) < args.per_photo]
        images = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
        seeds = list(range(len(files)))
        with torch.no_grad():
            z_clean = model.encode(x)
            noise = torch.stack([torch.randn(z_clean.shape[1:], generator=torch.Generator().manual_seed(s))
                                 for s in seeds])  # fmt: skip
            z0 = model.noisy_latent(z_clean, noise)
            torch.manual_seed(0)
            bpp = float(model.estimate_rate(z_clean).mean()) / LN2 / (x.shape[-1] * x.shape[-2])
            rows = []
            for sampler in args.samplers.split(","):
                for steps in [int(s) for s in args.steps.split(",")]:
                    start = time.perf_counter()
                    x_hat = model.decode(z0, steps=steps, seeds=[s + 1 for s in seeds], sampler=sampler)
                    seconds = (time.perf_counter() - start) / len(files)
                    out = to_uint8(x_hat)
                    psnrs, ssims = psnr_ssim(x, torch.from_numpy(out).permute(0, 3, 1, 2).float() / 127.5 - 1)
                    shift = float(np.mean([colour_shift(a, b) for a, b in zip(images, out, strict=True)]))
                    rows.append({"sampler": sampler, "steps": steps, "psnr": round(float(np.mean(psnrs)), 2),
                                 "ssim": round(float(np.mean(ssims)), 3), "colour_shift": round(shift, 2),
                                 "bits_per_pixel": round(bpp, 3), "seconds_per_crop": round(seconds, 3)})  # fmt: skip
                    print(json.dumps(rows[-1]), flush=True)
    args.out.write_text(json.dumps(rows, indent=1))


def photos(args: argparse.Namespace) -> None:
    """The sample photos through the app's path (Reconstructor, tiled, blended), one picture per photo."""
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as home:
        loaded = load_demo(args.bundle, Path(home))
        rec = Reconstructor(loaded)
        params = rec.default_params(decoder_steps=args.steps, sampler=args.sampler, seed=args.seed)
        rows = []
        for path in sorted(SAMPLE_DIR.iterdir()):
            if args.only and path.stem not in args.only.split(","):
                continue
            start = time.perf_counter()
            entry = rec.image(path, params, out_dir=args.out / path.stem, use_cache=False)
            total = time.perf_counter() - start
            if not entry["ok"]:
                raise SystemExit(entry["error"])
            source = np.asarray(Image.open(entry["files"]["input"]).convert("RGB"))
            recon = np.asarray(Image.open(entry["files"]["reconstruction"]).convert("RGB"))
            m = entry["metrics"]
            rows.append({"photo": path.name, "size": f"{entry['width']}×{entry['height']}",
                         "sampler": params.sampler, "steps": params.decoder_steps, "seed": params.seed,
                         "psnr": round(m["psnr"], 2), "ssim": round(m["ssim"], 3),
                         "bits_per_pixel": round(m["bits_per_pixel"], 3),
                         "colour_shift": round(colour_shift(source, recon), 2),
                         "decode_seconds": round(m["decode_seconds"], 1), "seconds": round(total, 1)})  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
            if args.pictures:
                strip = comparison_strip([("input", source), ("reconstruction", recon)])
                Image.fromarray(strip).save(args.pictures / f"demo-{path.stem}.png", optimize=True)
    (args.out / "photos.json").write_text(json.dumps(rows, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    c = sub.add_parser("crops")
    c.add_argument("bundle", type=Path)
    c.add_argument("heldout", type=Path)
    c.add_argument("out", type=Path)
    c.add_argument("--samplers", default=",".join(SAMPLERS))
    c.add_argument("--steps", default="4,8,16,32,64")
    c.add_argument("--per-photo", type=int, default=0, help="only the first n crops of each photo (0: all)")
    p = sub.add_parser("photos")
    p.add_argument("bundle", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--sampler", default=None, help="default: the bundle's")
    p.add_argument("--steps", type=int, default=None, help="default: the bundle's")
    p.add_argument("--only", help="comma-separated photo names (default: all three)")
    p.add_argument("--seed", type=int, default=0, help="the reconstruction's seed (the app's default: 0)")
    p.add_argument("--pictures", type=Path, help="write demo-<photo>.png (input | reconstruction) here")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("UL_THREADS", "2")))
    (crops if args.what == "crops" else photos)(args)


if __name__ == "__main__":
    main()
