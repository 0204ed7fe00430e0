"""Benchmarks of the Latents and Generate pages (docs/benchmarks.md, "Latents and Generate").

    python -m ul_engine.bench.latents                      # --preset shapes-32 --repeats 15

Weights do not change the cost, so the preset's models are trained for one step (stage 1, then stage 2
with a 64-image latent cache) with `ul train` in a temporary data folder. Then, through a real session
worker (what the Latents page waits for: the request, the decode, the PNG, the answer):

1. scrub latency: one `latents.frames` request of each kind (interpolate, channel, noise) per decoder-step
   count, median and 90th percentile of `--repeats` requests after a warm-up;
2. samples per second: `image.sample` at the preset's default steps, in requests of 1 and of 4 samples
   (the Generate page's chunk), and at 8 + 8 steps.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ul_engine.core.config import resolve


def _ul(home: Path, *args: str) -> None:
    cmd = [sys.executable, "-m", "ul_engine.cli", "--home", str(home), *args, "--json"]
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"ul {' '.join(args)} failed:\n{proc.stderr[-3000:]}")


class Worker:
    """The session worker over pipes."""

    def __init__(self, home: Path) -> None:
        env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ul_engine.worker", "--home", str(home), "session"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
        )  # fmt: skip
        assert self.proc.stdout is not None
        ready = json.loads(self.proc.stdout.readline())
        assert ready == {"event": "ready"}, ready
        self.next_id = 1

    def ask(self, op: str, **params: Any) -> tuple[dict[str, Any], float]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        rid = self.next_id
        self.next_id += 1
        start = time.perf_counter()
        self.proc.stdin.write(json.dumps({"id": rid, "op": op, **params}) + "\n")
        self.proc.stdin.flush()
        while True:
            reply = json.loads(self.proc.stdout.readline())
            if reply.get("id") == rid:
                break
        ms = 1000.0 * (time.perf_counter() - start)
        if not reply.get("ok"):
            raise SystemExit(f"{op} failed: {reply.get('error')}")
        return reply["result"], ms

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ask("session.shutdown")
        self.proc.wait(timeout=30)


def _image(path: Path, seed: int, side: int) -> str:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(path)
    return str(path)


def run(preset: str, repeats: int, steps_list: list[int], home: Path) -> dict[str, Any]:
    cfg = resolve(preset)
    t0 = time.perf_counter()
    _ul(home, "train", "--preset", preset, "--steps", "1", "--name", "bench-s1")
    _ul(home, "train", "--preset", preset, "--stage", "2", "--from-run", "bench-s1", "--steps", "1",
        "--name", "bench-s2", "--set", "train.latent_cache_size=64")  # fmt: skip
    setup_s = time.perf_counter() - t0
    files = home / "bench-files"
    files.mkdir(parents=True, exist_ok=True)
    worker = Worker(home)
    result: dict[str, Any] = {
        "preset": preset,
        "image": cfg.data.resolution,
        "latent": list(cfg.latent_shape()),
        "setup_s": setup_s,
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "scrub": [],
        "samples_per_s": [],
    }
    try:
        import torch  # lazy: the driver only reads the thread count; the workers it times load torch

        result["torch_threads"] = torch.get_num_threads()
        latents = []
        for i in range(2):
            image = _image(files / f"{i}.png", i, cfg.data.resolution)
            out = str(files / f"an{i}")
            r, _ = worker.ask("latents.analyze", run="bench-s2", image=image, out=out, decoder_steps=1)
            latents.append(r["latent"])
        rng = np.random.default_rng(0)
        kinds = {
            "interpolate": lambda: {"kind": "interpolate", "latent_b": latents[1], "values": [float(rng.random())]},
            "channel": lambda: {"kind": "channel", "channel": 1, "values": [float(rng.uniform(-3, 3))]},
            "noise (prior, 8 steps over the λ range)": lambda: {
                "kind": "noise", "prior_steps": 8, "values": [float(rng.uniform(-10, 5))]},
            "noise (base model, 8 steps over the λ range)": lambda: {
                "kind": "noise", "denoiser": "base", "prior_steps": 8, "values": [float(rng.uniform(-10, 5))]},
        }  # fmt: skip
        for kind, params in kinds.items():
            for steps in steps_list:
                common = {"run": "bench-s2", "latent": latents[0], "out": str(files / "frames"), "steps": steps}
                worker.ask("latents.frames", **common, **params())  # warm-up
                times = [worker.ask("latents.frames", **common, **params())[1] for _ in range(repeats)]
                row = {
                    "kind": kind,
                    "decoder_steps": steps,
                    "median_ms": statistics.median(times),
                    "p90_ms": float(np.percentile(times, 90)),
                    "max_ms": max(times),
                }
                result["scrub"].append(row)
                print(json.dumps(row), flush=True)
        base_steps, decoder_steps = cfg.sampling.base_steps, cfg.sampling.decoder_steps
        for per_request, steps, n in ((1, (base_steps, decoder_steps), 4), (4, (base_steps, decoder_steps), 8),
                                      (4, (8, 8), 16)):  # fmt: skip
            done, seconds = 0, 0.0
            worker.ask("image.sample", run="bench-s2", seeds=[0], base_steps=2, decoder_steps=2,
                       out=str(files / "warm"))  # fmt: skip
            while done < n:
                seeds = list(range(done, done + per_request))
                _, ms = worker.ask("image.sample", run="bench-s2", seeds=seeds, base_steps=steps[0],
                                   decoder_steps=steps[1], out=str(files / "samples"))  # fmt: skip
                done += per_request
                seconds += ms / 1000.0
            row = {"per_request": per_request, "base_steps": steps[0], "decoder_steps": steps[1],
                   "samples": n, "seconds": seconds, "samples_per_s": n / seconds}  # fmt: skip
            result["samples_per_s"].append(row)
            print(json.dumps(row), flush=True)
    finally:
        worker.close()
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ul_engine.bench.latents")
    p.add_argument("--preset", default="shapes-32")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--steps", default="1,2,4,8,16,64", help="decoder step counts to time, comma-separated")
    p.add_argument("--home", type=Path, help="data folder (default: a temporary one)")
    p.add_argument("--json", type=Path, help="also write the result here")
    args = p.parse_args(argv)
    steps_list = [int(s) for s in args.steps.split(",") if s.strip()]
    with tempfile.TemporaryDirectory(prefix="ul-explore-bench-") as tmp:
        home = args.home or Path(tmp) / "home"
        result = run(args.preset, args.repeats, steps_list, home)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
