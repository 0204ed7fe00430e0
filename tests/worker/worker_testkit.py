"""What the worker tests share: a smoke run in a store, and a wait whose deadline only catches a hang."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from ul_engine.core.config import resolve
from ul_engine.store import Store

HANG_S = 300.0


def wait_for(predicate: Callable[[], bool], timeout: float = HANG_S, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def make_run(store: Store, name: str, **overrides: object) -> int:
    """A stage-1 smoke run (60 steps, one thread) as `ul train` would create it, with config overrides."""
    sets = {"train.checkpoint_every": 20, "train.steps": 60, "train.threads": 1, **overrides}
    cfg = resolve("smoke", [f"{k}={json.dumps(v)}" for k, v in sets.items()])
    return store.create_run(name=name, stage=1, preset="smoke", config=cfg.to_dict(), total_steps=cfg.train.steps).id
