"""Unified Latents: the stage-1 model (encoder, prior, decoder) and the stage-2 base model.

Every loss term is a per-example sum over its own dimensions, in nats (docs/method.md § 6), returned
separately; the trainer adds them and nothing else re-derives them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ul_engine.core.config import RunConfig
from ul_engine.core.errors import ULError
from ul_engine.diffusion import gaussian, samplers, schedule, weighting
from ul_engine.diffusion.precision import sampling_autocast
from ul_engine.nets import build_base, build_decoder, build_encoder, build_prior
from ul_engine.nets.decoder import DecoderCondition

LN2 = math.log(2.0)


@dataclass
class Stage1Losses:
    """Per-example terms (B,), nats; each stays named and separate.

    UL (the defaults): rate = prior_diffusion + prior_kl1 bounds the latent's information and the loss is
    rate + decoder. The ablations (config section `ablation`, docs/method.md § 10) add:
      - prior_kl_normal: KL[N(α0·z_clean, σ0²I) ‖ N(0, I)], the N(0, I) prior on the noisy latent z0;
        the rate under prior = normal, and the (weighted) regulariser under prior_stop_gradient;
      - entropy: −½·Σ log(σ_z²·e^{λ_z(0)} + 1) with a learned encoder variance (added to the rate);
      - prior_detached: the prior's terms were computed on a detached latent (they train the prior only).
    prior_diffusion and prior_kl1 are None under prior = normal (the diffusion prior is not used).
    rate_weight scales the rate's pressure in `total` only (`loss.rate_warmup_steps`); `rate` stays unweighted.
    latent: the step's z_clean as the prior saw it, detached (extra prior-only updates train on it).
    """

    prior_diffusion: Tensor | None
    prior_kl1: Tensor | None
    decoder: Tensor
    decoder_elbo: Tensor
    latent_dims: int
    pixels: int
    channels: int
    z_clean_std: Tensor
    prior_kl_normal: Tensor | None = None
    entropy: Tensor | None = None
    prior: str = "diffusion"
    prior_detached: bool = False
    normal_kl_weight: float = 1.0
    rate_weight: float = 1.0
    latent: Tensor | None = None

    @property
    def rate(self) -> Tensor:
        """Nats per example the latent costs under the model's prior (reported as bits)."""
        if self.prior == "normal":
            assert self.prior_kl_normal is not None
            rate = self.prior_kl_normal
        else:
            assert self.prior_diffusion is not None and self.prior_kl1 is not None
            rate = self.prior_diffusion + self.prior_kl1
        if self.entropy is not None:
            rate = rate + self.entropy
        return rate

    @property
    def total(self) -> Tensor:
        if self.prior == "diffusion" and not self.prior_detached:
            return self.rate_weight * self.rate + self.decoder  # UL: L_z + L_x (rate_weight 1 but in a warm-up)
        # The N(0, I) KL on z0 (plus the learned-variance entropy: together the Gaussian KL) regularises.
        assert self.prior_kl_normal is not None
        regulariser = self.prior_kl_normal if self.entropy is None else self.prior_kl_normal + self.entropy
        total = self.rate_weight * self.normal_kl_weight * regulariser + self.decoder
        if self.prior == "diffusion":  # detached: these terms train the prior as a rate estimator only
            assert self.prior_diffusion is not None and self.prior_kl1 is not None
            total = total + self.prior_diffusion + self.prior_kl1
        return total

    def loss(self) -> Tensor:
        """L = L_z + L_x, averaged over the batch; no other coefficients, no stop-gradient (UL defaults; a rate
        warm-up, `loss.rate_warmup_steps`, weights L_z by `rate_weight` < 1 over the first steps)."""
        return self.total.mean()

    def metrics(self) -> dict[str, float]:
        rate = self.rate.detach().mean().item()
        out = {"loss/total": self.total.detach().mean().item()}
        for key, term in (
            ("loss/prior_diffusion", self.prior_diffusion),
            ("loss/prior_kl1", self.prior_kl1),
            ("loss/prior_kl_normal", self.prior_kl_normal),
            ("loss/encoder_entropy", self.entropy),
        ):
            if term is not None:
                out[key] = term.detach().mean().item()
        out.update(
            {
                "loss/decoder": self.decoder.detach().mean().item(),
                "loss/decoder_elbo": self.decoder_elbo.detach().mean().item(),
                "rate/nats": rate,
                "rate/bits_per_latent_dim": rate / LN2 / self.latent_dims,
                "rate/bits_per_pixel": rate / LN2 / self.pixels,
                "rate/bits_per_subpixel": rate / LN2 / (self.pixels * self.channels),
                "latent/z_clean_std": self.z_clean_std.item(),
            }
        )
        if self.prior_kl_normal is not None:
            out["rate/normal_kl_bits_per_pixel"] = self.prior_kl_normal.detach().mean().item() / LN2 / self.pixels
        return out


