"""The Monitor plots every logged term with smoothing, log axes, step or time x and a hover read-out,
shows the previews with a slider, evaluation metrics when present, and overlays other runs."""

from __future__ import annotations

import time

import numpy as np
import pytest
from ul_app_testkit import STAGE1_KEYS, save_artifact, seed_run

from app.smoothing import ema_debiased


def open_monitor(qtbot, window, run_id, overlays=()):
    monitor = window.open_monitor(run_id, list(overlays))
    qtbot.waitUntil(lambda: monitor.panels.get("total") is not None and monitor.panels["total"].has_data(),
                    timeout=120_000)  # fmt: skip
    monitor.flush()
    return monitor


def curve(monitor, panel_id, run_id, key):
    return monitor.panels[panel_id].curves[f"{run_id}|{key}"]


def test_every_logged_term_gets_a_curve(qtbot, store, window) -> None:
    run_id = seed_run(store, name="plotted", steps=80)
    monitor = open_monitor(qtbot, window, run_id)
    qtbot.waitUntil(lambda: all(monitor.metrics.get(run_id, k) is not None for k in STAGE1_KEYS), timeout=120_000)
    monitor.flush()
    plotted = {key for panel in monitor.panels.values() if panel.isVisible() for key in panel.spec.keys
               if f"{run_id}|{key}" in panel.curves}  # fmt: skip
    assert plotted == set(STAGE1_KEYS)
    c = curve(monitor, "total", run_id, "loss/total")
    assert c.data.raw_x.dtype == np.float64 and len(c.data.raw_x) == 80
    x, _y = c.raw.getData()
    assert len(x) > 0  # pyqtgraph holds the points (downsampled for the screen)
    for panel_id in ("rate", "decoder", "total", "kl1", "lr", "grad", "speed"):
        assert monitor.panels[panel_id].isVisible()
    assert "psnr" not in monitor.panels  # no evaluation logged
    save_artifact(window, "page-monitor")


def test_smoothing_is_the_debiased_ema_of_the_raw_values(qtbot, store, window) -> None:
    run_id = seed_run(store, steps=60)
    monitor = open_monitor(qtbot, window, run_id)
    monitor.options.smoothing.setValue(90)
    c = curve(monitor, "total", run_id, "loss/total")
    raw = monitor.metrics.get(run_id, "loss/total").values
    np.testing.assert_allclose(c.data.smooth_y, ema_debiased(raw, 0.9))
    assert c.smooth.isVisible() and c.raw.opts["pen"].color().alpha() < 255  # raw drawn faintly behind
    monitor.options.smoothing.setValue(0)
    assert not c.smooth.isVisible() and c.raw.opts["pen"].color().alpha() == 255
    assert window.settings.smoothing() == 0.0


def test_log_axes_time_axis_and_readout(qtbot, store, window) -> None:
    run_id = seed_run(store, steps=60)
    monitor = open_monitor(qtbot, window, run_id)
    monitor.options.log_x.setChecked(True)
    monitor.options.log_y.setChecked(True)
    panel = monitor.panels["total"]
    assert panel.item.ctrl.logXCheck.isChecked() and panel.item.ctrl.logYCheck.isChecked()
    monitor.options.log_x.setChecked(False)
    monitor.options.log_y.setChecked(False)

    monitor.options.x_axis.setCurrentIndex(monitor.options.x_axis.findData("time"))
    c = curve(monitor, "total", run_id, "loss/total")
    walls = monitor.metrics.get(run_id, "loss/total").walls
    np.testing.assert_allclose(c.data.raw_x, (walls - walls.min()) / 60.0)
    monitor.options.x_axis.setCurrentIndex(monitor.options.x_axis.findData("step"))

    html = panel.show_readout(30.2)
    value = monitor.metrics.get(run_id, "loss/total").values[29]
    assert "step 30" in html and f"{value:.5g}" in html
    assert panel.hover_line.isVisible()


def test_previews_slider_goes_back_in_time(qtbot, store, window) -> None:
    run_id = seed_run(store, steps=60, previews=3)
    monitor = open_monitor(qtbot, window, run_id)
    assert monitor.previews.slider.maximum() == 2 and monitor.previews.slider.value() == 2
    assert monitor.previews.caption.text().startswith("step 60 · 3 of 3")
    assert "reconstructions" in monitor.previews.caption.text()
    monitor.previews.slider.setValue(0)
    assert monitor.previews.caption.text().startswith("step 20 · 1 of 3")
    assert len(monitor.previews.strip.thumbs) == 1  # no recorded layout: the preview whole


