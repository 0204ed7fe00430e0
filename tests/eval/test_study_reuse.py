"""`ul study` reuses a finished run even after the engine gained a config field (at its default): adding a
field must not invalidate hours of study runs, while a real change of the config is still refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from ul_engine.core.config import resolve
from ul_engine.core.errors import ULError
from ul_engine.eval.study import _ensure_run
from ul_engine.store import Store


def _stored(store: Store, cfg_dict: dict, name: str) -> None:
    run = store.create_run(name=name, stage=1, preset="smoke", config=cfg_dict, total_steps=60)
    store.transition(run.id, "running")
    store.transition(run.id, "completed", step=60)


def test_a_run_stored_before_a_new_default_field_is_reused(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    cfg = resolve("smoke", [])
    older = cfg.to_dict()
    del older["optim"]["cooldown"]  # as written by an engine that had no such field
    _stored(store, older, "s-old")
    logs: list[str] = []
    run, _ = _ensure_run(store, "s-old", cfg, logs.append, create=lambda: pytest.fail("must reuse"))
    assert run.name == "s-old" and logs == ["s-old: reusing the completed run (60 steps)"]
    store.close()


def test_a_run_with_a_different_config_is_refused(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    _stored(store, resolve("smoke", ["loss.loss_factor=3"]).to_dict(), "s-lf3")
    with pytest.raises(ULError, match="exists with a different config"):
        _ensure_run(store, "s-lf3", resolve("smoke", []), print, create=lambda: pytest.fail("must refuse"))
    store.close()


def test_rate_distortion_verdict_tells_rising_partly_and_falling_apart() -> None:
    from ul_engine.eval.study import _rising_verdict

    lfs = ["1.3", "1.5", "2.1", "3", "10"]
    assert _rising_verdict([1, 2, 3, 4, 5], [0, 1, 2, 3, 4], lfs) == "yes"
    # collapsed runs flat within noise, then rising where the latent is open: only "partly", and it says where
    partly = _rising_verdict([0.00103, 0.00103, 0.0009, 0.083, 0.169], [3, 4], lfs)
    assert partly.startswith("partly: from c_lf 3 on; at 1.3, 1.5, 2.1 the latent is empty")
    assert _rising_verdict([0.2, 0.1, 0.3, 0.25, 0.4], [0, 1, 2, 3, 4], lfs) == "no"  # open and falling
    assert _rising_verdict([0.001, 0.2, 0.002, 0.3, 0.4], [1, 3, 4], lfs) == "no"  # an empty run among open ones
