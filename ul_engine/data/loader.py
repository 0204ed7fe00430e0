"""Training batches as a pure function of (seed, step): resuming at step k sees exactly the batches
an uninterrupted run would have, on any number of processes, with no loader state to checkpoint.

Global position of example j of rank r at step s: p = s·B·W + r·B + j (B: per-process batch size,
W: world size), so the ranks of one step split one global batch without overlap.
- shapes / bouncing: item p of the infinite procedural source (its pixels depend on the source's seed and p).
- folder (images or video clips): epoch e = p // N, item = permutation_e[p % N] with permutation_e seeded
  by (seed, e); random crops are seeded by (seed, s, r·B + j).
Video clips come out as (B, 3, T, H, W).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch

from ul_engine.core.config import DataConfig
from ul_engine.core.errors import DataError
from ul_engine.core.image_folder import ImageFolderSource
from ul_engine.core.media import to_model_range
from ul_engine.data.bouncing import BouncingSource
from ul_engine.data.shapes import ShapesSource
from ul_engine.data.video_folder import VideoFolderSource

Source = ShapesSource | ImageFolderSource | BouncingSource | VideoFolderSource
Procedural = (ShapesSource, BouncingSource)  # infinite, indexed by stream position
Batch = tuple[torch.Tensor, torch.Tensor]  # (B, 3, H, W) or clips (B, 3, T, H, W), float32 in [-1, 1]; labels (B,)

# Tags the validation stream's seeds so it never meets a training index, whatever the step.
_VALIDATION_TAG = 0x5641_4C


def make_source(cfg: DataConfig) -> Source:
    """The source a DataConfig describes; label settings are checked against what the data holds."""
    if cfg.kind == "shapes":
        return ShapesSource(cfg.resolution, cfg.seed, cfg.num_classes)
    if cfg.kind == "bouncing":
        return BouncingSource(cfg.resolution, cfg.frames, cfg.seed, cfg.num_classes)
    if cfg.kind == "latents":
        raise DataError(
            f"data.kind = latents: {cfg.path} holds latents written by `ul encode`, not images; it feeds stage-2 "
            "training only (images for this run come from its stage-1 run's data)"
        )
    if cfg.kind == "video-folder":
        if not cfg.path:
            raise DataError("data.path is required when data.kind is video-folder")
        return VideoFolderSource(cfg.path, cfg.resolution, cfg.frames, cfg.frame_stride, cfg.crop, cfg.seed)
    if not cfg.path:
        raise DataError("data.path is required when data.kind is image-folder")
    source = ImageFolderSource(cfg.path, cfg.resolution, cfg.crop, cfg.class_subfolders, cfg.seed)
    if cfg.class_subfolders and cfg.num_classes == 0:
        raise DataError(
            f"data.class_subfolders is on and {cfg.path} has {source.num_classes} class folders, "
            f"but data.num_classes is 0; set data.num_classes = {source.num_classes}"
        )
    if cfg.class_subfolders and source.num_classes > cfg.num_classes:
        raise DataError(
            f"{cfg.path} has {source.num_classes} class folders but data.num_classes is {cfg.num_classes}; "
            f"set data.num_classes >= {source.num_classes}"
        )
    if not cfg.class_subfolders and cfg.num_classes:
        raise DataError(
            f"data.num_classes is {cfg.num_classes} but image folders have labels only with "
            "data.class_subfolders = true; turn that on or set data.num_classes = 0"
        )
    return source


class BatchStream:
    """`batch(step)` → this process's share of the global batch of optimizer step `step`."""

    def __init__(self, source: Source, batch_size: int, seed: int, *, rank: int = 0, world_size: int = 1) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        self.source = source
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self._permutations: OrderedDict[int, np.ndarray] = OrderedDict()  # small LRU: a batch spans <= 2 epochs

    def positions(self, step: int) -> np.ndarray:
        """Global stream positions of this process's examples at `step`."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        start = step * self.batch_size * self.world_size + self.rank * self.batch_size
        return start + np.arange(self.batch_size, dtype=np.int64)

    def batch(self, step: int) -> Batch:
        positions = self.positions(step)
        if isinstance(self.source, Procedural):
            items = [self.source[int(p)] for p in positions]
        else:
            n = len(self.source)
            items = []
            for j, p in enumerate(positions):
                file_index = int(self._permutation(int(p) // n)[int(p) % n])
                crop_rng = np.random.default_rng([self.seed, step, self.rank * self.batch_size + j])
                items.append(self.source.load(file_index, crop_rng))
        return _collate(items)

    def _permutation(self, epoch: int) -> np.ndarray:
        perm = self._permutations.get(epoch)
        if perm is None:
            perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.source))
            self._permutations[epoch] = perm
            while len(self._permutations) > 2:
                self._permutations.popitem(last=False)
        else:
            self._permutations.move_to_end(epoch)
        return perm


def fixed_validation_batch(source: Source, n: int, seed: int) -> Batch:
    """The same n images on every call (previews, eval), drawn from a seed stream that training
    never uses. Folder images are centre-cropped, so the previews do not jitter."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if isinstance(source, Procedural):
        streams = (np.random.SeedSequence([source.seed, seed], spawn_key=(_VALIDATION_TAG, k)) for k in range(n))
        items = [source.render(np.random.default_rng(stream)) for stream in streams]
    else:
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_VALIDATION_TAG,)))
        count = len(source)
        order = np.concatenate([rng.permutation(count) for _ in range(-(-n // count))])[:n]
        items = [source.load(int(i), crop="center") for i in order]
    return _collate(items)


def to_model_tensor(stacked: np.ndarray) -> torch.Tensor:
    """A uint8 batch (B, H, W, 3) → (B, 3, H, W), or of clips (B, T, H, W, 3) → (B, 3, T, H, W), in [-1, 1]."""
    x = torch.from_numpy(to_model_range(stacked))  # (B, 3, H, W) or (B, T, 3, H, W)
    return x.transpose(1, 2).contiguous() if stacked.ndim == 5 else x


def _collate(items: list[tuple[np.ndarray, int]]) -> Batch:
    x = to_model_tensor(np.stack([image for image, _ in items]))
    labels = np.fromiter((label for _, label in items), dtype=np.int64, count=len(items))
    return x, torch.from_numpy(labels)
