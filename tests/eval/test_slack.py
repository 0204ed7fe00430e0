"""Prior slack κ (docs/method.md § 12): exact on Gaussian latents, and end to end on smoke runs."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn
from ul_testkit import ul_in_process

from ul_engine.core.config import resolve
from ul_engine.core.errors import ULError
from ul_engine.diffusion import gaussian
from ul_engine.eval.slack import bounds_on_latents, prior_slack
from ul_engine.model import LatentBase, UnifiedLatents
from ul_engine.store import Store


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class GaussianDenoiser(nn.Module):
    """E[z | z_t] for z ~ N(0, s²) as v̂: exact when s is the latents' scale, a looser bound otherwise."""

    def __init__(self, s: float) -> None:
        super().__init__()
        self.s = s

    def forward(self, z_t: torch.Tensor, logsnr: torch.Tensor, *_: object, **__: object) -> torch.Tensor:
        alpha, sigma = gaussian.alpha_sigma(logsnr)
        a, sg = gaussian.broadcast(alpha, z_t), gaussian.broadcast(sigma, z_t)
        return gaussian.v_from_x(z_t, a * self.s**2 * z_t / (a**2 * self.s**2 + sg**2), logsnr)


def _models(prior_s: float, base_s: float) -> tuple[UnifiedLatents, LatentBase]:
    cfg = resolve("smoke", ["data.num_classes=0"])
    stage1, base = UnifiedLatents(cfg), LatentBase(resolve("smoke", ["data.num_classes=0", "stage=2"]))
    stage1.prior, base.net = GaussianDenoiser(prior_s), GaussianDenoiser(base_s)
    return stage1, base


def test_both_bounds_equal_the_information_with_exact_denoisers_and_a_loose_prior_shows_as_slack():
    torch.manual_seed(0)
    s = 1.3
    z = s * torch.randn(256, 4, 4, 4)
    info = 0.5 * math.log(1 + s**2 * math.exp(5.0)) * 64  # nats per example: ½·log(1 + s²·e^{λ_z(0)}) per dim
    bound, best = bounds_on_latents(*_models(s, s), z, draws=16)
    assert bound == pytest.approx(info, rel=0.02) and best == pytest.approx(info, rel=0.02)
    loose, best = bounds_on_latents(*_models(3 * s, s), z, draws=16)
    assert loose / best > 1.05


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("slack") / "home"
    ul_in_process(home, "train", "--preset", "smoke", "--steps", "10", "--name", "s1")
    ul_in_process(
        home, "train", "--preset", "smoke", "--stage", "2", "--from-run", "s1", "--steps", "10", "--name", "elbo",
        "--set", 'loss.base_weighting="elbo"', "--set", "train.latent_cache_size=64",
    )  # fmt: skip
    return home


def test_kappa_of_a_smoke_run_is_the_ratio_of_its_two_bounds(home: Path):
    result = prior_slack(Store.open(home), "elbo", count=32, draws=4)
    out = result.to_json()
    json.dumps(out, allow_nan=False)
    assert out["bound_nats"] > 0 and out["best_bound_nats"] > 0 and out["count"] == 32
    assert out["kappa"] == pytest.approx(out["bound_nats"] / out["best_bound_nats"])
    assert out["bound_bits_per_pixel"] == pytest.approx(out["bound_nats"] / math.log(2) / 256)
    again = prior_slack(Store.open(home), "elbo", count=32, draws=4)
    assert again.kappa == result.kappa  # the same latents and noise every time


def test_kappa_refuses_runs_that_are_not_an_elbo_stage_2(home: Path):
    with pytest.raises(ULError, match="stage 1"):
        prior_slack(Store.open(home), "s1")


def test_a_stage1_run_records_z_clean_std_at_every_step(home: Path):
    store = Store.open(home)
    series = store.read_metric(store.get_run("s1").id, "latent/z_clean_std")
    assert list(series.steps) == list(range(1, 11))
    assert (series.values > 0).all()
