"""`train.compile`: only the transformer parts are compiled, in place, so state-dict keys (checkpoints, EMA,
exports) stay the same and a compiled run checkpoints and resumes exactly like an eager one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from ul_engine.bench.training import compile_comparison
from ul_engine.core.config import resolve
from ul_engine.core.errors import ULError
from ul_engine.data import BatchStream, make_source
from ul_engine.model import LatentBase, UnifiedLatents
from ul_engine.train import compiling
from ul_engine.train.compiling import compile_transformers, is_compiled
from ul_engine.train.loop import Trainer, make_accelerator
from ul_engine.train.stages import Stage1Objective


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """One torch thread: on 2 shared cores a 2-thread step waits at every barrier (7.5 s vs 0.1 s measured)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_only_the_transformers_are_compiled_and_keys_do_not_change() -> None:
    cfg = resolve("smoke", [])
    model = UnifiedLatents(cfg)
    keys = list(model.state_dict())
    names = compile_transformers(model)
    assert names == ["prior", *(f"decoder.mid_blocks.{i}" for i in range(cfg.model.decoder.depth))]
    assert is_compiled(model.prior) and all(is_compiled(b) for b in model.decoder.mid_blocks)
    assert not is_compiled(model.encoder) and not is_compiled(model.decoder)
    assert not any(is_compiled(m) for m in model.decoder.down_blocks.modules())
    assert list(model.state_dict()) == keys and not any("_orig_mod" in k for k in keys)
    UnifiedLatents(cfg).load_state_dict(model.state_dict())  # loads into an eager model as is

    base = LatentBase(resolve("smoke", ["stage=2"]))
    base_keys = list(base.state_dict())
    assert compile_transformers(base) == ["net"] and is_compiled(base.net)
    assert list(base.state_dict()) == base_keys


def make_trainer(tmp: Path, compiled: bool) -> Trainer:
    sets = ["optim.batch_size=4", "train.checkpoint_every=1000", f"train.compile={str(compiled).lower()}"]
    cfg = resolve("smoke", sets)
    torch.manual_seed(cfg.train.seed)
    stream = BatchStream(make_source(cfg.data), cfg.optim.batch_size, cfg.data.seed)
    acc = make_accelerator("cpu")
    return Trainer(cfg, Stage1Objective(UnifiedLatents(cfg), stream, acc.device), tmp, accelerator=acc)


def _close(a: Trainer, b: Trainer, atol: float, rtol: float) -> None:
    wa, wb = a.unwrapped.state_dict(), b.unwrapped.state_dict()
    assert list(wa) == list(wb)
    for name in wa:
        assert torch.allclose(wa[name], wb[name], atol=atol, rtol=rtol), name
    for name, t in a.ema.shadow.items():
        assert torch.allclose(t, b.ema.shadow[name], atol=atol, rtol=rtol), name


def _resumed(tmp: Path, first: int, total: int) -> Trainer:
    run = make_trainer(tmp, compiled=True)
    assert is_compiled(run.unwrapped.prior)
    run.train(first)
    resumed = make_trainer(tmp, compiled=True)
    resumed.load_checkpoint(resumed.latest_checkpoint())
    assert resumed.state.step == first
    resumed.train(total)
    return resumed


def test_compiled_training_checkpoints_and_resumes_like_eager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dynamo-wrapped parts with the eager backend: the wiring, in seconds (and the same numbers as eager)."""
    monkeypatch.setattr(compiling, "DEFAULT_OPTIONS", {"backend": "eager"})
    torch._dynamo.reset()
    eager = make_trainer(tmp_path / "eager", compiled=False)
    eager.train(3)
    _close(eager, _resumed(tmp_path / "compiled", 2, 3), atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_inductor_compiled_training_resumes_exactly(tmp_path: Path) -> None:
    """The real thing (inductor code generation, minutes on 2 CPU cores). Fused kernels round differently from
    eager, so the resumed run is compared with a straight compiled run, and with eager only loosely."""
    torch._dynamo.reset()
    straight = make_trainer(tmp_path / "straight", compiled=True)
    straight.train(3)
    _close(straight, _resumed(tmp_path / "resumed", 2, 3), atol=1e-6, rtol=0)
    eager = make_trainer(tmp_path / "eager", compiled=False)
    eager.train(3)
    _close(eager, straight, atol=2e-3, rtol=0)


def test_bench_compile_failure_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_compiler(graph: object, inputs: object) -> object:
        raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found")

    monkeypatch.setattr(compiling, "DEFAULT_OPTIONS", {"backend": no_compiler})
    torch._dynamo.reset()
    cfg = resolve("smoke", ["optim.batch_size=4"])
    stream = BatchStream(make_source(cfg.data), cfg.optim.batch_size, cfg.data.seed)
    acc = make_accelerator("cpu")
    with pytest.raises(ULError, match=r"torch.compile failed .*C\+\+ compiler"):
        compile_comparison(cfg, stream, acc, "cpu", steps=1, stages=(2,))
