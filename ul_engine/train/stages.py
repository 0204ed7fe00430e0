"""The two stages as objectives for the shared loop, and the stage-2 latent cache."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ul_engine import weights
from ul_engine.core.config import RunConfig
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


class Stage1Objective:
    """Encoder, prior and decoder on L = L_z + L_x."""

    def __init__(self, model: UnifiedLatents, stream: BatchStream, device: torch.device) -> None:
        self.module = model
        self.batches = StepBatches(stream, device)

    def micro_losses(
        self, model: nn.Module, step: int, micro: int, micro_count: int
    ) -> tuple[Tensor, dict[str, float]]:
        x, _ = self.batches.micro(step, micro, micro_count)
        losses = model(x)
        return losses.loss(), losses.metrics()


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