@dataclass
class Stage2Losses:
    """weighted: the sigmoid-weighted training loss; elbo: the unweighted ELBO (a second rate bound).

    With video context the terms cover the generated latent frames only, so `latent_dims` and `pixels`
    are per-example tensors (B,) counting what each example generates.
    """

    weighted: Tensor
    elbo: Tensor
    latent_dims: int | Tensor
    pixels: int | Tensor

    def loss(self) -> Tensor:
        return self.weighted.mean()

    def metrics(self) -> dict[str, float]:
        elbo = self.elbo.detach().mean().item()
        if isinstance(self.latent_dims, Tensor):
            per_dim = (self.elbo.detach() / self.latent_dims).mean().item() / LN2
            per_pixel = (self.elbo.detach() / self.pixels).mean().item() / LN2
        else:
            per_dim, per_pixel = elbo / LN2 / self.latent_dims, elbo / LN2 / self.pixels
        return {
            "loss/total": self.weighted.detach().mean().item(),
            "loss/base_weighted": self.weighted.detach().mean().item(),
            "loss/base_elbo": elbo,
            "rate/base_bits_per_latent_dim": per_dim,
            "rate/base_bits_per_pixel": per_pixel,
        }


def _stratified_logsnr(sched: schedule.CosineSchedule, batch: int, device: torch.device) -> tuple[Tensor, Tensor]:
    t = schedule.stratified_uniform(batch, device=device)
    return sched.logsnr(t).to(device), sched.neg_dlogsnr_dt(t).to(device)


def build_stage1_net(cfg: RunConfig, name: str) -> nn.Module:
    """One stage-1 net ("encoder", "prior" or "decoder") as UnifiedLatents holds it (exports rebuild them alone)."""
    m = cfg.model
    if name == "encoder":
        # Table 6 D (learned variance): mean and log-variance, 2·C channels
        return build_encoder(m, 2 * m.latent_channels if cfg.ablation.learned_variance else None)
    if name == "prior":
        return build_prior(m)
    if name == "decoder":
        return build_decoder(m)
    raise ValueError(f"unknown stage-1 net {name!r}")


