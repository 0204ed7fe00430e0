"""Latent diffusion transformer: the stage-1 prior P (docs/method.md § 4).

A single-level ViT over the latent grid with patch size 1 (the paper finds that patching latents hurts), v-prediction,
conditioned on λ_z by Fourier features → MLP → adaLN-Zero, and optionally on a class label (added to the λ
embedding, with a null row for classifier-free guidance).
"""

from __future__ import annotations

from torch import Tensor, nn

from ul_engine.core.config import PriorConfig
from ul_engine.nets.blocks import (
    AdaLNOutput,
    AdaLNTransformerBlock,
    FourierLogSNREmbedding,
    from_tokens,
    sincos_pos_embed,
    to_tokens,
)


class Conditioning(nn.Module):
    """λ embedding plus an optional class embedding with a trailing "no label" row (index num_classes).

    labels=None, or a label equal to `num_classes`, selects the null row — that is how the trainer drops
    labels and how the sampler gets the unconditional branch of CFG. With num_classes=0 labels are ignored.
    """

    def __init__(self, dim: int, num_classes: int = 0):
        super().__init__()
        self.num_classes = num_classes
        self.logsnr = FourierLogSNREmbedding(dim)
        self.classes = nn.Embedding(num_classes + 1, dim) if num_classes > 0 else None
        if self.classes is not None:
            nn.init.normal_(self.classes.weight, std=0.02)

    def forward(self, logsnr: Tensor, labels: Tensor | None = None) -> Tensor:
        cond = self.logsnr(logsnr)
        if self.classes is None:
            return cond
        if labels is None:
            return cond + self.classes.weight[self.num_classes]
        return cond + self.classes(labels)


class LatentTransformer(nn.Module):
    """ViT on latent positions: Linear(C → width) tokens + sincos 2D positions, `depth` adaLN-Zero blocks,
    adaLN LayerNorm + zero-initialised Linear back to C. forward(z_t, logsnr, labels) → v̂ with z_t's shape.
    """

    def __init__(
        self,
        latent_channels: int,
        width: int,
        depth: int,
        heads: int,
        *,
        num_classes: int = 0,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.latent_channels = latent_channels
        self.width = width
        self.num_classes = num_classes
        self.cond = Conditioning(width, num_classes)
        self.proj_in = nn.Linear(latent_channels, width)
        self.blocks = nn.ModuleList(AdaLNTransformerBlock(width, heads, width, dropout) for _ in range(depth))
        self.out = AdaLNOutput(width, width, latent_channels)

    @classmethod
    def from_config(cls, cfg: PriorConfig, latent_channels: int, num_classes: int = 0) -> LatentTransformer:
        # No dropout in the prior (the paper gives it none); PriorConfig has no dropout field.
        return cls(latent_channels, cfg.width, cfg.depth, cfg.heads, num_classes=num_classes)

    def forward(self, z_t: Tensor, logsnr: Tensor, labels: Tensor | None = None) -> Tensor:
        """z_t (B, C, h, w) or (B, C, t, h, w), logsnr (B,), labels (B,) long or None → v̂ with z_t's shape."""
        grid = tuple(z_t.shape[2:])
        cond = self.cond(logsnr, labels)
        x = self.proj_in(to_tokens(z_t)) + sincos_pos_embed(grid, self.width, z_t.device, z_t.dtype)
        for block in self.blocks:
            x = block(x, cond)
        return from_tokens(self.out(x, cond), *grid)


Prior = LatentTransformer
