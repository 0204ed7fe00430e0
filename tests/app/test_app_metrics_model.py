"""Series reach the plots from a background thread, incrementally: appended steps are read alone, a
rewritten series (a resumed run) is read again in full."""

from __future__ import annotations

import time

import numpy as np

from app.models.metrics_model import MetricsModel, SeriesBuffer, SeriesUpdate


def log(store, run_id: int, steps: range, scale: float = 1.0) -> None:
    store.log_metrics(run_id, [(s, time.time(), {"loss/total": scale / s, "optim/lr": 1e-3}) for s in steps])


def test_series_arrive_then_grow_by_appends(qtbot, store, home) -> None:
    run = store.create_run(name=None, stage=1, preset="smoke", config={})
    log(store, run.id, range(1, 101))
    model = MetricsModel(home)
    modes = []
    fetch = model.fetcher.fetch

    def seen(run_ids, report):  # what each read delivered, as the fetcher reports it
        def record(update):
            if isinstance(update, SeriesUpdate):
                modes.append((update.key, update.mode, len(update.steps)))
            report(update)

        fetch(run_ids, record)

    model.fetcher.fetch = seen
    try:
        model.watch([run.id])
        qtbot.waitUntil(lambda: len(model.get(run.id, "loss/total") or []) == 100, timeout=120_000)
        assert model.keys(run.id) == ["loss/total", "optim/lr"]
        buf = model.get(run.id, "loss/total")
        assert buf.steps.dtype == np.float64 and buf.steps[0] == 1 and buf.steps[-1] == 100
        np.testing.assert_allclose(buf.values, 1.0 / np.arange(1, 101))

        modes.clear()
        log(store, run.id, range(101, 151))
        model.poll()
        qtbot.waitUntil(lambda: len(model.get(run.id, "loss/total")) == 150, timeout=120_000)
        assert ("loss/total", "append", 50) in modes

        modes.clear()
        store.truncate_metrics(run.id, 120)  # a resume from step 120 re-logs what follows
        log(store, run.id, range(121, 161), scale=2.0)
        model.poll()
        qtbot.waitUntil(lambda: len(model.get(run.id, "loss/total")) == 160, timeout=120_000)
        assert ("loss/total", "replace", 160) in modes
        assert model.get(run.id, "loss/total").values[-1] == 2.0 / 160
    finally:
        model.shutdown()


def test_buffer_appends_double_capacity_and_keep_views_valid() -> None:
    buf = SeriesBuffer("k")
    seen = []
    for start in range(0, 5000, 700):
        steps = np.arange(start, start + 700, dtype=np.float64)
        buf.append(steps, steps * 2, steps)
        seen.append(buf.steps)  # a view handed to a plot earlier must not change under it
    assert len(buf) == 5600 and buf.values[-1] == 2 * 5599
    for view in seen:
        np.testing.assert_array_equal(view, np.arange(len(view), dtype=np.float64))
    x, y = buf.smoothed(0.9)
    assert len(x) == len(y) == 5600
