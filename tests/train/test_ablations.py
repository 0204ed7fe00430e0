"""The paper's ablation switches (Tables 5–6): each is wired, and changes the loss the way the paper says."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ul_engine.core.config import AblationConfig, resolve
from ul_engine.core.errors import ConfigError
from ul_engine.diffusion import gaussian, schedule, weighting
from ul_engine.model import UnifiedLatents


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models: one thread is fastest, and spares the cores that others share."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def smoke_model(*overrides: str) -> UnifiedLatents:
    torch.manual_seed(0)
    return UnifiedLatents(resolve("smoke", list(overrides)))


def _randomise_zero_init(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.abs().sum() == 0:
                p.copy_(0.02 * torch.randn(p.shape, generator=g))


class ExactPrior(nn.Module):
    """The optimal denoiser for z_clean ~ N(0, s²), in the v-parameterisation the prior net uses."""

    def __init__(self, s: float) -> None:
        super().__init__()
        self.s = s

    def forward(self, z_t: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
        alpha, sigma = gaussian.alpha_sigma(logsnr)
        a, sg = gaussian.broadcast(alpha, z_t), gaussian.broadcast(sigma, z_t)
        x_hat = a * self.s**2 * z_t / (a**2 * self.s**2 + sg**2)
        return gaussian.v_from_x(z_t, x_hat, logsnr)


def _encoder_grad(model: UnifiedLatents, loss: torch.Tensor) -> float:
    model.zero_grad(set_to_none=True)
    loss.backward(retain_graph=True)
    return sum(p.grad.abs().sum().item() for p in model.encoder.parameters() if p.grad is not None)


# ----------------------------------------------------------------------------------------------


def test_defaults_are_off_and_leave_ul_losses_bit_identical():
    model = smoke_model()
    assert model.cfg.ablation == AblationConfig() and model.cfg.ablation.is_default()
    x = torch.rand(6, 3, 16, 16) * 2 - 1
    torch.manual_seed(7)
    losses = model.stage1_losses(x)
    torch.manual_seed(7)  # the same draws, by hand: L = L_z + L_x exactly as before the switches existed
    z_clean = model.encoder(x)
    diffusion, kl1 = model.prior_terms(z_clean)
    decoder, elbo = model.decoder_terms(x, model.noisy_latent(z_clean))
    assert torch.equal(losses.prior_diffusion, diffusion) and torch.equal(losses.prior_kl1, kl1)
    assert torch.equal(losses.decoder, decoder) and torch.equal(losses.decoder_elbo, elbo)
    assert torch.equal(losses.total, diffusion + kl1 + decoder)
    assert losses.prior_kl_normal is None and losses.entropy is None
    assert not any(k in losses.metrics() for k in ("loss/prior_kl_normal", "loss/encoder_entropy"))


def test_ablation_section_validates():
    with pytest.raises(ConfigError, match=r"ablation\.prior"):
        resolve("smoke", ["ablation.prior=gaussian"])
    with pytest.raises(ConfigError, match="unknown field"):
        resolve("smoke", ["ablation.stopgrad=true"])
    with pytest.raises(ConfigError, match="prior_stop_gradient"):
        resolve("smoke", ["ablation.prior=normal", "ablation.prior_stop_gradient=true"])
    with pytest.raises(ConfigError, match="out of range"):
        resolve("smoke", ["ablation.normal_kl_weight=-1"])


def test_normal_prior_charges_a_higher_rate_for_the_same_latent():
    """Table 5: for z_clean ~ N(0, s²) the optimal diffusion prior charges ½·log(1 + s²·e⁵) per dim;
    N(0, I) on z0 charges ½·(α0²s² + σ0² − 1 − log σ0²), more (≥ 2 nats/dim even for s → 0)."""
    s, dims, batch = 0.5, 64, 2048
    torch.manual_seed(0)
    z = s * torch.randn(batch, 4, 4, 4)
    ul = smoke_model()
    ul.prior = ExactPrior(s)
    diffusion_rate = ul.estimate_rate(z, draws=8).mean().item() / dims
    assert diffusion_rate == pytest.approx(0.5 * math.log(1 + s**2 * math.exp(5.0)), rel=0.02)

    normal = smoke_model("ablation.prior=normal")
    a0, s0 = normal.alpha0, normal.sigma0
    closed = 0.5 * (a0**2 * s**2 + s0**2 - 1 - math.log(s0**2))
    normal_rate = normal.estimate_rate(z).mean().item() / dims
    assert normal_rate == pytest.approx(closed, rel=0.02)
    assert normal_rate > diffusion_rate + 0.25
    # the training loss charges exactly that KL, and the diffusion prior is out of the loss and the optimiser
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    losses = normal.stage1_losses(x)
    z_clean = normal.encode(x)
    assert losses.prior_diffusion is None and losses.prior_kl1 is None
    assert torch.allclose(losses.rate, normal.normal_kl(z_clean), rtol=1e-5)
    assert torch.allclose(losses.total, losses.prior_kl_normal + losses.decoder, rtol=1e-6)
    assert not any(p.requires_grad for p in normal.prior.parameters())
    assert "loss/prior_diffusion" not in losses.metrics()
    assert normal.sample_prior(3, steps=4, seeds=[1, 2, 3]).std().item() == pytest.approx(1.0, abs=0.35)


def test_prior_stop_gradient_leaves_the_encoder_to_the_normal_kl():
    """Table 6 A: the prior's terms no longer reach the encoder; a (discounted) N(0, I) KL does."""
    model = smoke_model("ablation.prior_stop_gradient=true", "ablation.normal_kl_weight=0.25")
    _randomise_zero_init(model)
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    losses = model.stage1_losses(x)
    assert _encoder_grad(model, (losses.prior_diffusion + losses.prior_kl1).mean()) == 0.0
    assert sum(p.grad.abs().sum().item() for p in model.prior.parameters() if p.grad is not None) > 0
    assert _encoder_grad(model, losses.prior_kl_normal.mean()) > 0
    expected = losses.prior_diffusion + losses.prior_kl1 + 0.25 * losses.prior_kl_normal + losses.decoder
    assert torch.allclose(losses.total, expected, rtol=1e-6)
    # the reported rate is still the prior's estimate of the bits, not the regulariser
    assert torch.allclose(losses.rate, losses.prior_diffusion + losses.prior_kl1)
    # without the switch the same prior terms do reach the encoder
    ul = smoke_model()
    _randomise_zero_init(ul)
    ul_losses = ul.stage1_losses(x)
    assert _encoder_grad(ul, (ul_losses.prior_diffusion + ul_losses.prior_kl1).mean()) > 0


