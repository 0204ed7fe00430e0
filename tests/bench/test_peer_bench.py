"""The diffusers peer of `ul bench --peer`: sized to our stage-1 model within 10 %, trains, and without
diffusers the bench says how to install it."""

from __future__ import annotations

import sys

import pytest
import torch

from ul_engine.core.config import resolve
from ul_engine.core.errors import ULError

try:
    import diffusers  # noqa: F401

    HAVE_DIFFUSERS = True
except ImportError:  # pragma: no cover - the [bench] extra is installed in the dev venv
    HAVE_DIFFUSERS = False
needs_diffusers = pytest.mark.skipif(not HAVE_DIFFUSERS, reason="diffusers (the [bench] extra) is not installed")


@needs_diffusers
@pytest.mark.parametrize("preset", ["shapes-32", "smoke"])
def test_peer_parameter_count_matches_ours_within_ten_percent(preset: str) -> None:
    from ul_engine.bench.peer import PeerAutoencoder, count_parameters, match_width, our_parameters, peer_parameters

    cfg = resolve(preset, [])
    ours = our_parameters(cfg)
    width, params = match_width(cfg)
    assert abs(params - ours) <= 0.10 * ours
    # the closest width: one step narrower or wider is no closer
    for other in (width - 4, width + 4):
        assert abs(peer_parameters(cfg, other) - ours) >= abs(params - ours)
    assert count_parameters(PeerAutoencoder(cfg, width)) == params  # the meta-device count is the real one


@needs_diffusers
def test_peer_sizing_refuses_an_impossible_target() -> None:
    from ul_engine.bench.peer import match_width

    with pytest.raises(ULError, match="within 10%"):
        match_width(resolve("smoke", []), target=1000)


@needs_diffusers
def test_peer_trains_on_our_batch_shape() -> None:
    from ul_engine.bench.peer import PeerAutoencoder, match_width

    cfg = resolve("smoke", [])
    torch.manual_seed(0)
    peer = PeerAutoencoder(cfg, match_width(cfg)[0])
    x = torch.rand(4, 3, cfg.data.resolution, cfg.data.resolution) * 2 - 1
    loss = peer(x)
    loss.backward()
    assert torch.isfinite(loss) and loss.item() > 0
    assert peer.encoder.conv_in.weight.grad.abs().sum() > 0  # the latent feeds the decoder's loss
    assert peer.encoder(x).shape[1:] == cfg.latent_shape()


def test_without_diffusers_the_bench_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from ul_engine.bench.peer import require_diffusers
    from ul_engine.cli.main import main as ul_main

    monkeypatch.setitem(sys.modules, "diffusers", None)  # import diffusers now raises ImportError
    with pytest.raises(ULError, match=r"ul-studio\[bench\]"):
        require_diffusers()
    assert ul_main(["bench", "--preset", "smoke", "--peer", "--json"]) == 2
