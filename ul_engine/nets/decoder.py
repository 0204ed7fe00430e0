"""Diffusion decoder D: a residual U-ViT (SiD2 style) in pixel space, conditioned on the noisy latent z₀.

docs/method.md § 5 [default]: z₀ enters twice — nearest-upsampled and concatenated to x_t at the input, and through a
learned linear projection added to the middle transformer's tokens, which sit at the latent's resolution.
λ_x conditions every ResBlock (FiLM) and transformer block (adaLN). One skip per resolution, no blockwise skips.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from ul_engine.core.config import DecoderConfig
from ul_engine.nets.blocks import (
    AdaLNTransformerBlock,
    FourierLogSNREmbedding,
    ResBlock,
    conv_nd,
    down_conv,
    from_tokens,
    group_norm,
    nearest_up,
    patchify,
    scale_factor,
    sincos_pos_embed,
    to_tokens,
    unpatchify,
    zero_,
)


class Upsample(nn.Module):
    """Nearest ×2 then conv3 (no checkerboard artefacts, unlike a transposed conv); 3D: T ×2 too if asked."""

    def __init__(self, channels_in: int, channels_out: int, *, dims: int = 2, double_time: bool = False):
        super().__init__()
        self.conv = conv_nd(dims, channels_in, channels_out, 3, padding=1)
        self.factor = scale_factor(dims, 2, 2 if double_time else 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(nearest_up(x, self.factor))


class DecoderCondition(NamedTuple):
    """What the decoder derives from z0 alone: z0 upsampled to the input's size and z0's token projection.

    Sampling evaluates the decoder at every step with the same z0, so a sampler computes this once per decode
    (`Decoder.condition`) and passes it to every step; the values are exactly the ones `forward` would compute.
    """

    z_up: Tensor
    z_tokens: Tensor


class Decoder(nn.Module):
    """forward(x_t (B,3,H,W), z0 (B,C,h,w), logsnr (B,)) → v̂ (B,3,H,W), with H = h·d, d = patch · 2^len(channels).

    Layout: concat[x_t, up(z0)] → patchify → conv3 → per level: ResBlocks, save skip, stride-2 conv → after the
    last level Linear to `width` tokens + Linear(z0) + sincos positions → adaLN transformer → LayerNorm, Linear back
    to channels → per level (reversed): nearest+conv up, add that level's skip, ResBlocks → GroupNorm, SiLU,
    zero-init conv3 → unpatchify. Fully convolutional around the transformer.

    The video decoder (`dims=3`) is the same net with 3D convolutions on (B, 3, T, H, W) clips; its first
    `time_halvings` levels also halve (and on the way up double) T, and the transformer runs over the
    T'·h·w space-time tokens of the latent.
    """

    def __init__(
        self, cfg: DecoderConfig, latent_channels: int, out_channels: int = 3, *, dims: int = 2, time_halvings: int = 0
    ):
        super().__init__()
        chans = list(cfg.channels)
        self.patch = cfg.patch
        self.width = cfg.width
        self.dims = dims
        self.downsample = cfg.patch * 2 ** len(chans)
        self.time_downsample = 2**time_halvings
        cond_dim = cfg.width
        self.logsnr_embed = FourierLogSNREmbedding(cond_dim)
        self.conv_in = conv_nd(dims, (out_channels + latent_channels) * cfg.patch**2, chans[0], 3, padding=1)

        self.down_blocks = nn.ModuleList()
        self.down_samplers = nn.ModuleList()
        for i, c in enumerate(chans):
            self.down_blocks.append(
                nn.ModuleList(ResBlock(c, c, cond_dim, cfg.dropout, dims=dims) for _ in range(cfg.blocks))
            )
            c_next = chans[i + 1] if i + 1 < len(chans) else c
            self.down_samplers.append(down_conv(dims, c, c_next, halve_time=i < time_halvings))

        self.mid_in = nn.Linear(chans[-1], cfg.width)
        self.z_proj = nn.Linear(latent_channels, cfg.width)
        self.mid_blocks = nn.ModuleList(
            AdaLNTransformerBlock(cfg.width, cfg.heads, cond_dim, cfg.dropout) for _ in range(cfg.depth)
        )
        self.mid_norm = nn.LayerNorm(cfg.width, eps=1e-6)
        self.mid_out = nn.Linear(cfg.width, chans[-1])

        self.up_samplers = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        for i in reversed(range(len(chans))):
            c_prev = chans[i + 1] if i + 1 < len(chans) else chans[-1]
            self.up_samplers.append(Upsample(c_prev, chans[i], dims=dims, double_time=i < time_halvings))
            self.up_blocks.append(
                nn.ModuleList(ResBlock(chans[i], chans[i], cond_dim, cfg.dropout, dims=dims) for _ in range(cfg.blocks))
            )
        self.head = nn.Sequential(
            group_norm(chans[0]),
            nn.SiLU(),
            zero_(conv_nd(dims, chans[0], out_channels * cfg.patch**2, 3, padding=1)),
        )

    def condition(self, z0: Tensor) -> DecoderCondition:
        """The z0-only inputs of `forward`, to compute once per decode rather than at every sampling step."""
        z_up = nearest_up(z0, scale_factor(self.dims, self.downsample, self.time_downsample))
        return DecoderCondition(z_up, self.z_proj(to_tokens(z0)))

    def forward(self, x_t: Tensor, z0: Tensor, logsnr: Tensor, condition: DecoderCondition | None = None) -> Tensor:
        """`condition`: `self.condition(z0)` computed beforehand (sampling reuses it at every step)."""
        height, width = x_t.shape[-2:]
        if height % self.downsample or width % self.downsample:
            raise ValueError(f"decoder input {height}×{width} is not a multiple of its downsampling {self.downsample}")
        h, w = height // self.downsample, width // self.downsample
        grid: tuple[int, ...] = (h, w)
        if self.dims == 3:
            frames = x_t.shape[2]
            if frames % self.time_downsample:
                raise ValueError(f"decoder input of {frames} frames is not a multiple of {self.time_downsample}")
            grid = (frames // self.time_downsample, h, w)
        if tuple(z0.shape[2:]) != grid:
            raise ValueError(f"latent {tuple(z0.shape[2:])} does not match input {tuple(x_t.shape[2:])}")
        if condition is None:
            condition = self.condition(z0)
        cond = self.logsnr_embed(logsnr)

        x = self.conv_in(patchify(torch.cat([x_t, condition.z_up], dim=1), self.patch))
        skips: list[Tensor] = []
        for blocks, down in zip(self.down_blocks, self.down_samplers, strict=True):
            for block in blocks:
                x = block(x, cond)
            skips.append(x)
            x = down(x)

        tokens = self.mid_in(to_tokens(x)) + condition.z_tokens
        tokens = tokens + sincos_pos_embed(grid, self.width, x.device, tokens.dtype)
        for block in self.mid_blocks:
            tokens = block(tokens, cond)
        x = from_tokens(self.mid_out(self.mid_norm(tokens)), *grid)

        for up, blocks in zip(self.up_samplers, self.up_blocks, strict=True):
            x = up(x) + skips.pop()
            for block in blocks:
                x = block(x, cond)
        return unpatchify(self.head(x), self.patch)