def test_latent_logsnr_10_shrinks_the_latent_noise():
    """Table 6 B: λ_z(0) = 10 gives σ0 = 0.00674, and the prior's schedule ends there."""
    model = smoke_model("loss.latent_logsnr_max=10")
    assert model.sigma0 == pytest.approx(0.00674, abs=5e-6)
    assert model.latent_schedule.logsnr_max == 10.0
    z = torch.randn(2, 4, 4, 4)
    noise = torch.randn_like(z)
    assert (model.noisy_latent(z, noise) - model.alpha0 * z).abs().max().item() < 0.04


def test_mse_decoder_term_has_no_logsnr_dependence():
    model = smoke_model("ablation.decoder_loss=mse")
    _randomise_zero_init(model)
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    z0 = model.noisy_latent(model.encode(x)).detach()
    with torch.no_grad():
        terms = []
        for seed in (1, 2, 3):
            torch.manual_seed(seed)
            terms.append(model.decoder_terms(x, z0)[0])
        x_hat = model.deterministic_decode(z0)
    assert torch.equal(terms[0], terms[1]) and torch.equal(terms[0], terms[2])
    assert torch.allclose(terms[0], model.mse_decoder_weight() * (x - x_hat).pow(2).flatten(1).sum(1), rtol=1e-5)
    # decoding is deterministic: D(z0), whatever the steps and seeds
    assert torch.equal(model.decode(z0, steps=4, seeds=[0, 1, 2, 3]), model.decode(z0, steps=9, seeds=[5, 6, 7, 8]))
    # the diffusion decoder's term, by contrast, depends on the sampled λ
    ul = smoke_model()
    _randomise_zero_init(ul)
    with torch.no_grad():
        torch.manual_seed(1)
        a = ul.decoder_terms(x, z0)[0]
        torch.manual_seed(2)
        b = ul.decoder_terms(x, z0)[0]
    assert not torch.allclose(a, b)


