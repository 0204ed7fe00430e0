"""A stage-1 model applied in tiles of the size it was trained at, for images much larger than that.

Why: the prior and the decoder are transformers over the latent grid. A model trained only on 64×64 crops
(the shipped demo) has never seen a grid larger than 16×16; on a 451×300 photo (a 113×75 grid) its
attention and position embeddings are far outside what it learned (measured: 12.9 dB on the held-out cat
photo, and 140 s for 16 decoder steps on 2 cores), while the same photo in 64×64 tiles is what it was
trained on, and its cost grows with the pixel count rather than its square. Each tile is encoded, its rate
measured on its own, so the latent's bits are the sum over tiles. Decoding with `overlap` > 0 runs one sampler
over the whole image and, at every step, averages the decoder's predictions of overlapping tile-sized windows
with weights that ramp down towards each window's edge (MultiDiffusion, Bar-Tal et al. 2023): neighbouring tiles
then agree on their shared border instead of each settling on its own tint; it costs about
(side / (tile − overlap))² windows instead of (side / tile)² tiles. With `overlap` = 0 each tile is decoded on
its own and the tile edges can show.

`Tiled` offers the methods the reconstruction path calls (encode, noisy_latent, decode, estimate_rate) on
whole-image tensors whose sides are multiples of the tile; anything else goes to the wrapped model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ul_engine.diffusion import samplers
from ul_engine.diffusion.precision import sampling_autocast

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

    def __init__(self, model: Any, tile: int, overlap: int = 0) -> None:
        super().__init__()
        self.inner = model
        self.tile = int(tile)
        down = int(model.cfg.model.downsample())
        self.latent_tile = self.tile // down
        if overlap < 0 or overlap % down or overlap >= self.tile:
            raise ValueError(f"tile overlap {overlap} must be a multiple of {down} pixels and below the tile ({tile})")
        self.latent_overlap = overlap // down
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
        """Without overlap each latent tile is decoded on its own (tile i of image b draws its noise from
        seed_b·1009 + i); with overlap, one sampler over the whole image (noise from seed_b) with blended windows."""
        if self.latent_overlap and self.inner.ablation.decoder_loss != "mse":
            return self._decode_blended(z0, steps=steps, seeds=seeds, sampler=sampler, callback=callback)
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

    def _windows(self, side: int) -> list[int]:
        """Latent offsets of the windows along one side: stride tile − overlap, the last flush with the edge."""
        stride = self.latent_tile - self.latent_overlap
        starts = list(range(0, max(side - self.latent_tile, 0) + 1, stride))
        if starts[-1] + self.latent_tile < side:
            starts.append(side - self.latent_tile)
        return starts

    def _ramp(self, device: torch.device) -> Tensor:
        """(tile, tile) pixel weights: 1 inside, falling linearly over the overlap towards each edge (never 0)."""
        down = self.tile // self.latent_tile
        ov = self.latent_overlap * down
        i = torch.arange(self.tile, device=device, dtype=torch.float32) + 0.5
        edge = torch.minimum(i, self.tile - i)
        r = torch.clamp(edge / ov, max=1.0)
        return r[:, None] * r[None, :]

    def _decode_blended(self, z0: Tensor, *, steps: int, seeds: Sequence[int], sampler: str, callback: Any) -> Tensor:
        inner = self.inner
        if z0.shape[-2] % self.latent_tile or z0.shape[-1] % self.latent_tile:
            raise ValueError(f"tiled model: latent {tuple(z0.shape[-2:])} is not a multiple of {self.latent_tile}")
        down = self.tile // self.latent_tile
        lt, pt = self.latent_tile, self.tile
        spots = [(r, c) for r in self._windows(z0.shape[-2]) for c in self._windows(z0.shape[-1])]
        ramp = self._ramp(z0.device)
        z_windows = torch.stack([z0[..., r : r + lt, c : c + lt] for r, c in spots], dim=1)  # (B, K, C, lt, lt)
        batch, k = z_windows.shape[:2]
        z_flat = z_windows.flatten(0, 1)
        total = torch.zeros(1, 1, z0.shape[-2] * down, z0.shape[-1] * down, device=z0.device)
        for r, c in spots:
            total[..., r * down : r * down + pt, c * down : c * down + pt] += ramp

        z_chunks = z_flat.split(CHUNK)
        with sampling_autocast(z0.device):  # the windows' z0 is the same at every step
            conditions = [inner.decoder_condition(z) for z in z_chunks]

        def denoise(x_t: Tensor, logsnr: Tensor) -> Tensor:
            crops = torch.stack(
                [x_t[..., r * down : r * down + pt, c * down : c * down + pt] for r, c in spots], dim=1
            ).flatten(0, 1)
            lam = logsnr.repeat_interleave(k)
            preds = torch.cat([
                inner.decoder_x_hat(x, z, g, cond)
                for x, z, g, cond in zip(crops.split(CHUNK), z_chunks, lam.split(CHUNK), conditions, strict=True)
            ]).view(batch, k, *crops.shape[1:])  # fmt: skip
            out = torch.zeros_like(x_t)
            for i, (r, c) in enumerate(spots):
                out[..., r * down : r * down + pt, c * down : c * down + pt] += preds[:, i] * ramp
            return out / total

        noise = samplers.PerSampleNoise(seeds, z0.device)
        grid = inner.image_schedule.grid(steps).to(z0.device)
        shape = inner.pixel_shape(z0)
        return samplers.sample(denoise, grid, noise, shape, sampler=sampler, final="prediction", callback=callback)
