"""`ul study` reuses a finished run even after the engine gained a config field (at its default): adding a
field must not invalidate hours of study runs, while a real change of the config is still refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from ul_engine.core.config import resolve
from ul_engine.core.errors import ULError
from ul_engine.eval.study.run import _ensure_run
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


def test_a_run_stored_under_an_older_preset_description_is_reused(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    cfg = resolve("smoke", [])
    older = {**cfg.to_dict(), "description": "an older wording of the preset's description"}
    _stored(store, older, "s-desc")
    run, _ = _ensure_run(store, "s-desc", cfg, lambda _: None, create=lambda: pytest.fail("must reuse"))
    assert run.name == "s-desc"
    store.close()


def test_a_run_with_a_different_config_is_refused(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    _stored(store, resolve("smoke", ["loss.loss_factor=3"]).to_dict(), "s-lf3")
    with pytest.raises(ULError, match="exists with a different config"):
        _ensure_run(store, "s-lf3", resolve("smoke", []), print, create=lambda: pytest.fail("must refuse"))
    store.close()


def test_rate_distortion_verdict_tells_rising_partly_and_falling_apart() -> None:
    from ul_engine.eval.study.report import _rising_verdict

    lfs = ["1.3", "1.5", "2.1", "3", "10"]
    assert _rising_verdict([1, 2, 3, 4, 5], [0, 1, 2, 3, 4], lfs) == "yes"
    # collapsed runs flat within noise, then rising where the latent is open: only "partly", and it says where
    partly = _rising_verdict([0.00103, 0.00103, 0.0009, 0.083, 0.169], [3, 4], lfs)
    assert partly.startswith("partly: from c_lf 3 on; at 1.3, 1.5, 2.1 the latent is empty")
    assert _rising_verdict([0.2, 0.1, 0.3, 0.25, 0.4], [0, 1, 2, 3, 4], lfs) == "no"  # open and falling
    assert _rising_verdict([0.001, 0.2, 0.002, 0.3, 0.4], [1, 3, 4], lfs) == "no"  # an empty run among open ones


def test_evaluations_are_cached_in_the_store_per_checkpoint(tmp_path: Path) -> None:
    from ul_engine.eval.study.run import _cached

    store = Store.open(tmp_path)
    run = store.create_run(name="s-eval", stage=1, preset="smoke", config=resolve("smoke", []).to_dict())
    with pytest.raises(ULError, match="no checkpoint"):
        _cached(store, run, {"what": "recon"}, lambda: pytest.fail("nothing to evaluate"))
    store.add_checkpoint(run.id, step=10, path=store.run_dir(run.id) / "s10.safetensors", sha256="a" * 64)
    calls: list[int] = []

    def compute() -> dict:
        calls.append(1)
        return {"psnr": 20.0 + len(calls)}

    first = _cached(store, run, {"what": "recon", "n": 4}, compute)
    assert first["psnr"] == 21.0 and "eval_seconds" in first
    assert _cached(store, run, {"what": "recon", "n": 4}, compute) == first and len(calls) == 1
    assert not (store.run_dir(run.id) / "study-eval.json").exists()  # the store, not a file, holds it
    store.add_checkpoint(run.id, step=20, path=store.run_dir(run.id) / "s20.safetensors", sha256="b" * 64)
    assert _cached(store, run, {"what": "recon", "n": 4}, compute)["psnr"] == 22.0  # a newer checkpoint: again
    store.close()
