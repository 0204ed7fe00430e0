"""The video figures of docs/benchmarks.md from two stored runs (a video stage-1 run and a stage-2 run on it).

    python -m ul_engine.bench.video --home H --stage1 RUN1 --stage2 RUN2 --out docs/images

Writes reconstruction, sample and conditional-continuation strips (rows of frames, enlarged ×4) and prints
one JSON object: `ul eval` of the stage-1 run on 16 fixed validation clips, and the PSNR of the generated
continuation against the true frames it replaces (a measure of how well the motion is continued).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ul_engine.core.config import validate
from ul_engine.core.imaging import save_png
from ul_engine.data import fixed_validation_batch, make_source
from ul_engine.eval.evaluate import evaluate_run
from ul_engine.inference.clips import clip_strip
from ul_engine.inference.files import psnr_frames
from ul_engine.inference.loading import load_run
from ul_engine.inference.reconstruct import reconstruct_video
from ul_engine.inference.sample import sample_videos
from ul_engine.store import Store


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m ul_engine.bench.video")
    p.add_argument("--home", type=Path, required=True)
    p.add_argument("--stage1", required=True)
    p.add_argument("--stage2", required=True)
    p.add_argument("--out", type=Path, default=Path("docs/images"))
    p.add_argument("--prefix", default="video-bouncing32")
    p.add_argument("--n", type=int, default=16, help="validation clips for PSNR and bits")
    p.add_argument("--context-frames", type=int, default=4)
    args = p.parse_args(argv)

    store = Store.open(args.home)
    result: dict[str, Any] = {"eval": evaluate_run(store, args.stage1, n=args.n, record=False)}
    s1, s2 = load_run(store, args.stage1), load_run(store, args.stage2, need_base=True)
    cfg = validate({**s1.cfg.to_dict(), "stage": 1})
    steps = cfg.sampling.decoder_steps
    clips, _ = fixed_validation_batch(make_source(cfg.data), 3, seed=4321)
    real = [np.clip((c.permute(1, 2, 3, 0).numpy() + 1) * 127.5, 0, 255).round().astype(np.uint8) for c in clips]
    rows = []
    for i, clip in enumerate(real[:2]):
        rec = reconstruct_video(s1.stage1, clip, decoder_steps=steps, seed=i)
        rows += [clip, rec.reconstruction]
    args.out.mkdir(parents=True, exist_ok=True)
    save_png(args.out / f"{args.prefix}-reconstruction.png", clip_strip(rows), scale=4)

    assert s2.base is not None
    torch.manual_seed(0)
    samples = sample_videos(s2.base, s2.stage1, 4, seed=0, base_steps=s2.cfg.sampling.base_steps,
                            decoder_steps=steps)  # fmt: skip
    save_png(args.out / f"{args.prefix}-samples.png", clip_strip(samples), scale=4)

    k = args.context_frames
    rows, continued = [], []
    for i, clip in enumerate(real):
        [gen] = sample_videos(s2.base, s2.stage1, 1, seed=100 + i, base_steps=s2.cfg.sampling.base_steps,
                              decoder_steps=steps, context=clip, context_frames=k)  # fmt: skip
        rows += [clip, gen]
        continued.append(float(np.mean(psnr_frames(clip[k:], gen[k:]))))
    save_png(args.out / f"{args.prefix}-continuation.png", clip_strip(rows), scale=4)
    result["continuation"] = {"context_frames": k, "psnr_generated_vs_true": continued}
    result["files"] = sorted(str(f) for f in args.out.glob(f"{args.prefix}-*.png"))
    print(json.dumps(result, default=str))
    return result


if __name__ == "__main__":
    main()
