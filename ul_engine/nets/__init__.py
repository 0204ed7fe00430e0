"""The UL networks: encoder E, latent prior P, pixel decoder D (stage 1) and the base model (stage 2).

`build_*` turn a resolved `ModelConfig` into modules; `parameter_counts` sizes a config without allocating
weights (built on the meta device), so the GUI can show model sizes for paper-scale presets instantly.
"""

from __future__ import annotations

import torch
from torch import nn

from ul_engine.config import ModelConfig
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


def build_encoder(model_cfg: ModelConfig) -> Encoder:
    return Encoder(model_cfg.encoder, model_cfg.latent_channels)


def build_prior(model_cfg: ModelConfig, num_classes: int = 0) -> LatentTransformer:
    return LatentTransformer.from_config(model_cfg.prior, model_cfg.latent_channels, num_classes)


def build_decoder(model_cfg: ModelConfig) -> Decoder:
    return Decoder(model_cfg.decoder, model_cfg.latent_channels)


def build_base(model_cfg: ModelConfig, num_classes: int = 0) -> BaseModel:
    return BaseModel(model_cfg.base, model_cfg.latent_channels, num_classes)


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
