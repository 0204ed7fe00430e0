"""What the decoder computes once per decode instead of at every sampling step, and its faster upsampling, give
the same bits as computing everything afresh at every step: seeded reconstructions are unchanged by them."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ul_engine.core.config import resolve
from ul_engine.diffusion import samplers
from ul_engine.inference.tiling import Tiled
from ul_engine.model import UnifiedLatents
from ul_engine.nets.blocks import nearest_up


@pytest.fixture(scope="module")
def model() -> UnifiedLatents:
    """The smoke model with every weight random, so that no zero-initialised layer hides a difference."""
    torch.manual_seed(0)
    m = UnifiedLatents(resolve("smoke", [])).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=g))
    return m


class Afresh:
    """The model with the decoder's z0-only inputs recomputed at every call, whatever the caller precomputed."""

    def __init__(self, inner: UnifiedLatents) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def decoder_x_hat(
        self, x_t: torch.Tensor, z0: torch.Tensor, logsnr: torch.Tensor, condition: object = None
    ) -> torch.Tensor:
        return self.inner.decoder_x_hat(x_t, z0, logsnr)


@pytest.mark.parametrize(
    ("shape", "factors", "layout"),
    [
        ((2, 5, 3, 4), (2, 2), torch.contiguous_format),
        ((2, 5, 3, 4), (4, 4), torch.channels_last),
        ((2, 5, 3, 4, 6), (1, 2, 2), torch.contiguous_format),
        ((2, 5, 3, 4, 6), (2, 2, 2), torch.channels_last_3d),
    ],
)
def test_nearest_up_is_interpolate_bit_for_bit(shape: tuple, factors: tuple, layout: torch.memory_format) -> None:
    """Same values and the same memory layout (the convolution after it picks its kernel by layout)."""
    x = torch.randn(shape).contiguous(memory_format=layout)
    expected = F.interpolate(x, scale_factor=tuple(float(f) for f in factors), mode="nearest")
    got = nearest_up(x, factors)
    assert torch.equal(got, expected)
    assert got.stride() == expected.stride()
    with pytest.raises(ValueError, match="factors"):
        nearest_up(x, factors[:1])


def test_decoder_condition_computed_once_equals_recomputed(model: UnifiedLatents) -> None:
    z0 = torch.randn(3, 4, 4, 4)
    x_t = torch.randn(3, 3, 16, 16)
    logsnr = torch.tensor([-3.0, 0.5, 4.0])
    with torch.no_grad():
        condition = model.decoder_condition(z0)
        assert torch.equal(model.decoder_x_hat(x_t, z0, logsnr, condition), model.decoder_x_hat(x_t, z0, logsnr))
        # a whole seeded decode (the condition reused over 4 steps) against one recomputing it at every step
        reused = model.decode(z0, steps=4, seeds=[1, 2, 3])
        grid = model.image_schedule.grid(4)
        afresh = samplers.sample(
            lambda x, lam: model.decoder_x_hat(x, z0, lam), grid, samplers.PerSampleNoise([1, 2, 3], z0.device),
            model.pixel_shape(z0), sampler="ancestral", final="prediction",
        )  # fmt: skip
    assert torch.equal(reused, afresh)


def test_blended_windows_with_the_condition_reused_equal_recomputed(
    model: UnifiedLatents, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The windows' conditions are computed once per chunk of windows: they must line up with the windows of every
    step, also when the windows take several chunks (a small chunk size forces that here)."""
    from ul_engine.inference import tiling

    z0 = torch.randn(1, 4, 8, 12)  # a 32×48 image: 2×3 tiles of 16 px, 3×4 windows with the overlap
    reused = Tiled(model, 16, overlap=4)
    afresh = Tiled(Afresh(model), 16, overlap=4)
    with torch.no_grad():
        for chunk in (tiling.CHUNK, 4):
            monkeypatch.setattr(tiling, "CHUNK", chunk)
            a = reused.decode(z0, steps=2, seeds=[5])
            b = afresh.decode(z0, steps=2, seeds=[5])
            assert torch.equal(a, b)
            assert a.shape == (1, 3, 32, 48)
