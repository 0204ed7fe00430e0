"""Stage-2 base model: a two-level latent transformer, patch 1 on the latent grid (the paper's ImageNet
base model: two levels of widths [512, 1024] and depths [6, 16], dropout 0.1; docs/method.md § 8).

Level 1 runs at the latent resolution; level 2 merges 2×2 tokens (a quarter of the tokens, so the wide
level is cheap), then splits back and adds the level-1 skip — an HDiT/U-ViT hourglass. Level 1 therefore has
depths[0] blocks before and depths[0] after the inner level.

Video (latents (B, C, t, h, w)): the same net over t·h·w space-time tokens; the inner level merges 2×2
tokens within each frame. With `context` the input token also carries the clean context latent (zero where
not given) and a mask channel, so one model generates unconditionally (mask 0) or continues given frames.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ul_engine.core.config import BaseConfig
from ul_engine.nets.blocks import (
    AdaLNOutput,
    AdaLNTransformerBlock,
    from_tokens,
    merge_tokens,
    sincos_pos_embed,
    split_tokens,
    to_tokens,
)
from ul_engine.nets.prior import Conditioning


class BaseModel(nn.Module):
    """forward(z_t (B,C,h,w), logsnr (B,), labels (B,) long or None) → v̂ (B,C,h,w).

    The condition (λ Fourier embedding + class embedding with a null row for CFG) has width widths[0] and
    drives adaLN in every block of both levels. Grids with an odd side (or 1×1) skip the inner level.
    """

    def __init__(self, cfg: BaseConfig, latent_channels: int, num_classes: int = 0, *, context: bool = False):
        super().__init__()
        self.context = context
        widths, depths = list(cfg.widths), list(cfg.depths)
        self.latent_channels = latent_channels
        self.num_classes = num_classes
        self.widths = widths
        w0 = widths[0]
        cond_dim = w0
        self.cond = Conditioning(cond_dim, num_classes)
        self.proj_in = nn.Linear(2 * latent_channels + 1 if context else latent_channels, w0)

        def stack(width: int, depth: int) -> nn.ModuleList:
            return nn.ModuleList(AdaLNTransformerBlock(width, cfg.heads, cond_dim, cfg.dropout) for _ in range(depth))

        self.outer_in = stack(w0, depths[0])
        self.inner: nn.ModuleList | None = None
        if len(widths) == 2:
            w1 = widths[1]
            self.merge = nn.Linear(4 * w0, w1)
            self.inner = stack(w1, depths[1])
            self.split = nn.Linear(w1, 4 * w0)
            self.outer_out = stack(w0, depths[0])
        self.out = AdaLNOutput(w0, cond_dim, latent_channels)

    def forward(
        self,
        z_t: Tensor,
        logsnr: Tensor,
        labels: Tensor | None = None,
        context: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        """context: clean latents shaped like z_t (used where mask is 1); mask (B, 1, t, 1, 1) or z_t-broadcastable."""
        grid = tuple(z_t.shape[2:])
        h, w = grid[-2:]
        frames = grid[0] if len(grid) == 3 else 1
        cond = self.cond(logsnr, labels)
        inputs = z_t
        if self.context:
            b = z_t.shape[0]
            if mask is None or context is None:
                mask = torch.zeros((b, 1, *grid), device=z_t.device, dtype=z_t.dtype)
                context = torch.zeros_like(z_t)
            mask = mask.to(z_t.dtype).expand(b, 1, *grid)
            inputs = torch.cat([z_t, context * mask, mask], dim=1)
        x = self.proj_in(to_tokens(inputs)) + sincos_pos_embed(grid, self.widths[0], z_t.device, z_t.dtype)
        for block in self.outer_in:
            x = block(x, cond)
        if self.inner is not None:
            if h % 2 == 0 and w % 2 == 0:
                skip = x
                y = self.merge(_per_frame(merge_tokens, x, frames, h, w))
                inner_grid = (*grid[:-2], h // 2, w // 2)
                y = y + sincos_pos_embed(inner_grid, self.widths[1], y.device, y.dtype)
                for block in self.inner:
                    y = block(y, cond)
                x = skip + _per_frame(split_tokens, self.split(y), frames, h, w)
            for block in self.outer_out:
                x = block(x, cond)
        return from_tokens(self.out(x, cond), *grid)


def _per_frame(fn: Callable[[Tensor, int, int], Tensor], x: Tensor, frames: int, h: int, w: int) -> Tensor:
    """Apply a 2×2 token merge/split (on the full-resolution grid h×w) to each frame of a space-time sequence."""
    if frames == 1:
        return fn(x, h, w)
    b = x.shape[0]
    y = fn(x.reshape(b * frames, -1, x.shape[-1]), h, w)
    return y.reshape(b, -1, y.shape[-1])
