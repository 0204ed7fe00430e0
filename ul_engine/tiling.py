"""A stage-1 model applied in tiles of the size it was trained at, for images much larger than that.

Why: the prior and the decoder are transformers over the latent grid. A model trained only on 64×64 crops
(the shipped demo) has never seen a grid larger than 16×16; on a 451×300 photo (a 113×75 grid) its
attention and position embeddings are far outside what it learned (measured: 12.9 dB on the held-out cat
photo, and 140 s for 16 decoder steps on 2 cores), while the same photo in 64×64 tiles is what it was
trained on, and its cost grows with the pixel count rather than its square. Each tile is encoded, its rate
measured and decoded on its own, so the latent's bits are the sum over tiles; the tile edges can show.

`Tiled` offers the methods the reconstruction path calls (encode, noisy_latent, decode, estimate_rate) on
whole-image tensors whose sides are multiples of the tile; anything else goes to the wrapped model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

CHUNK = 128  # tiles per forward pass: bounds memory for very large images


def _split(x: Tensor, side: int) -> tuple[Tensor, tuple[int, int]]:
    """(B, C, H, W) → (B·nh·nw, C, side, side), tiles in row-major order per image, and (nh, nw)."""
    b, c, h, w = x.shape
    if h % side or w % side:
        raise ValueError(f"tiled model: {h}×{w} is not a multiple of the {side}-pixel tile")
    nh, nw = h // side, w // side
    tiles = x.reshape(b, c, nh, side, nw, side).permute(0, 2, 4, 1, 3, 5).reshape(b * nh * nw, c, side, side)
    return tiles, (nh, nw)


def _join(tiles: Tensor, batch: int, grid: tuple[int, int]) -> Tensor:
    nh, nw = grid
    _, c, th, tw = tiles.shape
    return tiles.reshape(batch, nh, nw, c, th, tw).permute(0, 3, 1, 4, 2, 5).reshape(batch, c, nh * th, nw * tw)


class Tiled(torch.nn.Module):
    """`model` applied to `tile`×`tile` pixel tiles (and the matching latent tiles)."""

    def __init__(self, model: Any, tile: int) -> None:
        super().__init__()
        self.inner = model
        self.tile = int(tile)
        self.latent_tile = self.tile // int(model.cfg.model.downsample())
        self.input_multiple = self.tile  # the Reconstructor pads images to whole tiles
        self.input_min_side = self.tile

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["inner"], name)

    def _chunks(self, tiles: Tensor) -> list[Tensor]:
        return list(tiles.split(CHUNK))

    def encode(self, x: Tensor) -> Tensor:
        tiles, grid = _split(x, self.tile)
        z = torch.cat([self.inner.encode(t) for t in self._chunks(tiles)])
        return _join(z, x.shape[0], grid)

    def noisy_latent(self, z_clean: Tensor, noise: Tensor | None = None) -> Tensor:
        return self.inner.noisy_latent(z_clean, noise)

    def estimate_rate(self, z_clean: Tensor, draws: int = 16) -> Tensor:
        tiles, (nh, nw) = _split(z_clean, self.latent_tile)
        rate = torch.cat([self.inner.estimate_rate(t, draws=draws) for t in self._chunks(tiles)])
        return rate.reshape(z_clean.shape[0], nh * nw).sum(dim=1)

    def decode(
        self,
        z0: Tensor,
        *,
        steps: int,
        seeds: Sequence[int],
        sampler: str = "ancestral",
        image_size: tuple[int, int] | None = None,
        callback: Any = None,
    ) -> Tensor:
        """Each latent tile decoded on its own; tile i of image b draws its noise from seed_b·1009 + i."""
        tiles, grid = _split(z0, self.latent_tile)
        per_image = grid[0] * grid[1]
        tile_seeds = [int(s) * 1009 + i for s in seeds for i in range(per_image)]
        out = []
        for start, chunk in zip(range(0, len(tile_seeds), CHUNK), self._chunks(tiles), strict=True):
            out.append(
                self.inner.decode(
                    chunk, steps=steps, seeds=tile_seeds[start : start + CHUNK], sampler=sampler, callback=callback
                )
            )
        return _join(torch.cat(out), z0.shape[0], grid)
