"""The UL networks: encoder E, latent prior P, pixel decoder D (stage 1) and the base model (stage 2).

`build_*` turn a resolved `ModelConfig` into modules; `parameter_counts` sizes a config without allocating
weights (built on the meta device), so the GUI can show model sizes for paper-scale presets instantly.
"""

from __future__ import annotations

import torch
from torch import nn

from ul_engine.core.config import ModelConfig
from ul_engine.nets.base import BaseModel
from ul_engine.nets.blocks import (
    AdaLNTransformerBlock,
    FourierLogSNREmbedding,
    ResBlock,
    patchify,
    sincos_pos_embed_2d,
    unpatchify,
)
from ul_engine.nets.decoder import Decoder
from ul_engine.nets.encoder import Encoder
from ul_engine.nets.prior import LatentTransformer, Prior

__all__ = [
    "AdaLNTransformerBlock",
    "BaseModel",
    "Decoder",
    "Encoder",
    "FourierLogSNREmbedding",
    "LatentTransformer",
    "Prior",
    "ResBlock",
    "build_base",
    "build_decoder",
    "build_encoder",
    "build_prior",
    "count_parameters",
    "parameter_counts",
    "patchify",
    "sincos_pos_embed_2d",
    "unpatchify",
]


def _time(model_cfg: ModelConfig) -> dict[str, int]:
    """3D convolutions and temporal halvings for video models; the image nets otherwise (same classes)."""
    return {"dims": 3 if model_cfg.time_axis else 2, "time_halvings": model_cfg.time_halvings()}


def build_encoder(model_cfg: ModelConfig, latent_channels: int | None = None) -> Encoder:
    return Encoder(model_cfg.encoder, latent_channels or model_cfg.latent_channels, **_time(model_cfg))


def build_prior(model_cfg: ModelConfig, num_classes: int = 0) -> LatentTransformer:
    return LatentTransformer.from_config(model_cfg.prior, model_cfg.latent_channels, num_classes)


def build_decoder(model_cfg: ModelConfig) -> Decoder:
    return Decoder(model_cfg.decoder, model_cfg.latent_channels, **_time(model_cfg))


def build_base(model_cfg: ModelConfig, num_classes: int = 0) -> BaseModel:
    context = model_cfg.time_axis and model_cfg.base.context_frames > 0
    return BaseModel(model_cfg.base, model_cfg.latent_channels, num_classes, context=context)


def count_parameters(module: nn.Module) -> int:
    """All parameters, trainable or frozen (a frozen stage-2 encoder still counts)."""
    return sum(p.numel() for p in module.parameters())


def parameter_counts(model_cfg: ModelConfig, num_classes: int = 0) -> dict[str, int]:
    """Parameters of each net and of stage 1 (E + P + D) for a config; builds on the meta device (no memory).

    `num_classes` sizes the class tables of the base model (the prior is built unconditional, as in stage 1).
    """
    with torch.device("meta"):
        counts = {
            "encoder": count_parameters(build_encoder(model_cfg)),
            "prior": count_parameters(build_prior(model_cfg)),
            "decoder": count_parameters(build_decoder(model_cfg)),
            "base": count_parameters(build_base(model_cfg, num_classes)),
        }
    counts["stage1"] = counts["encoder"] + counts["prior"] + counts["decoder"]
    return counts
