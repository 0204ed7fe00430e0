"""The two stages as objectives for the shared loop, and the stage-2 latent cache."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ul_engine import weights
from ul_engine.core.config import RunConfig
from ul_engine.core.errors import ConfigError
from ul_engine.data import BatchStream
from ul_engine.data.loader import to_model_tensor
from ul_engine.model import LatentBase, UnifiedLatents
from ul_engine.train.loop import derive_seed

ProgressFn = Callable[[int, int], bool | None]  # (done, total) → True to cancel


class StepBatches:
    """The global batch of a step, fetched once and split into micro-batches."""

    def __init__(self, stream: BatchStream, device: torch.device) -> None:
        self.stream, self.device = stream, device
        self._step: int | None = None
        self._batch: tuple[Tensor, Tensor] | None = None

    def micro(self, step: int, micro: int, count: int) -> tuple[Tensor, Tensor]:
        if self._step != step or self._batch is None:
            self._batch = self.stream.batch(step)
            self._step = step
        x, y = self._batch
        return x.chunk(count)[micro].to(self.device), y.chunk(count)[micro].to(self.device)


def rate_weight_at(cfg: RunConfig, step: int) -> float:
    """The rate's weight in the optimised loss at `step`: min(1, step / loss.rate_warmup_steps); 1 when off."""
    warm = cfg.loss.rate_warmup_steps
    return min(1.0, step / warm) if warm else 1.0


class Stage1Objective:
    """Encoder, prior and decoder on L = L_z + L_x.

    The departures of docs/method.md § 12, all off by default: the rate's weight warms up over
    `loss.rate_warmup_steps`; the prior can have its own learning rate (`optim.prior_lr_scale`) and extra
    prior-only updates per step (`optim.prior_updates_per_step`) on the step's latents, kept frozen here.
    """

    def __init__(self, model: UnifiedLatents, stream: BatchStream, device: torch.device) -> None:
        cfg = model.cfg
        extra = cfg.optim.prior_updates_per_step - 1
        if (extra or cfg.optim.prior_lr_scale != 1.0) and cfg.ablation.prior == "normal":
            raise ConfigError(
                "optim.prior_lr_scale and optim.prior_updates_per_step train the diffusion prior; "
                "with ablation.prior = normal there is none"
            )
        self.module = model
        self.cfg = cfg
        self.batches = StepBatches(stream, device)
        self.prior_updates = extra
        self._latents: list[Tensor] = []

    def micro_losses(
        self, model: nn.Module, step: int, micro: int, micro_count: int
    ) -> tuple[Tensor, dict[str, float]]:
        x, _ = self.batches.micro(step, micro, micro_count)
        losses = model(x)
        losses.rate_weight = rate_weight_at(self.cfg, step)
        if micro == 0:
            self._latents = []
        if self.prior_updates and losses.latent is not None:
            self._latents.append(losses.latent)
        values = losses.metrics()
        if self.cfg.loss.rate_warmup_steps:
            values["loss/rate_weight"] = losses.rate_weight
        return losses.loss(), values

    def param_groups(self) -> list[dict[str, Any]]:
        """One AdamW group; with `optim.prior_lr_scale` ≠ 1 the prior's parameters get a group of their own."""
        trainable = [p for p in self.module.parameters() if p.requires_grad]
        scale = self.cfg.optim.prior_lr_scale
        if scale == 1.0:
            return [{"params": trainable}]
        prior_ids = {id(p) for p in self.module.prior.parameters()}
        return [
            {"params": [p for p in trainable if id(p) not in prior_ids]},
            {"params": [p for p in trainable if id(p) in prior_ids], "lr_scale": scale},
        ]

    def prior_update_losses(self, model: UnifiedLatents) -> list[Tensor]:
        """The prior's loss on each micro-batch's frozen latents of the step just taken (for one extra update)."""
        return [model.prior_update_loss(latent) for latent in self._latents]


class Stage2Objective:
    """The base model on cached z_clean with fresh noise each step; minibatches drawn by (seed, rank, step)."""

    def __init__(
        self,
        base: LatentBase,
        latents: Tensor,
        labels: Tensor,
        cfg: RunConfig,
        device: torch.device,
        *,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.module = base
        self.latents, self.labels = latents, labels
        self.cfg, self.device = cfg, device
        self.rank, self.world_size = rank, world_size
        self.per_rank = cfg.optim.batch_size // world_size

    def micro_losses(
        self, model: nn.Module, step: int, micro: int, micro_count: int
    ) -> tuple[Tensor, dict[str, float]]:
        g = torch.Generator().manual_seed(derive_seed(self.cfg.train.seed, self.rank, step, 2))
        idx = torch.randint(0, self.latents.shape[0], (self.per_rank,), generator=g).chunk(micro_count)[micro]
        z = self.latents[idx].to(self.device)
        y = self.labels[idx].to(self.device) if self.cfg.data.num_classes else None
        losses = model(z, y)
        return losses.loss(), losses.metrics()


def cache_path(run_dir: Path, stage1_sha256: str) -> Path:
    """The cache is named by the stage-1 checkpoint's hash, so a different checkpoint never reuses it."""
    return Path(run_dir) / f"latents-{stage1_sha256[:16]}.safetensors"


@torch.no_grad()
def build_latent_cache(
    stage1: UnifiedLatents,
    source: object,
    count: int,
    path: Path,
    *,
    device: torch.device,
    batch_size: int = 64,
    progress: ProgressFn | None = None,
) -> tuple[Tensor, Tensor]:
    """Encode `count` images once with the (EMA) encoder; z_clean and labels go to `path` atomically."""
    if path.is_file():
        tensors, _ = weights.load_tensors(path)
        if tensors["z_clean"].shape[0] == count:
            return tensors["z_clean"], tensors["labels"]
    stage1.eval()
    zs, ys = [], []
    for start in range(0, count, batch_size):
        stop = min(count, start + batch_size)
        items = [source[i] for i in range(start, stop)]  # type: ignore[index]
        x = to_model_tensor(np.stack([img for img, _ in items])).to(device)  # images or clips
        zs.append(stage1.encode(x).float().cpu())
        ys.append(torch.tensor([label for _, label in items], dtype=torch.long))
        if progress is not None and progress(stop, count):
            raise InterruptedError("latent caching cancelled")
    z_clean, labels = torch.cat(zs), torch.cat(ys)
    weights.save_tensors(path, {"z_clean": z_clean, "labels": labels}, {"count": str(count)})
    return z_clean, labels


def source_length(source: object, wanted: int) -> int:
    """Infinite sources give `wanted`; finite folders give at most their size."""
    try:
        return min(wanted, len(source))  # type: ignore[arg-type]
    except TypeError:
        return wanted
