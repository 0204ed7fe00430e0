"""The stage-1 and stage-2 losses as wired into the real networks: units, gradients, scaling."""

from __future__ import annotations

import torch

from ul_engine.core.config import resolve, validate
from ul_engine.model import LatentBase, UnifiedLatents


def _randomise_zero_init(model: torch.nn.Module) -> None:
    """Zero-initialised output layers block gradients at step 0; give them small weights."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.abs().sum() == 0:
                p.copy_(0.02 * torch.randn(p.shape, generator=g))


def smoke_model(**overrides: object) -> UnifiedLatents:
    torch.manual_seed(0)
    cfg = resolve("smoke", [f"{k}={v}" for k, v in overrides.items()])
    return UnifiedLatents(cfg)


def test_terms_are_per_example_nats_and_finite():
    model = smoke_model()
    x = torch.rand(6, 3, 16, 16) * 2 - 1
    losses = model.stage1_losses(x)
    for term in (losses.prior_diffusion, losses.prior_kl1, losses.decoder, losses.decoder_elbo):
        assert term.shape == (6,)
        assert torch.isfinite(term).all()
        assert (term >= 0).all()
    assert losses.latent_dims == 4 * 4 * 4
    assert losses.pixels == 16 * 16
    m = losses.metrics()
    assert abs(m["rate/bits_per_pixel"] * 256 - m["rate/bits_per_latent_dim"] * 64) < 1e-4
    assert abs(losses.loss().item() - (losses.rate + losses.decoder).mean().item()) < 1e-5


def test_latent_noise_is_fixed_at_logsnr_5():
    model = smoke_model()
    assert abs(model.sigma0 - 0.08181) < 5e-5
    assert abs(model.alpha0 - 0.99665) < 5e-5
    assert model.latent_schedule.logsnr_max == 5.0


def test_doubling_image_side_quadruples_decoder_term():
    """Sums over pixels, not means: 4× the pixels → ≈ 4× the decoder term (zero-init decoder, v̂ = 0)."""
    model = smoke_model()
    torch.manual_seed(1)
    small = torch.rand(512, 3, 16, 16) * 2 - 1
    big = torch.nn.functional.interpolate(small, scale_factor=2, mode="nearest")
    with torch.no_grad():
        z_small = model.noisy_latent(model.encode(small))
        z_big = model.noisy_latent(model.encode(big))
        d_small = model.decoder_terms(small, z_small)[0].mean()
        d_big = model.decoder_terms(big, z_big)[0].mean()
    ratio = (d_big / d_small).item()
    assert 3.5 < ratio < 4.5, ratio


def test_encoder_gets_gradient_from_each_term_alone():
    model = smoke_model()
    _randomise_zero_init(model)
    x = torch.rand(4, 3, 16, 16) * 2 - 1

    def encoder_grad(which: str) -> float:
        model.zero_grad(set_to_none=True)
        z_clean = model.encode(x)
        if which == "prior":
            diffusion, kl1 = model.prior_terms(z_clean)
            (diffusion + kl1).mean().backward()
        else:
            model.decoder_terms(x, model.noisy_latent(z_clean))[0].mean().backward()
        return sum(p.grad.abs().sum().item() for p in model.encoder.parameters() if p.grad is not None)

    assert encoder_grad("prior") > 0
    assert encoder_grad("decoder") > 0


def test_loss_factor_scales_decoder_term_only():
    x = torch.rand(8, 3, 16, 16) * 2 - 1
    terms = []
    for c in (1.0, 2.0):
        model = smoke_model(**{"loss.loss_factor": c})
        torch.manual_seed(3)
        terms.append(model.stage1_losses(x))
    assert torch.allclose(terms[1].decoder, 2 * terms[0].decoder, rtol=1e-5)
    assert torch.allclose(terms[1].prior_diffusion, terms[0].prior_diffusion, rtol=1e-5)


def test_stage2_losses_and_guided_sampling_shapes():
    torch.manual_seed(0)
    cfg = validate({**resolve("smoke").to_dict(), "stage": 2})
    base = LatentBase(cfg)
    z = torch.randn(8, 4, 4, 4)
    labels = torch.randint(0, 4, (8,))
    losses = base.losses(z, labels)
    assert losses.weighted.shape == (8,) and torch.isfinite(losses.elbo).all()
    assert (losses.elbo >= losses.weighted * 0).all()
    base.eval()
    z0 = base.sample(3, steps=4, seeds=[1, 2, 3], labels=torch.tensor([0, 1, 2]), guidance=2.0)
    assert z0.shape == (3, 4, 4, 4) and torch.isfinite(z0).all()