class UnifiedLatents(nn.Module):
    """Encoder E, prior P and decoder D trained jointly on L = L_z + L_x (Algorithm 1).

    `nets`: already built (encoder, prior, decoder) to wrap instead of building new ones (exported models)."""

    def __init__(self, cfg: RunConfig, nets: tuple[nn.Module, nn.Module, nn.Module] | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        loss = cfg.loss
        self.ablation = cfg.ablation
        encoder, prior, decoder = nets or tuple(build_stage1_net(cfg, n) for n in ("encoder", "prior", "decoder"))
        self.encoder, self.prior, self.decoder = encoder, prior, decoder
        if self.ablation.prior == "normal":  # N(0, I) replaces it; frozen so no optimizer or DDP sees it
            self.prior.requires_grad_(False)
        self.latent_schedule = schedule.latent_schedule(loss.latent_logsnr_min, loss.latent_logsnr_max)
        self.image_schedule = schedule.image_schedule(
            loss.image_logsnr_min, loss.image_logsnr_max, resolution=cfg.data.resolution, shift_ref=loss.image_shift_ref
        )
        self.latent_logsnr_max = loss.latent_logsnr_max
        self.alpha0, self.sigma0 = gaussian.alpha_sigma_scalar(loss.latent_logsnr_max)
        self.sigmoid_bias = weighting.decoder_sigmoid_bias(
            loss.sigmoid_bias, loss.sigmoid_bias_resolution, cfg.data.resolution
        )

    def forward(self, x: Tensor) -> Stage1Losses:
        """The training forward (what accelerate/DDP wraps): the stage-1 loss terms of a batch."""
        return self.stage1_losses(x)

    # -- the pieces ------------------------------------------------------------------------------

    def encode(self, x: Tensor) -> Tensor:
        """x (B,3,H,W) in [-1,1] → z_clean (B,C,h,w); deterministic (with a learned variance: its mean)."""
        return self.encode_posterior(x)[0]

    def encode_posterior(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """(mean, log σ_z²): log σ_z² is None for UL's deterministic encoder.

        With a learned variance (ablation D) the head's second half h gives log σ_z² = h − λ_z(0), so a
        zero output starts the learned noise at the scale of the fixed one (σ_z²·e^{λ_z(0)} = 1).
        """
        out = self.encoder(x)
        if not self.ablation.learned_variance:
            return out, None
        mean, h = out.chunk(2, dim=1)
        return mean, h - self.latent_logsnr_max

    def noisy_latent(self, z_clean: Tensor, noise: Tensor | None = None) -> Tensor:
        """z0 = α0·z_clean + σ0·ε at λ_z(0): the latent the decoder reads and the prior models."""
        if noise is None:
            noise = torch.randn_like(z_clean)
        return self.alpha0 * z_clean + self.sigma0 * noise

    def prior_x_hat(self, z_t: Tensor, logsnr: Tensor) -> Tensor:
        return gaussian.x_from_v(z_t, self.prior(z_t, logsnr), logsnr)

    def decoder_x_hat(
        self, x_t: Tensor, z0: Tensor, logsnr: Tensor, condition: DecoderCondition | None = None
    ) -> Tensor:
        """`condition`: `decoder_condition(z0)`, computed once when the same z0 is decoded over many steps."""
        return gaussian.x_from_v(x_t, self.decoder(x_t, z0, logsnr, condition=condition), logsnr)

    def decoder_condition(self, z0: Tensor) -> DecoderCondition:
        """The decoder's z0-only inputs (`Decoder.condition`): the same at every sampling step of one decode."""
        return self.decoder.condition(z0)

    def deterministic_decode(self, z0: Tensor) -> Tensor:
        """The MSE decoder of ablation decoder_loss = mse: x̂ = D(z0), the same net at x_t = 0, λ = λ_x(1).

        At the noisiest level x̂ = −σ·v̂ with σ ≈ 1, so the net outputs the image directly; x_t = 0 carries
        no information, so x̂ is a deterministic function of z0.
        """
        b = z0.shape[0]
        x_t = torch.zeros(b, *self.pixel_shape(z0), device=z0.device, dtype=z0.dtype)
        logsnr = torch.full((b,), self.image_schedule.logsnr_min, device=z0.device)
        return self.decoder_x_hat(x_t, z0, logsnr)

    def pixel_shape(self, z: Tensor) -> tuple[int, ...]:
        """(3, H, W) of the image, or (3, T, H, W) of the clip, that a latent batch z decodes to."""
        d = self.cfg.model.downsample()
        h, w = z.shape[-2] * d, z.shape[-1] * d
        if self.cfg.model.time_axis:
            return (3, z.shape[2] * self.cfg.model.time_downsample, h, w)
        return (3, h, w)

    def mse_decoder_weight(self) -> float:
        """The weight on ½·‖x − x̂‖² that the diffusion decoder's loss puts on a decoder that ignores x_t.

        ∫₀¹ ½·(−dλ/dt)·w_x(λ) dt = ½·∫ c_lf·e^b·sigmoid(λ − b) dλ over [λ_x(1), λ_x(0)]
        = ½·c_lf·e^b·[softplus(λ_x(0) − b) − softplus(λ_x(1) − b)]: so c_lf and b keep their meaning.
        """
        loss = self.cfg.loss
        lo, hi = self.image_schedule.logsnr_min, self.image_schedule.logsnr_max
        b = self.sigmoid_bias

        def softplus(v: float) -> float:
            return max(v, 0.0) + math.log1p(math.exp(-abs(v)))

        return 0.5 * loss.loss_factor * math.exp(b) * (softplus(hi - b) - softplus(lo - b))

    # -- losses ----------------------------------------------------------------------------------

    def prior_terms(self, z_clean: Tensor, t: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """L_z: unweighted ELBO over λ ∈ [λ_min, λ_z(0)], regressing onto z_clean, + KL at t = 1."""
        if t is None:
            logsnr, neg_d = _stratified_logsnr(self.latent_schedule, z_clean.shape[0], z_clean.device)
        else:
            logsnr = self.latent_schedule.logsnr(t).to(z_clean.device)
            neg_d = self.latent_schedule.neg_dlogsnr_dt(t).to(z_clean.device)
        noise = torch.randn_like(z_clean)
        z_t = gaussian.q_sample(z_clean, logsnr, noise)
        v_hat = self.prior(z_t, logsnr)
        v = gaussian.v_target(z_clean, noise, logsnr)
        diffusion = weighting.diffusion_loss(v, v_hat, logsnr, neg_d, weighting.unweighted(logsnr))
        kl1 = gaussian.kl_to_standard_normal(z_clean, self.latent_schedule.logsnr_min)
        return diffusion, kl1

    def prior_update_loss(self, latent: Tensor) -> Tensor:
        """The prior's own loss (L_z, batch mean) on a frozen latent: what an extra prior-only update minimises."""
        diffusion, kl1 = self.prior_terms(latent.detach())
        return (diffusion + kl1).mean()

    def normal_kl(self, z_clean: Tensor) -> Tensor:
        """KL[N(α0·z_clean, σ0²I) ‖ N(0, I)] per example (nats): the N(0, I) prior on the noisy latent z0."""
        return gaussian.kl_to_standard_normal(z_clean, self.latent_logsnr_max)

    def encoder_entropy(self, logvar: Tensor) -> Tensor:
        """L_e = −½·Σ log(σ_z²·e^{λ_z(0)} + 1) (LSGM; docs/method.md § 10): the learned variance's rate credit."""
        return -0.5 * torch.nn.functional.softplus(logvar.float() + self.latent_logsnr_max).flatten(1).sum(dim=1)

    def decoder_terms(self, x: Tensor, z0: Tensor) -> tuple[Tensor, Tensor]:
        """L_x = ½·(−dλ/dt)·c_lf·sigmoid(b − λ)·‖ε − ε̂‖², conditioned on z0; and its unweighted ELBO.

        With ablation decoder_loss = mse: mse_decoder_weight()·‖x − D(z0)‖² (no λ is sampled), and
        ½·‖x − D(z0)‖² in place of the ELBO.
        """
        loss = self.cfg.loss
        if self.ablation.decoder_loss == "mse":
            sq = (x.float() - self.deterministic_decode(z0).float()).pow(2).flatten(1).sum(dim=1)
            return self.mse_decoder_weight() * sq, 0.5 * sq.detach()
        logsnr, neg_d = _stratified_logsnr(self.image_schedule, x.shape[0], x.device)
        noise = torch.randn_like(x)
        x_t = gaussian.q_sample(x, logsnr, noise)
        v_hat = self.decoder(x_t, z0, logsnr)
        v = gaussian.v_target(x, noise, logsnr)
        eps_w = weighting.sigmoid_weight(logsnr, self.sigmoid_bias, loss.loss_factor)
        weighted = weighting.diffusion_loss(v, v_hat, logsnr, neg_d, eps_w)
        with torch.no_grad():
            elbo = weighting.diffusion_loss(v, v_hat, logsnr, neg_d, weighting.unweighted(logsnr))
        return weighted, elbo

    def stage1_losses(self, x: Tensor) -> Stage1Losses:
        """L_z and L_x of a batch. With every switch of `cfg.ablation` off (the default) this is UL as
        published; the switches are described in docs/method.md § 10."""
        ab = self.ablation
        mean, logvar = self.encode_posterior(x)
        entropy = None
        z_clean = mean
        if logvar is not None:  # reparameterised draw z_clean ~ N(μ, σ_z²); L_e credits the added noise
            z_clean = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
            entropy = self.encoder_entropy(logvar)
        prior_diffusion = prior_kl1 = kl_normal = None
        if ab.prior == "diffusion":
            prior_input = z_clean.detach() if ab.prior_stop_gradient else z_clean
            prior_diffusion, prior_kl1 = self.prior_terms(prior_input)
        if ab.prior == "normal" or ab.prior_stop_gradient:
            kl_normal = self.normal_kl(z_clean)
        z0 = self.noisy_latent(z_clean)
        decoder, decoder_elbo = self.decoder_terms(x, z0)
        return Stage1Losses(
            prior_diffusion=prior_diffusion,
            prior_kl1=prior_kl1,
            decoder=decoder,
            decoder_elbo=decoder_elbo,
            latent_dims=z_clean[0].numel(),
            pixels=x[0, 0].numel(),  # H·W, or T·H·W for clips: bits per pixel over every frame
            channels=x.shape[1],
            z_clean_std=z_clean.detach().float().std(),
            prior_kl_normal=kl_normal,
            entropy=entropy,
            prior=ab.prior,
            prior_detached=ab.prior_stop_gradient,
            normal_kl_weight=ab.normal_kl_weight,
            latent=z_clean.detach(),
        )

    @torch.no_grad()
    def estimate_rate(self, z_clean: Tensor, draws: int = 16) -> Tensor:
        """Monte-Carlo rate (nats per example): each example sees `draws` t's stratified over [0, 1].

        Under ablation prior = normal it is the closed-form KL to N(0, I). With a learned variance the
        caller passes the mean, so this is the rate of the mean's latent (without the entropy credit).
        """
        if self.ablation.prior == "normal":
            return self.normal_kl(z_clean)
        batch = z_clean.shape[0]
        total = torch.zeros(batch, device=z_clean.device)
        u0 = torch.rand(batch)
        for k in range(draws):
            diffusion, kl1 = self.prior_terms(z_clean, t=(k + u0) / draws)
            total += diffusion + kl1
        return total / draws

    # -- sampling --------------------------------------------------------------------------------

    @torch.no_grad()
    def decode(
        self,
        z0: Tensor,
        *,
        steps: int,
        seeds: Sequence[int],
        sampler: str = "ancestral",
        image_size: tuple[int, int] | None = None,
        callback: samplers.Callback | None = None,
    ) -> Tensor:
        """Sample x ~ p(x | z0) with the diffusion decoder; returns x̂ in [-1, 1] scale (unclipped).

        The MSE decoder (ablation) is deterministic: x̂ = D(z0), whatever the steps and seeds.
        """
        if self.ablation.decoder_loss == "mse":
            return self.deterministic_decode(z0)
        shape = self.pixel_shape(z0)
        if image_size is not None:
            shape = (*shape[:-2], *image_size)
        noise = samplers.PerSampleNoise(seeds, z0.device)
        with sampling_autocast(z0.device):  # as the sampler's network calls are: reusing it changes nothing
            condition = self.decoder_condition(z0)

        def denoise(x_t: Tensor, logsnr: Tensor) -> Tensor:
            return self.decoder_x_hat(x_t, z0, logsnr, condition)

        grid = self.image_schedule.grid(steps).to(z0.device)
        return samplers.sample(denoise, grid, noise, shape, sampler=sampler, final="prediction", callback=callback)

    @torch.no_grad()
    def sample_prior(
        self,
        n: int,
        *,
        steps: int,
        seeds: Sequence[int],
        sampler: str = "ancestral",
        device: str | torch.device = "cpu",
    ) -> Tensor:
        """z0 samples from the stage-1 prior (the unweighted-ELBO model; stage 2 exists to beat it).

        Under ablation prior = normal the prior is N(0, I) itself.
        """
        shape = self.cfg.latent_shape()
        noise = samplers.PerSampleNoise(seeds[:n], device)
        if self.ablation.prior == "normal":
            return noise.randn(shape)
        grid = self.latent_schedule.grid(steps).to(device)
        return samplers.sample(self.prior_x_hat, grid, noise, shape, sampler=sampler, final="state")


class LatentBase(nn.Module):
    """Stage 2: a larger base model on frozen latents, sigmoid-weighted, same max log-SNR λ_z(0).

    Video with `model.base.context_frames` = k > 0: a `context_prob` share of each batch is conditional —
    the first k latent frames are given clean (with a mask) and the loss covers the other frames only —
    the rest unconditional, so one model samples both ways.
    """

    def __init__(self, cfg: RunConfig, net: nn.Module | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_classes = cfg.data.num_classes
        self.net = net if net is not None else build_base(cfg.model, self.num_classes)
        self.schedule = schedule.latent_schedule(cfg.loss.latent_logsnr_min, cfg.loss.latent_logsnr_max)
        self.context_frames = cfg.model.base.context_frames if cfg.model.time_axis else 0

    def context_mask(self, given: Tensor, frames: int) -> Tensor:
        """(B,) latent frames given per example → mask (B, 1, frames, 1, 1), 1 on given frames."""
        index = torch.arange(frames, device=given.device)
        return (index[None, :] < given[:, None]).float()[:, None, :, None, None]

    def _pixels(self, z: Tensor) -> int:
        d = self.cfg.model.downsample()
        pixels = z.shape[-2] * d * z.shape[-1] * d
        return pixels * self.cfg.model.time_downsample if self.cfg.model.time_axis else pixels

    def _labels(self, labels: Tensor | None, batch: int, device: torch.device) -> Tensor | None:
        if self.num_classes == 0:
            return None
        if labels is None:
            return torch.full((batch,), self.num_classes, dtype=torch.long, device=device)
        return labels

    def forward(self, z_clean: Tensor, labels: Tensor | None = None) -> Stage2Losses:
        return self.losses(z_clean, labels)

    def losses(self, z_clean: Tensor, labels: Tensor | None = None) -> Stage2Losses:
        """z_t from z_clean with fresh noise at λ ∈ [λ_min, λ_z(0)]; target z_clean; sigmoid(b_base − λ)."""
        batch = z_clean.shape[0]
        logsnr, neg_d = _stratified_logsnr(self.schedule, batch, z_clean.device)
        noise = torch.randn_like(z_clean)
        z_t = gaussian.q_sample(z_clean, logsnr, noise)
        labels = self._labels(labels, batch, z_clean.device)
        if labels is not None and self.training and self.cfg.model.base.label_dropout > 0:
            drop = torch.rand(batch, device=z_clean.device) < self.cfg.model.base.label_dropout
            labels = torch.where(drop, torch.full_like(labels, self.num_classes), labels)
        if self.context_frames:
            return self._context_losses(z_clean, z_t, noise, logsnr, neg_d, labels)
        v_hat = self.net(z_t, logsnr, labels)
        v = gaussian.v_target(z_clean, noise, logsnr)
        eps_w = self._weight(logsnr)
        weighted = weighting.diffusion_loss(v, v_hat, logsnr, neg_d, eps_w)
        with torch.no_grad():
            kl1 = gaussian.kl_to_standard_normal(z_clean, self.schedule.logsnr_min)
            elbo = weighting.diffusion_loss(v, v_hat, logsnr, neg_d, weighting.unweighted(logsnr)) + kl1
        return Stage2Losses(weighted=weighted, elbo=elbo, latent_dims=z_clean[0].numel(), pixels=self._pixels(z_clean))

    def _weight(self, logsnr: Tensor) -> Tensor:
        """sigmoid(b_base − λ) on the ε-MSE, or 1 with `loss.base_weighting = "elbo"` (a rate bound only)."""
        if self.cfg.loss.base_weighting == "elbo":
            return weighting.unweighted(logsnr)
        return weighting.sigmoid_weight(logsnr, self.cfg.loss.base_sigmoid_bias)

    @torch.no_grad()
    def estimate_elbo(self, z_clean: Tensor, draws: int = 16) -> Tensor:
        """Monte-Carlo unweighted ELBO + KL₁ (nats per example) of unconditional z_clean: the base model's rate
        bound, estimated like `UnifiedLatents.estimate_rate` (`draws` t's stratified over [0, 1] per example)."""
        batch = z_clean.shape[0]
        total = torch.zeros(batch, device=z_clean.device)
        u0 = torch.rand(batch)
        kl1 = gaussian.kl_to_standard_normal(z_clean, self.schedule.logsnr_min)
        for k in range(draws):
            t = (k + u0) / draws
            logsnr = self.schedule.logsnr(t).to(z_clean.device)
            neg_d = self.schedule.neg_dlogsnr_dt(t).to(z_clean.device)
            noise = torch.randn_like(z_clean)
            z_t = gaussian.q_sample(z_clean, logsnr, noise)
            v_hat = gaussian.v_from_x(z_t, self.x_hat(z_t, logsnr), logsnr)
            v = gaussian.v_target(z_clean, noise, logsnr)
            total += weighting.diffusion_loss(v, v_hat, logsnr, neg_d, weighting.unweighted(logsnr)) + kl1
        return total / draws

    def _context_losses(
        self, z_clean: Tensor, z_t: Tensor, noise: Tensor, logsnr: Tensor, neg_d: Tensor, labels: Tensor | None
    ) -> Stage2Losses:
        """Conditional examples see their first k latent frames clean; every term sums over generated frames only."""
        batch, frames = z_clean.shape[0], z_clean.shape[2]
        conditional = torch.rand(batch, device=z_clean.device) < self.cfg.model.base.context_prob
        given = torch.where(conditional, self.context_frames, 0)
        mask = self.context_mask(given, frames)
        v_hat = self.net(z_t, logsnr, labels, context=z_clean, mask=mask)
        v = gaussian.v_target(z_clean, noise, logsnr)
        v_hat = v + (v_hat - v) * (1.0 - mask)  # zero error on the given frames: they are not modelled
        eps_w = self._weight(logsnr)
        weighted = weighting.diffusion_loss(v, v_hat, logsnr, neg_d, eps_w)
        with torch.no_grad():
            kl1 = gaussian.kl_to_standard_normal_per_dim(z_clean, self.schedule.logsnr_min) * (1.0 - mask)
            kl1 = kl1.flatten(1).sum(dim=1)
            elbo = weighting.diffusion_loss(v, v_hat, logsnr, neg_d, weighting.unweighted(logsnr)) + kl1
        generated = (frames - given).float()
        per_frame_dims = z_clean[0, :, 0].numel()
        pixels_per_frame = self._pixels(z_clean[:, :, :1])
        return Stage2Losses(
            weighted=weighted, elbo=elbo, latent_dims=generated * per_frame_dims, pixels=generated * pixels_per_frame
        )

    def x_hat(
        self,
        z_t: Tensor,
        logsnr: Tensor,
        labels: Tensor | None = None,
        guidance: float = 1.0,
        context: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        """Clean-latent prediction, with classifier-free guidance on x̂ when labels and guidance ≠ 1.

        With video context, the given frames' prediction is the given latent itself (the model is
        conditioned on it and never asked to predict it)."""
        batch = z_t.shape[0]
        labels = self._labels(labels, batch, z_t.device)
        kw = {"context": context, "mask": mask} if self.context_frames else {}
        cond = gaussian.x_from_v(z_t, self.net(z_t, logsnr, labels, **kw), logsnr)
        if labels is not None and guidance != 1.0:
            null = torch.full_like(labels, self.num_classes)
            uncond = gaussian.x_from_v(z_t, self.net(z_t, logsnr, null, **kw), logsnr)
            cond = uncond + guidance * (cond - uncond)
        if context is not None and mask is not None:
            cond = context * mask + cond * (1.0 - mask)
        return cond

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        steps: int,
        seeds: Sequence[int],
        sampler: str = "ancestral",
        labels: Tensor | None = None,
        guidance: float = 1.0,
        device: str | torch.device = "cpu",
        callback: samplers.Callback | None = None,
        context: Tensor | None = None,
        given_frames: int = 0,
    ) -> Tensor:
        """Run the base model from λ_min down to λ_z(0); returns the noisy z0 it models (Algorithm 2).

        Video: `context` (n, C, T', h, w) clean latents of which the first `given_frames` latent frames are
        given; the rest are generated (the paper's "condition on 5 frames, generate 11").
        """
        shape = self.cfg.latent_shape()
        noise = samplers.PerSampleNoise(seeds[:n], device)
        grid = self.schedule.grid(steps).to(device)
        mask = None
        if given_frames:
            if not self.context_frames:
                raise ULError("this run's base model was trained without context (model.base.context_frames = 0)")
            if context is None or context.shape[1:] != torch.Size(shape):
                raise ULError(f"context latents must be shaped {shape}")
            context = context.to(device)
            mask = self.context_mask(torch.full((n,), given_frames, device=device), shape[1])

        def denoise(z_t: Tensor, logsnr: Tensor) -> Tensor:
            return self.x_hat(z_t, logsnr, labels, guidance, context=context if mask is not None else None, mask=mask)

        return samplers.sample(denoise, grid, noise, shape, sampler=sampler, final="state", callback=callback)