def test_mse_weight_is_the_diffusion_weight_on_a_decoder_that_ignores_x_t():
    """∫ ½·(−dλ/dt)·c_lf·e^b·sigmoid(λ − b)·‖x − x̂‖² dt for a fixed x̂ = mse_decoder_weight()·‖x − x̂‖²."""
    for lf, b in ((1.5, 0.0), (3.0, -2.0), (10.0, 2.0)):
        model = smoke_model("ablation.decoder_loss=mse", f"loss.loss_factor={lf}", f"loss.sigmoid_bias={b}")
        sched = model.image_schedule
        t = (torch.arange(200_000, dtype=torch.float64) + 0.5) / 200_000
        logsnr, neg_d = sched.logsnr(t), sched.neg_dlogsnr_dt(t)
        weight = weighting.x_mse_weight(logsnr.double(), b, lf)
        integral = (0.5 * neg_d.double() * weight).mean().item()
        assert integral == pytest.approx(model.mse_decoder_weight(), rel=2e-3)
    assert smoke_model("ablation.decoder_loss=mse").mse_decoder_weight() == pytest.approx(7.5, rel=1e-4)


def test_learned_variance_adds_the_entropy_term():
    """Table 6 D: 2·C encoder channels; L_e = −½·Σ log(σ_z²·e^{λ_z(0)} + 1), which turns the KL of a
    sample into the KL of the whole Gaussian posterior (checked on the N(0, I) prior in closed form)."""
    model = smoke_model("ablation.learned_variance=true")
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    assert model.encoder(x).shape == (4, 8, 4, 4)
    mean, logvar = model.encode_posterior(x)
    assert mean.shape == logvar.shape == (4, 4, 4, 4)
    assert torch.equal(model.encode(x), mean)
    losses = model.stage1_losses(x)
    assert torch.allclose(losses.entropy, -0.5 * torch.log1p(logvar.exp() * math.exp(5.0)).flatten(1).sum(1), rtol=1e-4)
    assert (losses.entropy < 0).all()
    assert torch.allclose(losses.rate, losses.prior_diffusion + losses.prior_kl1 + losses.entropy)
    assert _encoder_grad(model, losses.entropy.mean()) > 0

    # E_ε[KL(N(α0·(μ + σ_z·ε), σ0²) ‖ N(0, 1))] + L_e = KL(N(α0·μ, α0²σ_z² + σ0²) ‖ N(0, 1)), per dim
    torch.manual_seed(0)
    mu = torch.tensor([[0.3, -1.2, 0.0, 2.0]])
    lv = torch.tensor([[-6.0, -4.0, -2.0, 0.0]])
    draws = 200_000
    z = mu + torch.exp(0.5 * lv) * torch.randn(draws, 4)
    a0, s0 = model.alpha0, model.sigma0
    sample_kl = 0.5 * (a0**2 * z.double() ** 2 + s0**2 - 1 - math.log(s0**2)).mean(0)
    entropy = -0.5 * torch.nn.functional.softplus(lv.double() + 5.0)[0]
    var = a0**2 * lv.double().exp()[0] + s0**2
    closed = 0.5 * (a0**2 * mu.double()[0] ** 2 + var - 1 - torch.log(var))
    assert torch.allclose(sample_kl + entropy, closed, atol=0.02)


@pytest.mark.parametrize(
    "overrides",
    [
        ["ablation.prior=normal"],
        ["ablation.decoder_loss=mse"],
        ["ablation.prior_stop_gradient=true", "ablation.normal_kl_weight=0.1"],
        ["ablation.learned_variance=true"],
        ["loss.latent_logsnr_max=10"],
    ],
)
def test_each_ablation_trains_a_step(overrides: list[str]):
    model = smoke_model(*overrides)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    for _ in range(2):
        losses = model.stage1_losses(x)
        loss = losses.loss()
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
    metrics = losses.metrics()
    assert all(math.isfinite(v) for v in metrics.values())
    assert metrics["rate/bits_per_pixel"] >= 0 or overrides == ["ablation.learned_variance=true"]


def test_schedule_endpoint_used_by_the_mse_decoder_is_the_noisiest():
    model = smoke_model("ablation.decoder_loss=mse")
    assert model.image_schedule.logsnr_min == -10.0
    _, sigma = gaussian.alpha_sigma_scalar(-10.0)
    assert sigma > 0.9999
    assert isinstance(model.image_schedule, schedule.CosineSchedule)