def test_stage2_and_evaluation_panels_appear_with_their_metrics(qtbot, store, window) -> None:
    parent = seed_run(store, name="base", steps=40)
    keys = ("loss/total", "loss/base_weighted", "loss/base_elbo", "rate/base_bits_per_pixel", "optim/lr")
    child = seed_run(store, name="gen", stage=2, steps=40, keys=keys, parent_run_id=parent)
    store.log_metrics(parent, [(40, time.time(), {"eval/psnr": 21.5, "eval/bits_per_pixel": 0.07})])
    window.ctx.repo.refresh()
    monitor = open_monitor(qtbot, window, child)
    assert monitor.panels["base"].isVisible() and "decoder" not in monitor._panel_order
    assert "samples" in monitor.previews.caption.text()
    monitor.show_runs(parent)
    qtbot.waitUntil(lambda: "psnr" in monitor._panel_order and "eval_bpp" in monitor._panel_order, timeout=120_000)
    page = window.runs
    row = next(r for r in range(page.proxy.rowCount()) if page.proxy.index(r, 0).data() == "base")
    qtbot.waitUntil(lambda: page.proxy.index(row, 5).data() == "21.50 dB")


def test_overlays_get_their_own_colours(qtbot, store, window) -> None:
    a, b = seed_run(store, name="first"), seed_run(store, name="second", seed=5)
    monitor = open_monitor(qtbot, window, a, [b])
    qtbot.waitUntil(lambda: f"{b}|loss/total" in monitor.panels["total"].curves, timeout=120_000)
    ca, cb = curve(monitor, "total", a, "loss/total"), curve(monitor, "total", b, "loss/total")
    assert ca.color != cb.color and ca.primary and not cb.primary
    assert ca.label == "first" and cb.label == "second"
    for panel_id in ("total", "decoder"):  # a legend line under the plot names every curve
        legend = monitor.panels[panel_id].legend
        assert legend.isVisible() and "first" in legend.text() and "second" in legend.text()
    assert "first" in monitor.picker.overlay_label.text() and "second" in monitor.picker.overlay_label.text()
    save_artifact(window, "page-monitor-compare")
    monitor.show_runs(a, [])
    assert list(monitor.panels["total"].curves) == [f"{a}|loss/total"]


@pytest.mark.parametrize(
    ("page", "cls"), [("reconstruct", "ReconstructPage"), ("latents", "LatentsPage"), ("generate", "GeneratePage")]
)
def test_every_page_is_the_real_one(qtbot, window, page, cls) -> None:
    window.show_page(page)
    widget = window.pages[page]
    assert type(widget).__name__ == cls
    save_artifact(window, f"page-{page}")


def test_monitor_draws_a_million_points_per_curve_as_columns(qtbot, ctx, window) -> None:
    """4 curves × 1 000 000 points: what reaches the screen is bounded by the plot's pixel columns (min and
    max per column), not by the data. The redraw's speed is `python -m app.bench`'s (docs/benchmarks.md)."""
    monitor = window.page("monitor")
    window.show_page("monitor")
    n = 1_000_000
    steps = np.arange(1, n + 1, dtype=np.float64)
    rng = np.random.default_rng(0)
    monitor.run_id = 1
    monitor.metrics.watched = [1]
    keys = ("loss/total", "loss/decoder", "rate/bits_per_pixel", "optim/grad_norm")
    for key in keys:
        monitor.metrics.put(1, key, steps, np.cumsum(rng.standard_normal(n)) + 1000, steps)
    monitor.options.smoothing.setValue(0)
    monitor._relayout_panels()
    monitor.flush()
    window.grab()
    drawn = [p for p in monitor.panels.values() if p.has_data()]
    assert len(drawn) >= len(keys) - 1  # the decoder's two terms may share one panel
    for panel in drawn:
        assert 0 < panel.drawn_points <= 2 * panel._columns() * len(panel.curves) + 8, panel.drawn_points
