"""Where a class-conditional stage-2 base model loses the class: two probes on real latents (shapes runs).

    python -m tools.probe_base --run NAME [--checkpoint STEP] [--n 128] [--from 0,2,3.5] [--guidance 1] [--threads N]

Why: FD-shapes and the guided class agreement of whole samples say *that* samples miss their class, not at
which noise level the base model drops it. Both probes start from real images of the reconstruction stream
of `ul eval --fd N --reconstructions` (so their ceiling is that command's round-trip agreement):

- label gain: the base model's clean-latent error Σ(x̂ − z_clean)² per example at fixed log-SNRs, given the
  true label, the null label and a wrong one. How much the label lowers the error is how much the model
  uses it there (a perfect model's gain is not known; zero means the label is ignored).
- resampling: noise each real latent to log-SNR λ_start, run the base model from there down to λ_z(0) with
  the image's own label, decode, and ask the shapes classifier. A perfect conditional model keeps the class
  from any λ_start (the label fixes it), so a drop below the round-trip agreement is the model's.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np
import torch

from ul_engine.core.config import validate
from ul_engine.core.errors import ULError
from ul_engine.data import fixed_validation_batch, make_source
from ul_engine.diffusion import gaussian, samplers
from ul_engine.eval.evaluate import EVAL_BATCH, FD_RECONSTRUCTED_SEED
from ul_engine.eval.metrics.features import classify, load_shapes_classifier
from ul_engine.eval.metrics.generation import agreement_per_class
from ul_engine.inference.loading import LoadedRun, load_run
from ul_engine.store import Store

PROBE_LOGSNRS = (-6.0, -4.0, -2.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0)


def real_latents(loaded: LoadedRun, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """z_clean and labels of n validation images (the `--reconstructions` stream), encoded by the stage 1."""
    cfg = validate({**loaded.cfg.to_dict(), "stage": 1})
    x, labels = fixed_validation_batch(make_source(cfg.data), n, seed=FD_RECONSTRUCTED_SEED)
    with torch.no_grad():
        z = torch.cat([loaded.stage1.encode(x[i : i + EVAL_BATCH]).float() for i in range(0, n, EVAL_BATCH)])
    return z, torch.as_tensor(np.asarray(labels), dtype=torch.long)


@torch.no_grad()
def label_gain(loaded: LoadedRun, z: torch.Tensor, labels: torch.Tensor) -> list[dict[str, float]]:
    """Per log-SNR: mean Σ(x̂ − z)² with the true, the null and a wrong label (the same noise for all three)."""
    base = loaded.base.eval()  # type: ignore[union-attr]
    wrong = (labels + 1) % base.num_classes
    rows = []
    for lam in PROBE_LOGSNRS:
        logsnr = torch.full((z.shape[0],), lam)
        z_t = gaussian.q_sample(z, logsnr, torch.randn(z.shape, generator=torch.Generator().manual_seed(0)))
        err = {
            name: float((base.x_hat(z_t, logsnr, lab) - z).pow(2).flatten(1).sum(1).mean())
            for name, lab in (("true", labels), ("null", None), ("wrong", wrong))
        }
        rows.append({"logsnr": lam, **err, "gain": err["null"] - err["true"]})
    return rows


@torch.no_grad()
def resampling_agreement(
    loaded: LoadedRun, z: torch.Tensor, labels: torch.Tensor, start: float, *, guidance: float, decoder_steps: int
) -> dict[str, Any]:
    """Class agreement of images decoded from latents re-sampled by the base model from λ_start to λ_z(0)."""
    base = loaded.base.eval()  # type: ignore[union-attr]
    n = z.shape[0]
    grid = base.schedule.grid(loaded.cfg.sampling.base_steps)
    if not float(grid[0]) <= start < float(grid[-1]):
        lo, hi = float(grid[0]), float(grid[-1])
        raise ULError(f"--from {start:g} must lie in [{lo:g}, {hi:g}) (the base model's log-SNR range)")
    grid = torch.cat([torch.tensor([start]), grid[grid > start]])
    seeds = list(range(n))
    z_start = gaussian.q_sample(z, torch.full((n,), start), samplers.PerSampleNoise(seeds).randn(z.shape[1:]))
    noise = samplers.PerSampleNoise([s + n for s in seeds])

    def denoise(z_t: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
        return base.x_hat(z_t, logsnr, labels, guidance)

    z0 = samplers.sample(denoise, grid, noise, z.shape[1:], final="state", z_init=z_start)
    images = torch.cat([
        loaded.stage1.decode(z0[i : i + EVAL_BATCH], steps=decoder_steps, seeds=seeds[i : i + EVAL_BATCH])
        for i in range(0, n, EVAL_BATCH)
    ]).clamp(-1, 1)  # fmt: skip
    kind = classify(load_shapes_classifier(None)[0], images)["kind"]
    y = labels.numpy()
    return {"from_logsnr": start, "base_steps": len(grid) - 1, "agreement": float(np.mean(kind == y)),
            "per_class": agreement_per_class(kind, y)}  # fmt: skip


def probe(store: Any, run: str, *, step: int | None, n: int, starts: list[float], guidance: float) -> dict[str, Any]:
    loaded = load_run(store, run, step=step)
    if loaded.base is None or not loaded.base.num_classes or loaded.cfg.data.kind != "shapes":
        raise ULError(f"run {loaded.run.name}: the probes need a class-conditional stage-2 run on the shapes data")
    torch.manual_seed(0)
    z, labels = real_latents(loaded, n)
    steps = loaded.cfg.sampling.decoder_steps
    return {
        "run": loaded.run.name,
        "checkpoint_step": loaded.checkpoint_step,
        "n": n,
        "guidance": guidance,
        "decoder_steps": steps,
        "label_gain": label_gain(loaded, z, labels),
        "resampling": [
            resampling_agreement(loaded, z, labels, s, guidance=guidance, decoder_steps=steps) for s in starts
        ],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.probe_base", description=__doc__.split("\n\n")[0])
    p.add_argument("--home", default=None, help="data folder (default: $UL_HOME or the user data folder)")
    p.add_argument("--run", required=True)
    p.add_argument("--checkpoint", type=int, default=None)
    p.add_argument("--n", type=int, default=128)
    p.add_argument("--from", dest="starts", default="0,2,3.5", help="log-SNRs to re-sample from, comma-separated")
    p.add_argument("--guidance", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.threads > 0:  # beside a training job, torch's default (every core) oversubscribes them
        torch.set_num_threads(args.threads)
    try:
        starts = [float(v) for v in args.starts.split(",") if v.strip()]
        if args.n < 2:
            raise ULError("--n must be at least 2")
        store = Store.open(args.home)  # None: $UL_HOME, else the platform's data folder
        result = probe(store, args.run, step=args.checkpoint, n=args.n, starts=starts, guidance=args.guidance)
    except (ULError, ValueError) as exc:
        print(f"probe_base: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"run {result['run']} at step {result['checkpoint_step']}, {args.n} real latents")
    for row in result["label_gain"]:
        print(f"  λ {row['logsnr']:+.0f}: Σ(x̂ − z)² true {row['true']:.3f}  null {row['null']:.3f}  "
              f"wrong {row['wrong']:.3f}  (label gain {row['gain']:+.3f})")  # fmt: skip
    for row in result["resampling"]:
        print(f"  from λ {row['from_logsnr']:+g} ({row['base_steps']} steps): agreement {row['agreement']:.3f} "
              f"{row['per_class']}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
