"""The sampling precision: chosen per machine (bf16 only where AMX makes it fast), overridable, and a bf16
decode that pictures the same thing as the fp32 one."""

from __future__ import annotations

import pytest
import torch

from ul_engine.core.config import resolve
from ul_engine.core.errors import ULError
from ul_engine.diffusion import precision
from ul_engine.model import UnifiedLatents


def test_auto_follows_amx_and_the_override_wins(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(precision.PRECISION_ENV, raising=False)
    for amx, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(precision, "cpu_has_amx", lambda amx=amx: amx)
        assert precision.sampling_precision("cpu") == expected
        assert precision.sampling_precision("meta") == "fp32", "only the CPU path changes"
    monkeypatch.setenv(precision.PRECISION_ENV, "FP32")
    monkeypatch.setattr(precision, "cpu_has_amx", lambda: True)
    assert precision.sampling_precision() == "fp32"
    monkeypatch.setenv(precision.PRECISION_ENV, "bf16")
    monkeypatch.setattr(precision, "cpu_has_amx", lambda: False)
    assert precision.sampling_precision() == "bf16"
    monkeypatch.setenv(precision.PRECISION_ENV, "half")
    with pytest.raises(ULError, match="auto, fp32, bf16"):
        precision.sampling_precision()


def test_a_bf16_decode_matches_the_fp32_one(monkeypatch: pytest.MonkeyPatch):
    torch.manual_seed(0)
    model = UnifiedLatents(resolve("smoke")).eval()
    with torch.no_grad():  # an untrained decoder's zero-initialised output layer would hide the networks
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    z0 = model.noisy_latent(model.encode(torch.rand(4, 3, 16, 16) * 2 - 1))
    out = {}
    for choice in ("fp32", "bf16"):
        monkeypatch.setenv(precision.PRECISION_ENV, choice)
        out[choice] = model.decode(z0, steps=4, seeds=[0, 1, 2, 3])
    assert out["bf16"].dtype == torch.float32, "the sampler's arithmetic stays fp32"
    assert not torch.equal(out["bf16"], out["fp32"]), "the override reaches the networks"
    assert (out["bf16"] - out["fp32"]).abs().max() < 0.1
