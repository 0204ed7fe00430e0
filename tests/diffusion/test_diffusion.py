"""Analytic checks that pin the constants, signs and factors of the UL losses (docs/method.md §§ 1–5, 9)."""

from __future__ import annotations

import math

import pytest
import torch

from ul_engine.diffusion import gaussian, samplers, schedule, weighting


def exact_denoiser(s: float):
    """E[x | x_t] for x ~ N(0, s²): α·s²·x_t / (α²·s² + σ²)."""

    def x_hat(z_t: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
        alpha, sigma = gaussian.alpha_sigma(logsnr)
        a = gaussian.broadcast(alpha, z_t)
        sg = gaussian.broadcast(sigma, z_t)
        return a * s**2 * z_t / (a**2 * s**2 + sg**2)

    return x_hat


def test_latent_noise_constants():
    alpha0, sigma0 = gaussian.alpha_sigma_scalar(5.0)
    assert sigma0 == pytest.approx(0.08181, abs=5e-5)
    assert alpha0 == pytest.approx(0.99665, abs=5e-5)
    assert alpha0**2 + sigma0**2 == pytest.approx(1.0)
    _, sigma10 = gaussian.alpha_sigma_scalar(10.0)
    assert sigma10 == pytest.approx(0.00674, abs=5e-5)


def test_cosine_schedule_endpoints_and_derivative():
    sched = schedule.CosineSchedule(-10.0, 5.0)
    ends = sched.logsnr(torch.tensor([0.0, 1.0]))
    assert ends[0].item() == pytest.approx(5.0, abs=1e-5)
    assert ends[1].item() == pytest.approx(-10.0, abs=1e-5)
    t = torch.linspace(0.05, 0.95, 7, dtype=torch.float64)
    h = 1e-3
    numeric = -(sched.logsnr(t + h).double() - sched.logsnr(t - h).double()) / (2 * h)
    assert torch.allclose(sched.neg_dlogsnr_dt(t).double(), numeric, rtol=1e-3)
    assert (sched.neg_dlogsnr_dt(t) > 0).all()
    assert torch.allclose(sched.t_of_logsnr(sched.logsnr(t)).double(), t, atol=1e-5)


def test_shifted_schedule_keeps_endpoints():
    sched = schedule.image_schedule(-15.0, 15.0, resolution=512, shift_ref=64)
    ends = sched.logsnr(torch.tensor([0.0, 1.0]))
    assert ends.tolist() == pytest.approx([15.0, -15.0], abs=1e-4)
    assert sched.shift == pytest.approx(2 * math.log(64 / 512))


@pytest.mark.parametrize("s", [0.5, 1.0, 1.7])
def test_prior_term_equals_gaussian_information(s: float):
    """Unweighted ELBO + KL₁ with the exact denoiser = ½·log(1 + s²·e⁵) nats per dim (within 1 %)."""
    torch.manual_seed(0)
    sched = schedule.latent_schedule(-10.0, 5.0)
    batch, dims = 4096, 64
    z = s * torch.randn(batch, dims)
    t = schedule.stratified_uniform(batch)
    logsnr, neg_d = sched.logsnr(t), sched.neg_dlogsnr_dt(t)
    noise = torch.randn_like(z)
    z_t = gaussian.q_sample(z, logsnr, noise)
    x_hat = exact_denoiser(s)(z_t, logsnr)
    term = weighting.x_space_loss(z, x_hat, logsnr, neg_d, weighting.unweighted(logsnr))
    term = term + gaussian.kl_to_standard_normal(z, -10.0)
    per_dim = term.mean().item() / dims
    expected = 0.5 * math.log(1 + s**2 * math.exp(5.0))
    assert per_dim == pytest.approx(expected, rel=0.01)
    # the same through the v-parameterisation the networks use
    v = gaussian.v_target(z, noise, logsnr)
    v_hat = gaussian.v_from_x(z_t, x_hat, logsnr)
    v_term = weighting.diffusion_loss(v, v_hat, logsnr, neg_d, weighting.unweighted(logsnr))
    x_term = weighting.x_space_loss(z, x_hat, logsnr, neg_d, weighting.unweighted(logsnr))
    assert torch.allclose(v_term, x_term, rtol=1e-3, atol=1e-4)


def test_information_number_for_s_1_7():
    assert 0.5 * math.log(1 + 1.7**2 * math.exp(5.0)) == pytest.approx(3.0318, abs=1e-4)


def test_weighting_identity_and_nonnegative():
    lam = torch.linspace(-15, 15, 301, dtype=torch.float64)
    for c in (1.3, 1.5, 2.1):
        for b in (-2.0, 0.0, 2.0):
            eps_form = weighting.sigmoid_weight(lam, b, c) * torch.exp(lam)
            x_form = weighting.x_mse_weight(lam, b, c)
            assert torch.allclose(eps_form, x_form, rtol=1e-10)
            assert (weighting.sigmoid_weight(lam, b, c) >= 0).all()
            assert (x_form >= 0).all()


def test_decoder_weight_direction_discounts_low_noise():
    """sigmoid(b − λ): the weight → c_lf at low λ (coarse) and → 0 at high λ (detail) (docs/method.md § 5)."""
    w = weighting.sigmoid_weight(torch.tensor([-15.0, 15.0]), 0.0, 1.5)
    assert w[0].item() == pytest.approx(1.5, rel=1e-5)
    assert w[1].item() < 1e-5
    lam_star = weighting.crossover_logsnr(0.0, 1.5)
    assert lam_star == pytest.approx(-0.693, abs=1e-3)
    assert weighting.sigmoid_weight(torch.tensor(lam_star), 0.0, 1.5).item() == pytest.approx(1.0)


def test_kl_at_t1_is_negligible_at_minus_10():
    z = torch.randn(1000, 16)
    kl = gaussian.kl_to_standard_normal(z, -10.0).mean().item() / 16
    assert 0 < kl < 1e-3


@pytest.mark.parametrize("sampler", samplers.SAMPLERS)
def test_samplers_reproduce_gaussian_variance(sampler: str):
    """With Gaussian data and its exact denoiser each sampler returns the data variance (within 2 %)."""
    s = 1.3
    sched = schedule.CosineSchedule(-10.0, 10.0)
    seeds = list(range(256))
    noise = samplers.PerSampleNoise(seeds)
    x = samplers.sample(exact_denoiser(s), sched.grid(96), noise, (64,), sampler=sampler, final="prediction")
    assert x.var().item() == pytest.approx(s**2, rel=0.02)


def test_state_sampling_ends_at_latent_noise_level():
    """The base model's sampler stops at λ = 5 and returns z0 ~ N(0, α0²s² + σ0²)."""
    s = 1.0
    sched = schedule.latent_schedule(-10.0, 5.0)
    noise = samplers.PerSampleNoise(range(256))
    z0 = samplers.sample(exact_denoiser(s), sched.grid(96), noise, (64,), sampler="ancestral", final="state")
    alpha0, sigma0 = gaussian.alpha_sigma_scalar(5.0)
    assert z0.var().item() == pytest.approx(alpha0**2 * s**2 + sigma0**2, rel=0.02)


def test_per_sample_seeds_do_not_depend_on_batch():
    sched = schedule.CosineSchedule(-10.0, 10.0)
    den = exact_denoiser(1.0)
    a = samplers.sample(den, sched.grid(8), samplers.PerSampleNoise([7, 8, 9]), (5,), final="prediction")
    b = samplers.sample(den, sched.grid(8), samplers.PerSampleNoise([8]), (5,), final="prediction")
    assert torch.allclose(a[1], b[0])


def test_callback_can_cancel():
    sched = schedule.CosineSchedule(-10.0, 10.0)
    seen = []

    def cb(info: samplers.StepInfo) -> bool:
        seen.append(info.index)
        return info.index == 2

    with pytest.raises(samplers.SamplingCancelled):
        samplers.sample(exact_denoiser(1.0), sched.grid(10), samplers.PerSampleNoise([0]), (3,), callback=cb)
    assert seen == [0, 1, 2]
