"""Prior slack κ: how loose the stage-1 prior's rate bound is, against a larger model of the same latents.

κ = (the stage-1 prior's bound on the rate) / (the best bound), where the best bound is the unweighted ELBO
of a stage-2 base model trained on that ELBO (`loss.base_weighting = "elbo"`) over the same frozen latents.
Both are Monte-Carlo estimates (nats per example) on the same validation latents, which neither model trained
on. κ = 1: the stage-1 prior charges what the larger model does; κ > 1: the rate the encoder pays is inflated
by the prior's slack. docs/method.md § 12.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ul_engine.core.config import validate
from ul_engine.core.errors import ULError
from ul_engine.data import fixed_validation_batch, make_source
from ul_engine.inference.loading import base_from_checkpoint, load_stage1
from ul_engine.model import LN2, LatentBase, UnifiedLatents
from ul_engine.store import Store

SLACK_SEED = 2718
"""Seed of the validation images (and of the estimates' noise): the same latents for every run."""


@dataclass
class PriorSlack:
    bound: float  # the stage-1 prior's rate bound, nats per example
    best_bound: float  # the stage-2 ELBO model's bound on the same latents
    count: int
    pixels: int  # H·W (T·H·W for clips) per example: the bits-per-pixel normaliser

    @property
    def kappa(self) -> float:
        return self.bound / self.best_bound if self.best_bound > 0 else math.inf

    def to_json(self) -> dict[str, Any]:
        """JSON-safe: κ is null where the best bound is not positive."""
        kappa = self.kappa
        return {
            "kappa": kappa if math.isfinite(kappa) else None,
            "bound_bits_per_pixel": self.bound / LN2 / self.pixels,
            "best_bound_bits_per_pixel": self.best_bound / LN2 / self.pixels,
            "bound_nats": self.bound,
            "best_bound_nats": self.best_bound,
            "count": self.count,
        }


@torch.no_grad()
def bounds_on_latents(
    stage1: UnifiedLatents, base: LatentBase, z_clean: Tensor, *, draws: int = 16, batch_size: int = 64
) -> tuple[float, float]:
    """(stage-1 prior's bound, base model's ELBO), each the mean over `z_clean` in nats per example."""
    bound = best = 0.0
    for chunk in z_clean.split(batch_size):
        bound += stage1.estimate_rate(chunk, draws).sum().item()
        best += base.estimate_elbo(chunk, draws).sum().item()
    return bound / len(z_clean), best / len(z_clean)


@torch.no_grad()
def prior_slack(
    store: Store, run_ref: int | str, *, count: int = 256, draws: int = 16, device: str = "cpu"
) -> PriorSlack:
    """κ for a stage-2 run trained on the unweighted ELBO, from its latest checkpoint (EMA weights) and the
    stage-1 model it was trained on, over `count` validation images encoded by that stage-1 model."""
    run = store.get_run(run_ref)
    if run.stage != 2:
        raise ULError(f"run {run.name} is stage {run.stage}; κ needs a stage-2 run trained on its latents")
    cfg = validate(run.config)
    if cfg.loss.base_weighting != "elbo":
        raise ULError(
            f"run {run.name} trained stage 2 on the sigmoid-weighted loss, whose ELBO is not a best bound; "
            'train one with --set loss.base_weighting="elbo"'
        )
    if cfg.data.kind == "latents":
        raise ULError(f"run {run.name} trained on an encoded latent folder; κ needs the images to encode")
    checkpoint = store.latest_checkpoint(run.id)
    stage1_dir = store.run_dir(run.id) / "stage1"
    if checkpoint is None or not (stage1_dir / "decoder.json").is_file():
        raise ULError(f"run {run.name} has no checkpoint yet; train it first")
    torch.manual_seed(SLACK_SEED)
    stage1 = load_stage1(stage1_dir, device)
    base = base_from_checkpoint(checkpoint.path, device, sha256=checkpoint.sha256)
    x, _ = fixed_validation_batch(make_source(cfg.data), count, SLACK_SEED)
    z_clean = torch.cat([stage1.encode(chunk.to(device)) for chunk in x.split(64)])
    bound, best = bounds_on_latents(stage1, base, z_clean, draws=draws)
    return PriorSlack(bound=bound, best_bound=best, count=count, pixels=x[0, 0].numel())
