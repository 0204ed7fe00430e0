"""Loss weightings on the ε-MSE, and the per-example continuous-time diffusion loss built on them.

The ε-MSE weight w_ε(λ) is what Eqs. 2–4 of the paper multiply (exp(λ)·‖x − x̂‖² = ‖ε − ε̂‖²):
  - prior (rate) term: w_ε ≡ 1, the unweighted ELBO;
  - decoder term: c_lf·sigmoid(b − λ), not sigmoid(λ − b) (the paper's two forms are resolved in docs/method.md § 5);
  - stage-2 base model: sigmoid(b_base − λ).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def unweighted(logsnr: Tensor) -> Tensor:
    return torch.ones_like(logsnr)


def sigmoid_weight(logsnr: Tensor, bias: float, factor: float = 1.0) -> Tensor:
    """w_ε(λ) = factor·sigmoid(bias − λ): ≈ factor at low λ (coarse content), → 0 at high λ (detail)."""
    return factor * torch.sigmoid(bias - logsnr)


def x_mse_weight(logsnr: Tensor, bias: float, factor: float = 1.0) -> Tensor:
    """The same weight on ‖x − x̂‖² in stable form: factor·e^b·sigmoid(λ − b) = factor·sigmoid(b − λ)·e^λ."""
    return factor * math.exp(bias) * torch.sigmoid(logsnr - bias)


def crossover_logsnr(bias: float, factor: float) -> float:
    """λ* where c_lf·sigmoid(b − λ) = 1: below it information is cheaper in the latent (c_lf > 1 only)."""
    if factor <= 1.0:
        return -math.inf
    return bias + math.log(factor - 1.0)


def translated_sigmoid_bias(resolution: int, bias: float = 0.0, stated_at: int = 512) -> float:
    """The bias at `resolution` px that weights like `bias` at `stated_at` px in resolution-equivalent log-SNR.

    Average-pooling k×k pixels multiplies the SNR by k², so λ at d px reads content of a given relative size
    like λ + 2·log(d/d_ref) at d_ref px (simple diffusion's schedule shift rests on the same fact).
    sigmoid(b − λ) is the same function of that equivalent log-SNR at every side when b + 2·log d is
    constant: b' = b + 2·log(stated_at / resolution). Derivation and numbers: docs/method.md § 12.
    """
    return bias + 2.0 * math.log(stated_at / resolution)


def decoder_sigmoid_bias(sigmoid_bias: float, stated_at: int, resolution: int) -> float:
    """The decoder's b: `loss.sigmoid_bias` as given, or translated from `loss.sigmoid_bias_resolution` px."""
    return translated_sigmoid_bias(resolution, sigmoid_bias, stated_at) if stated_at else sigmoid_bias


def diffusion_loss(v: Tensor, v_hat: Tensor, logsnr: Tensor, neg_dlogsnr_dt: Tensor, eps_weight: Tensor) -> Tensor:
    """½·(−dλ/dt)·w_ε(λ)·‖ε − ε̂‖², computed as ½·(−dλ/dt)·w_ε·α²·‖v − v̂‖², summed per example (nats).

    ‖ε − ε̂‖² = e^λ·‖x − x̂‖² = α²·‖v − v̂‖²; the v form stays finite at both ends of the λ range.
    """
    sq = (v.float() - v_hat.float()).pow(2).flatten(1).sum(dim=1)
    alpha_sq = torch.sigmoid(logsnr.float())
    return 0.5 * neg_dlogsnr_dt.float() * eps_weight.float() * alpha_sq * sq


def x_space_loss(x: Tensor, x_hat: Tensor, logsnr: Tensor, neg_dlogsnr_dt: Tensor, eps_weight: Tensor) -> Tensor:
    """The same loss written on x̂ (as in the paper's equations); used by analytic tests."""
    sq = (x.float() - x_hat.float()).pow(2).flatten(1).sum(dim=1)
    return 0.5 * neg_dlogsnr_dt.float() * eps_weight.float() * torch.exp(logsnr.float()) * sq


__all__ = [
    "crossover_logsnr",
    "decoder_sigmoid_bias",
    "diffusion_loss",
    "sigmoid_weight",
    "translated_sigmoid_bias",
    "unweighted",
    "x_mse_weight",
    "x_space_loss",
]
