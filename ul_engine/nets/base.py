"""Stage-2 base model: a two-level latent transformer (spec §4: "2-stage ViT, channels [512, 1024], blocks
[6, 16], dropout 0.1", patch 1 on the latent grid).

Level 1 runs at the latent resolution; level 2 merges 2×2 tokens (a quarter of the tokens, so the wide
level is cheap), then splits back and adds the level-1 skip — an HDiT/U-ViT hourglass. Level 1 therefore has
depths[0] blocks before and depths[0] after the inner level.
"""

from __future__ import annotations

from torch import Tensor, nn

from ul_engine.config import BaseConfig
from ul_engine.nets.blocks import (
    AdaLNOutput,
    AdaLNTransformerBlock,
    from_tokens,
    merge_tokens,
    sincos_pos_embed_2d,
    split_tokens,
    to_tokens,
)
from ul_engine.nets.prior import Conditioning


class BaseModel(nn.Module):
    """forward(z_t (B,C,h,w), logsnr (B,), labels (B,) long or None) → v̂ (B,C,h,w).

    The condition (λ Fourier embedding + class embedding with a null row for CFG) has width widths[0] and
    drives adaLN in every block of both levels. Grids with an odd side (or 1×1) skip the inner level.
    """

    def __init__(self, cfg: BaseConfig, latent_channels: int, num_classes: int = 0):
        super().__init__()
        widths, depths = list(cfg.widths), list(cfg.depths)
        self.latent_channels = latent_channels
        self.num_classes = num_classes
        self.widths = widths
        w0 = widths[0]
        cond_dim = w0
        self.cond = Conditioning(cond_dim, num_classes)
        self.proj_in = nn.Linear(latent_channels, w0)

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

    def forward(self, z_t: Tensor, logsnr: Tensor, labels: Tensor | None = None) -> Tensor:
        _, _, h, w = z_t.shape
        cond = self.cond(logsnr, labels)
        x = self.proj_in(to_tokens(z_t)) + sincos_pos_embed_2d(h, w, self.widths[0], z_t.device, z_t.dtype)
        for block in self.outer_in:
            x = block(x, cond)
        if self.inner is not None:
            if h % 2 == 0 and w % 2 == 0:
                skip = x
                y = self.merge(merge_tokens(x, h, w))
                y = y + sincos_pos_embed_2d(h // 2, w // 2, self.widths[1], y.device, y.dtype)
                for block in self.inner:
                    y = block(y, cond)
                x = skip + split_tokens(self.split(y), h, w)
            for block in self.outer_out:
                x = block(x, cond)
        return from_tokens(self.out(x, cond), h, w)
