"""Deterministic convolutional encoder E: image x ∈ [−1, 1] → z_clean (docs/method.md § 3).

UL keeps the encoder deterministic (a learned variance collapses at λ_z(0) = 5, ablation D) and gives it no
output activation or normalisation: the scale of z_clean is free, and the fixed latent noise σ₀ sets its
precision. It is unconditional (no λ).
"""

from __future__ import annotations

from torch import Tensor, nn

from ul_engine.core.config import EncoderConfig
from ul_engine.nets.blocks import ResBlock, conv_nd, down_conv, group_norm, patchify


class Encoder(nn.Module):
    """patchify → conv3 → ResNet stages with stride-2 convs between them → GroupNorm, SiLU, conv1 → C.

    Downsamples by `cfg.patch · 2^(len(cfg.channels) − 1)`; fully convolutional, so any H, W that are
    multiples of that work. The video encoder is the same layout with 3D convolutions (`dims=3`) on
    (B, 3, T, H, W) clips; its first `time_halvings` stride-2 convs also halve T.
    """

    def __init__(
        self, cfg: EncoderConfig, latent_channels: int, in_channels: int = 3, *, dims: int = 2, time_halvings: int = 0
    ):
        super().__init__()
        chans = list(cfg.channels)
        self.patch = cfg.patch
        self.downsample = cfg.patch * 2 ** (len(chans) - 1)
        self.conv_in = conv_nd(dims, in_channels * cfg.patch**2, chans[0], 3, padding=1)
        layers: list[nn.Module] = []
        for i, c in enumerate(chans):
            last = i == len(chans) - 1
            layers += [ResBlock(c, c, None, dims=dims) for _ in range(cfg.final_blocks if last else cfg.blocks)]
            if not last:
                layers.append(down_conv(dims, c, chans[i + 1], halve_time=i < time_halvings))
        self.body = nn.Sequential(*layers)
        self.head = nn.Sequential(group_norm(chans[-1]), nn.SiLU(), conv_nd(dims, chans[-1], latent_channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) → z_clean (B, C, H/d, W/d); clips (B, 3, T, H, W) → (B, C, T/f, H/d, W/d)."""
        return self.head(self.body(self.conv_in(patchify(x, self.patch))))
