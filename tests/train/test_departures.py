"""The measurement knobs of docs/method.md § 12 (all off by default): each is wired and does what it says."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ul_engine.core.config import resolve
from ul_engine.core.errors import ConfigError
from ul_engine.data import BatchStream, make_source
from ul_engine.diffusion import gaussian, weighting
from ul_engine.model import LatentBase, UnifiedLatents
from ul_engine.train.loop import NullHooks, Trainer, lr_at, make_accelerator
from ul_engine.train.stages import Stage1Objective, rate_weight_at


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny models: one thread is fastest, and spares the cores that others share."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_trainer(tmp: Path, *overrides: str) -> Trainer:
    cfg = resolve("smoke", ["optim.batch_size=8", "train.checkpoint_every=1000", *overrides])
    torch.manual_seed(cfg.train.seed)
    model = UnifiedLatents(cfg)
    stream = BatchStream(make_source(cfg.data), cfg.optim.batch_size, cfg.data.seed)
    acc = make_accelerator("cpu")
    return Trainer(cfg, Stage1Objective(model, stream, acc.device), tmp, accelerator=acc)


class Rows(NullHooks):
    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    def on_metrics(self, step: int, wall_time: float, values: dict[str, float]) -> None:
        self.rows.append(dict(values))


# -- 1. latent/z_clean_std ------------------------------------------------------------------------


@pytest.mark.parametrize("ablation", ["", "ablation.prior=normal", "ablation.learned_variance=true"])
def test_every_stage1_step_logs_z_clean_std(tmp_path: Path, ablation: str):
    trainer = make_trainer(tmp_path, *([ablation] if ablation else []))
    trainer.hooks = rows = Rows()
    trainer.train(2)
    assert len(rows.rows) == 2
    for row in rows.rows:
        assert row["latent/z_clean_std"] > 0 and math.isfinite(row["latent/z_clean_std"])


def test_z_clean_std_is_the_spread_of_the_encoders_latent_over_the_batch():
    torch.manual_seed(0)
    model = UnifiedLatents(resolve("smoke"))
    x = torch.rand(6, 3, 16, 16) * 2 - 1
    logged = model.stage1_losses(x).metrics()["latent/z_clean_std"]
    with torch.no_grad():
        assert logged == pytest.approx(model.encode(x).std().item(), rel=1e-5)


# -- 2. rate warm-up ------------------------------------------------------------------------------


def test_rate_weight_ramps_linearly_from_0_to_1_and_is_1_when_off():
    warm = resolve("smoke", ["loss.rate_warmup_steps=40"])
    assert [rate_weight_at(warm, s) for s in (0, 10, 20, 40, 41, 1000)] == [0.0, 0.25, 0.5, 1.0, 1.0, 1.0]
    off = resolve("smoke")
    assert {rate_weight_at(off, s) for s in (0, 1, 1000)} == {1.0}


def _step_losses(*overrides: str, step: int) -> tuple[UnifiedLatents, torch.Tensor, dict[str, float]]:
    cfg = resolve("smoke", ["optim.batch_size=8", *overrides])
    torch.manual_seed(0)
    model = UnifiedLatents(cfg)
    objective = Stage1Objective(model, BatchStream(make_source(cfg.data), 8, 0), torch.device("cpu"))
    torch.manual_seed(1)
    loss, values = objective.micro_losses(model, step, 0, 1)
    return model, loss, values


def test_warmup_weights_the_optimised_rate_only_and_logs_the_true_rate():
    _, plain_loss, plain = _step_losses(step=0)
    model, warm_loss, warm = _step_losses("loss.rate_warmup_steps=100", step=0)
    assert warm["rate/nats"] == pytest.approx(plain["rate/nats"], rel=1e-6) and warm["rate/nats"] > 0
    assert warm["loss/rate_weight"] == 0.0 and "loss/rate_weight" not in plain
    assert warm_loss.item() == pytest.approx(warm["loss/decoder"], rel=1e-6)  # weight 0: the decoder alone
    assert plain_loss.item() == pytest.approx(plain["rate/nats"] + plain["loss/decoder"], rel=1e-6)
    warm_loss.backward()
    assert all(p.grad is None or not p.grad.any() for p in model.prior.parameters())  # no rate pressure yet
    _, half_loss, half = _step_losses("loss.rate_warmup_steps=100", step=50)
    assert half["loss/rate_weight"] == 0.5
    assert half_loss.item() == pytest.approx(0.5 * half["rate/nats"] + half["loss/decoder"], rel=1e-5)


# -- 3. the prior's learning rate and extra prior updates --------------------------------------------


def test_prior_lr_scale_gives_the_prior_its_own_group_and_survives_a_resume(tmp_path: Path):
    trainer = make_trainer(tmp_path / "a", "optim.prior_lr_scale=4", "optim.warmup_steps=0")
    groups = trainer.optimizer.param_groups
    assert len(groups) == 2
    prior_ids = {id(p) for p in trainer.unwrapped.prior.parameters()}
    assert {id(p) for p in groups[1]["params"]} == prior_ids
    assert not prior_ids & {id(p) for p in groups[0]["params"]}
    trainer.train_step()
    peak = lr_at(trainer.cfg, 0)
    assert groups[0]["lr"] == pytest.approx(peak) and groups[1]["lr"] == pytest.approx(4 * peak)
    path = trainer.save_checkpoint()
    assert path is not None
    again = make_trainer(tmp_path / "b", "optim.prior_lr_scale=4", "optim.warmup_steps=0")
    again.load_checkpoint(path)
    assert [g.get("lr_scale", 1.0) for g in again.optimizer.param_groups] == [1.0, 4.0]
    assert len(make_trainer(tmp_path / "c").optimizer.param_groups) == 1  # off: one group, as before


def test_extra_prior_updates_train_the_prior_alone_on_the_steps_latents(tmp_path: Path):
    one = make_trainer(tmp_path / "one")
    three = make_trainer(tmp_path / "three", "optim.prior_updates_per_step=3")
    logged_one, logged_three = one.train_step(), three.train_step()
    assert logged_one is not None and logged_three is not None
    assert "loss/prior_extra" in logged_three and "loss/prior_extra" not in logged_one
    a, b = one.unwrapped, three.unwrapped
    for name in ("encoder", "decoder"):  # the main step is the same; only the prior moved on
        for (key, p), q in zip(getattr(a, name).named_parameters(), getattr(b, name).parameters(), strict=True):
            assert torch.equal(p, q), f"{name}.{key}"
    assert any(not torch.equal(p, q) for p, q in zip(a.prior.parameters(), b.prior.parameters(), strict=True))
    steps = {int(three.optimizer.state[p]["step"]) for p in b.prior.parameters() if p in three.optimizer.state}
    assert steps == {3}
    assert {int(three.optimizer.state[p]["step"]) for p in b.encoder.parameters()} == {1}


def test_prior_knobs_are_refused_without_a_diffusion_prior(tmp_path: Path):
    for knob in ("optim.prior_updates_per_step=2", "optim.prior_lr_scale=2"):
        with pytest.raises(ConfigError, match=r"ablation\.prior = normal"):
            make_trainer(tmp_path, "ablation.prior=normal", knob)


# -- 4. the sigmoid bias translated for resolution -------------------------------------------------


def test_average_pooling_k_by_k_raises_the_log_snr_by_2_log_k():
    """The fact the translation rests on (docs/method.md § 12): pooled noise has variance σ²/k²."""
    g = torch.Generator().manual_seed(0)
    coarse = torch.randn(64, 3, 8, 8, generator=g)
    for k in (2, 4):
        x = F.interpolate(coarse, scale_factor=k, mode="nearest")  # content at the coarse scale
        lam = torch.full((64,), -3.0)
        alpha, sigma = gaussian.alpha_sigma(lam)
        noise = torch.randn(x.shape, generator=g)
        pooled_noise = F.avg_pool2d(sigma[0] * noise, k)
        pooled_signal = F.avg_pool2d(alpha[0] * x, k)
        snr = pooled_signal.pow(2).mean() / coarse.pow(2).mean() / pooled_noise.pow(2).mean()
        assert math.log(snr.item()) == pytest.approx(-3.0 + 2 * math.log(k), abs=0.05)


def test_translated_bias_matches_the_derivation():
    t = weighting.translated_sigmoid_bias
    assert t(512) == 0.0
    assert t(64) == pytest.approx(2 * math.log(8)) == pytest.approx(4.1589, abs=1e-4)
    assert t(32) == pytest.approx(2 * math.log(16)) == pytest.approx(5.5452, abs=1e-4)
    assert t(32, bias=-1.0, stated_at=64) == pytest.approx(-1.0 + 2 * math.log(2))
    # the same weight at every side as a function of the resolution-equivalent log-SNR (at 64 px)
    eq = torch.linspace(-15, 15, 61, dtype=torch.float64)
    paper = weighting.sigmoid_weight(eq - 2 * math.log(512 / 64), 0.0, 1.5)
    for side in (16, 32, 64):
        own = eq - 2 * math.log(side / 64)  # the log-SNR at `side` px that reads like `eq` at 64 px
        assert torch.allclose(weighting.sigmoid_weight(own, t(side), 1.5), paper, rtol=1e-12)


def test_the_decoder_uses_the_translated_bias_when_asked():
    plain = UnifiedLatents(resolve("smoke", ["loss.sigmoid_bias=1"]))
    assert plain.sigmoid_bias == 1.0
    moved = UnifiedLatents(resolve("smoke", ["loss.sigmoid_bias=1", "loss.sigmoid_bias_resolution=512"]))
    assert moved.sigmoid_bias == pytest.approx(1 + 2 * math.log(512 / 16))
    x, z0 = torch.rand(2, 3, 16, 16) * 2 - 1, torch.randn(2, 4, 4, 4)
    torch.manual_seed(3)
    moved_terms = moved.decoder_terms(x, z0)[0]
    same = UnifiedLatents(resolve("smoke", [f"loss.sigmoid_bias={moved.sigmoid_bias}"]))
    same.load_state_dict(moved.state_dict())
    torch.manual_seed(3)
    assert torch.allclose(same.decoder_terms(x, z0)[0], moved_terms)
    assert moved.mse_decoder_weight() == pytest.approx(same.mse_decoder_weight())


# -- 5. stage 2 on the unweighted ELBO (the best bound κ is measured against) --------------------------


def test_base_weighting_elbo_trains_stage_2_on_the_unweighted_elbo():
    z = torch.randn(6, 4, 4, 4)
    terms = {}
    for name in ("sigmoid", "elbo"):
        torch.manual_seed(0)
        base = LatentBase(resolve("smoke", ["stage=2", "data.num_classes=0", f'loss.base_weighting="{name}"']))
        torch.manual_seed(1)
        terms[name] = base.losses(z)
    kl1 = gaussian.kl_to_standard_normal(z, -10.0)
    assert torch.allclose(terms["elbo"].weighted + kl1, terms["elbo"].elbo, rtol=1e-5)
    assert torch.allclose(terms["sigmoid"].elbo, terms["elbo"].elbo, rtol=1e-5)  # the same net and noise
    assert (terms["sigmoid"].weighted < terms["elbo"].weighted).all()  # sigmoid(−λ) < 1 discounts every level
