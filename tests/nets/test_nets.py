"""Shapes, initialisation and gradient flow of the UL networks at the smoke preset's sizes."""

from __future__ import annotations

import pytest
import torch

from ul_engine.core.config import resolve
from ul_engine.nets import (
    build_base,
    build_decoder,
    build_encoder,
    build_prior,
    count_parameters,
    parameter_counts,
)
from ul_engine.nets.blocks import (
    AdaLNTransformerBlock,
    FourierLogSNREmbedding,
    ResBlock,
    merge_tokens,
    patchify,
    sincos_pos_embed_2d,
    split_tokens,
    unpatchify,
)


@pytest.fixture(scope="module")
def cfg():
    return resolve("smoke")


def _unzero(module: torch.nn.Module, seed: int = 0) -> None:
    """Give the zero-initialised layers small random values, as after some training."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if not p.any():
                p.copy_(0.05 * torch.randn(p.shape, generator=g))


def test_encoder_shapes(cfg):
    torch.manual_seed(0)
    enc = build_encoder(cfg.model)
    d = cfg.model.downsample()
    res = cfg.data.resolution
    z = enc(torch.rand(2, 3, res, res) * 2 - 1)
    assert z.shape == (2, cfg.model.latent_channels, res // d, res // d)
    assert z.dtype == torch.float32 and torch.isfinite(z).all()
    z = enc(torch.rand(1, 3, 16, 32) * 2 - 1)  # fully convolutional: non-square input
    assert z.shape == (1, cfg.model.latent_channels, 16 // d, 32 // d)


def test_decoder_shapes_and_zero_init(cfg):
    torch.manual_seed(0)
    dec = build_decoder(cfg.model)
    c, d = cfg.model.latent_channels, cfg.model.downsample()
    for hh, ww in ((16, 16), (16, 32)):
        x = torch.randn(2, 3, hh, ww)
        z0 = torch.randn(2, c, hh // d, ww // d)
        v = dec(x, z0, torch.tensor([-3.0, 7.0]))
        assert v.shape == x.shape and v.dtype == torch.float32
        assert torch.count_nonzero(v) == 0  # zero-initialised output conv
    with pytest.raises(ValueError):
        dec(torch.randn(1, 3, 16, 16), torch.randn(1, c, 2, 2), torch.zeros(1))


def test_decoder_gradient_reaches_z0(cfg):
    torch.manual_seed(0)
    dec = build_decoder(cfg.model)
    _unzero(dec)
    c, d = cfg.model.latent_channels, cfg.model.downsample()
    z0 = torch.randn(2, c, 16 // d, 32 // d, requires_grad=True)
    x = torch.randn(2, 3, 16, 32, requires_grad=True)
    v = dec(x, z0, torch.tensor([0.0, 5.0]))
    assert torch.isfinite(v).all() and v.abs().sum() > 0
    v.square().sum().backward()
    assert z0.grad is not None and z0.grad.abs().sum() > 0 and torch.isfinite(z0.grad).all()
    assert x.grad is not None and x.grad.abs().sum() > 0
    # λ matters once the FiLM/adaLN projections are trained
    with torch.no_grad():
        assert not torch.allclose(dec(x, z0, torch.tensor([0.0, 5.0])), dec(x, z0, torch.tensor([1.0, -5.0])))


@pytest.mark.parametrize("kind", ["prior", "base"])
def test_latent_models(cfg, kind):
    torch.manual_seed(0)
    c, n = cfg.model.latent_channels, cfg.data.num_classes
    net = build_prior(cfg.model, num_classes=n) if kind == "prior" else build_base(cfg.model, n)
    side = cfg.latent_shape()[1]
    labels = torch.tensor([0, 3])
    for h, w in ((side, side), (1, 1), (3, 5), (2, 6)):  # any grid; odd sides skip the base's inner level
        z = torch.randn(2, c, h, w)
        v = net(z, torch.tensor([-8.0, 4.0]), labels)
        assert v.shape == z.shape and v.dtype == torch.float32
        assert torch.count_nonzero(v) == 0  # zero-initialised head
    _unzero(net)
    z = torch.randn(2, c, side, side, requires_grad=True)
    v = net(z, torch.tensor([-8.0, 4.0]), labels)
    assert torch.isfinite(v).all()
    v.square().sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0 and torch.isfinite(z.grad).all()
    with torch.no_grad():
        torch.nn.init.normal_(net.cond.classes.weight)  # perturb the class table
        lam = torch.tensor([0.0, 0.0])
        a = net(z, lam, torch.tensor([0, 0]))
        b = net(z, lam, torch.tensor([1, 1]))
        null = net(z, lam, None)
        null_idx = net(z, lam, torch.full((2,), n))
    assert not torch.allclose(a, b) and not torch.allclose(a, null)
    torch.testing.assert_close(null, null_idx)  # label == num_classes is the CFG null row


def test_unconditional_latent_models_ignore_labels(cfg):
    prior = build_prior(cfg.model)
    _unzero(prior)
    z = torch.randn(1, cfg.model.latent_channels, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(prior(z, torch.zeros(1)), prior(z, torch.zeros(1), torch.tensor([2])))


def test_blocks():
    emb = FourierLogSNREmbedding(32)
    e = emb(torch.linspace(-15, 15, 5))
    assert e.shape == (5, 32) and torch.isfinite(e).all()
    rb = ResBlock(8, 16, 32)
    assert rb(torch.randn(2, 8, 6, 10), e[:2]).shape == (2, 16, 6, 10)
    x = torch.randn(2, 16, 4, 4)
    torch.testing.assert_close(ResBlock(16, 16, None)(x), x)  # zero-init: identity at start
    rb3 = ResBlock(4, 4, 32, dims=3)
    assert rb3(torch.randn(1, 4, 2, 4, 4), e[:1]).shape == (1, 4, 2, 4, 4)
    tb = AdaLNTransformerBlock(32, 4, 32)
    t = torch.randn(2, 7, 32)
    torch.testing.assert_close(tb(t, e[:2]), t)  # adaLN-Zero: identity at start
    pe = sincos_pos_embed_2d(3, 5, 30, "cpu")
    assert pe.shape == (15, 30) and pe[1:].std(0)[:28].min() > 0 and len(set(map(tuple, pe.tolist()))) == 15
    img = torch.randn(2, 3, 8, 12)
    torch.testing.assert_close(unpatchify(patchify(img, 2), 2), img)
    tok = torch.randn(2, 4 * 6, 5)
    torch.testing.assert_close(split_tokens(merge_tokens(tok, 4, 6), 4, 6), tok)


def test_parameter_counts_match_built_nets(cfg):
    counts = parameter_counts(cfg.model, cfg.data.num_classes)
    assert counts["encoder"] == count_parameters(build_encoder(cfg.model))
    assert counts["base"] == count_parameters(build_base(cfg.model, cfg.data.num_classes))
    assert counts["stage1"] == counts["encoder"] + counts["prior"] + counts["decoder"]
    big = parameter_counts(resolve("imagenet-512", ["data.path=x"]).model, 1000)
    assert 100e6 < big["prior"] < 200e6 and 100e6 < big["decoder"] < 300e6


@pytest.mark.slow
def test_imagenet512_nets_forward_backward():
    """Paper-size nets at a reduced resolution (64×64 image → 4×4 latent), batch 1, one net at a time."""
    run = resolve("imagenet-512", ["data.path=x"])
    m = run.model
    c, d = m.latent_channels, m.downsample()
    torch.manual_seed(0)
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    enc = build_encoder(m)
    z = enc(x)
    assert z.shape == (1, c, 64 // d, 64 // d)
    z.square().mean().backward()
    del enc
    lam = torch.tensor([1.0])
    labels = torch.tensor([7])
    for net in (build_prior(m), build_base(m, run.data.num_classes)):
        _unzero(net)
        zt = z.detach().clone().requires_grad_(True)
        v = net(zt, lam, labels)
        assert v.shape == z.shape and torch.isfinite(v).all()
        v.square().mean().backward()
        assert zt.grad is not None and zt.grad.abs().sum() > 0
        del net
    dec = build_decoder(m)
    _unzero(dec)
    z0 = z.detach().clone().requires_grad_(True)
    v = dec(torch.randn_like(x), z0, lam)
    assert v.shape == x.shape and torch.isfinite(v).all()
    v.square().mean().backward()
    assert z0.grad is not None and z0.grad.abs().sum() > 0
