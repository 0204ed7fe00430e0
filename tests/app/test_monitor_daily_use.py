"""The Monitor in daily use: it follows the run just started and the run re-attached at launch, its log
opens at the newest line, wraps and follows; its plots have readable log ticks, titles in words with units,
legends that cover no data, no smoothing where there is no noise, an ETA of the current session and a PSNR
curve; its previews are thumbnails that open at full size with input, reconstruction and difference."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPoint, QRect, Qt
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import QAbstractSlider
from ul_app_testkit import fake_command, save_artifact, seed_run

from app.main_window import MainWindow
from ul_engine.core.imaging import grid, save_png
from ul_engine.core.reconstruction import abs_difference
from ul_engine.store import liveness


def wait_for_data(qtbot, monitor, panel_id="total"):
    qtbot.waitUntil(lambda: monitor.panels.get(panel_id) is not None and monitor.panels[panel_id].has_data(),
                    timeout=120_000)  # fmt: skip
    monitor.flush()


# ---- following runs ---------------------------------------------------------------------------------


def test_create_and_start_switches_the_monitor_to_the_new_run(qtbot, store, home, make_ctx) -> None:
    old = seed_run(store, name="old", steps=20)
    ctx = make_ctx(command_factory=fake_command(home, "sleep"))
    window = MainWindow(ctx, restore=False)
    qtbot.addWidget(window)
    window.show()
    ctx.start()
    monitor = window.open_monitor(old)
    assert monitor.run_id == old and not monitor.controls.stop_button.isEnabled()  # a finished run has nothing to stop

    window.show_page("runs")
    window.runs.new_run()
    dialog = window.runs.last_dialog
    dialog.name.setText("fresh")
    qtbot.mouseClick(dialog.create_start, Qt.MouseButton.LeftButton)
    fresh = store.get_run("fresh").id
    assert window.current_page_id() == "monitor" and monitor.run_id == fresh
    assert monitor.controls.stop_button.isEnabled()  # queued: Stop takes it out of the queue
    qtbot.waitUntil(lambda: store.get_run(fresh).status == "running", timeout=120_000)
    qtbot.waitUntil(lambda: "running" in monitor.controls.status.text(), timeout=120_000)
    assert monitor.controls.stop_button.isEnabled() and monitor.controls.pause_button.isEnabled()
    ctx.runner.stop_run(fresh)
    qtbot.waitUntil(lambda: fresh not in ctx.runner.processes, timeout=120_000)


def test_a_relaunch_shows_the_reattached_run_at_once_never_no_run_selected(
    qtbot, store, home, make_ctx, settings
) -> None:
    run_id = store.create_run(name="background", stage=1, preset="smoke", config={}, total_steps=10**9).id
    first = make_ctx(command_factory=fake_command(home, "sleep"))
    first.start()
    first.runner.enqueue(run_id, "cpu")
    qtbot.waitUntil(lambda: len(store.read_metric(run_id, "loss/total").steps) >= 3, timeout=120_000)
    first.shutdown(detach=True)  # "keep training": the app goes, the worker stays
    settings.set_last_page("monitor")

    ctx = make_ctx()
    window = MainWindow(ctx, restore=True)  # the Monitor is built here, before any event is processed
    qtbot.addWidget(window)
    monitor = window.pages["monitor"]
    assert monitor.run_id == run_id
    assert monitor.empty.isHidden() and "total" in monitor._panel_order  # panels stand before data arrives
    shown_empty = []
    monitor.empty.setText = shown_empty.append  # any empty state would say so
    window.show()
    ctx.start()
    assert ctx.runner.process_for(run_id) is not None  # re-attached
    wait_for_data(qtbot, monitor)
    assert monitor.empty.isHidden() and not shown_empty
    assert monitor.controls.stop_button.isEnabled()
    ctx.runner.stop_run(run_id)
    qtbot.waitUntil(lambda: run_id not in ctx.runner.processes, timeout=120_000)


def test_the_log_opens_at_its_newest_line_wraps_and_follows_unless_scrolled_up(qtbot, store, home, window) -> None:
    run_id = seed_run(store, name="logged", steps=20)
    logs = home / "runs" / str(run_id) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    lines = [f"line {i}: " + ("a long warning that goes on " * 12 if i % 7 == 0 else "ok") for i in range(300)]
    (logs / "worker-1.events.jsonl").write_text("\n".join(lines) + "\n")
    window.resize(1280, 800)
    monitor = window.open_monitor(run_id)
    qtbot.wait(50)
    log = monitor.log
    bar = log.verticalScrollBar()
    assert bar.maximum() > 0 and bar.value() == bar.maximum()  # opened at the newest line
    assert log.horizontalScrollBar().maximum() == 0  # long lines wrap: nothing is cut at the right edge
    assert log.toPlainText().endswith("line 299: ok")

    window.ctx.runner.log_line.emit(run_id, "newest " * 40)
    qtbot.wait(20)
    assert bar.value() == bar.maximum()  # follows the bottom
    bar.triggerAction(QAbstractSlider.SliderAction.SliderToMinimum)  # the reader scrolls up to read
    qtbot.wait(20)
    window.ctx.runner.log_line.emit(run_id, "another line")
    qtbot.wait(20)
    assert bar.value() == 0
    bar.triggerAction(QAbstractSlider.SliderAction.SliderToMaximum)  # back at the bottom: following again
    qtbot.wait(20)
    window.ctx.runner.log_line.emit(run_id, "and one more")
    qtbot.wait(20)
    assert bar.value() == bar.maximum()


# ---- plots ------------------------------------------------------------------------------------------


def tick_labels(panel) -> list:
    """(text, rect) of the value axis' labels as pyqtgraph draws them (after it sized the axis for them)."""
    axis = panel.item.getAxis("left")
    for _ in range(3):
        panel.grab()
    image = panel.plot.grab()
    painter = QPainter(image)
    try:
        _axis, _ticks, texts = axis.generateDrawSpecs(painter)
    finally:
        painter.end()
    return [(text, rect) for rect, _flags, text in texts if text]


def test_log_y_tick_labels_are_few_whole_and_never_overlap(qtbot, store, window) -> None:
    run_id = seed_run(store, steps=200)  # KL falls over decades, the learning rate warms up over one
    monitor = window.open_monitor(run_id)
    wait_for_data(qtbot, monitor, "kl1")
    monitor.options.log_y.setChecked(True)
    for panel_id in ("kl1", "lr", "total"):
        panel = monitor.panels[panel_id]
        panel.plot.setFixedHeight(panel.plot.minimumHeight())  # the smallest plot the page makes
        labels = tick_labels(panel)
        texts = [t for t, _ in labels]
        assert len(texts) >= 2 and len(set(texts)) == len(texts), (panel_id, texts)
        rects = [r for _, r in labels]
        overlapping = [(texts[i], texts[j]) for i in range(len(rects)) for j in range(i + 1, len(rects))
                       if rects[i].intersects(rects[j])]  # fmt: skip
        assert not overlapping, (panel_id, overlapping)
    save_artifact(window, "monitor-log-y")


def test_every_plot_is_titled_in_words_with_its_unit(qtbot, store, window) -> None:
    run_id = seed_run(store, steps=40)
    store.log_metrics(run_id, [(20, time.time(), {"preview/psnr": 18.5}), (40, time.time(), {"preview/psnr": 21.0})])
    window.ctx.repo.reread(run_id)
    monitor = window.open_monitor(run_id)
    qtbot.waitUntil(lambda: "preview_psnr" in monitor._panel_order, timeout=120_000)
    titles = {pid: monitor.panels[pid].title.text() for pid in monitor._panel_order}
    for pid, title in titles.items():
        words = re.sub("<[^>]+>", "", title).split("(")[0]
        assert "/" not in words and "_" not in words, f"{pid} is titled with a raw metric name: {title}"
        assert title.rstrip().endswith(")"), f"{pid} has no unit: {title}"
    assert titles["z_std"].startswith("<b>Latent spread</b>")
    assert titles["nats"] == "<b>Latent rate per image</b> (nats / image)"
    assert titles["bad_steps"] == "<b>Skipped steps</b> (steps)"
    assert titles["preview_psnr"].endswith("(dB)")
    wait_for_data(qtbot, monitor, "preview_psnr")
    x, y = monitor.panels["preview_psnr"].curves[f"{run_id}|preview/psnr"].raw.getData()
    assert list(x) == [20, 40] and list(y) == [18.5, 21.0]  # the PSNR curve during training


def test_legends_with_three_runs_cover_no_data_and_can_be_hidden(qtbot, store, window) -> None:
    runs = [seed_run(store, name=name, seed=i) for i, name in enumerate(("alpha", "beta", "gamma"))]
    monitor = window.open_monitor(runs[0], runs[1:])
    qtbot.waitUntil(lambda: all(f"{r}|loss/decoder_elbo" in monitor.panels["decoder"].curves for r in runs),
                    timeout=120_000)  # fmt: skip
    monitor.flush()
    qtbot.wait(50)  # the legends' lines are laid out
    for panel_id in ("decoder", "total"):
        panel = monitor.panels[panel_id]
        legend = panel.legend
        assert legend.isVisible() and all(name in legend.text() for name in ("alpha", "beta", "gamma"))
        plot_area = QRect(panel.plot.mapTo(panel, QPoint(0, 0)), panel.plot.size())
        legend_area = QRect(legend.mapTo(panel, QPoint(0, 0)), legend.size())
        assert not plot_area.intersects(legend_area)  # beside the data, never over it
    assert not any(isinstance(c, pg.LegendItem) for c in monitor.panels["decoder"].item.vb.childItems())
    save_artifact(window, "monitor-three-runs")
    monitor.options.legends.setChecked(False)
    assert not monitor.panels["decoder"].legend.isVisible()
    assert window.settings.plot_flag("legends", True) is False


def test_the_learning_rate_and_counters_are_never_smoothed(qtbot, store, window) -> None:
    run_id = seed_run(store, steps=60)
    monitor = window.open_monitor(run_id)
    wait_for_data(qtbot, monitor, "lr")
    monitor.options.smoothing.setValue(90)
    for panel_id in ("lr", "bad_steps"):
        c = monitor.panels[panel_id].curves[f"{run_id}|{monitor.panels[panel_id].spec.keys[0]}"]
        assert c.data.smooth_y is None and not c.smooth.isVisible()
        assert c.raw.opts["pen"].color().alpha() == 255  # drawn solid, as logged
    lr = monitor.panels["lr"].curves[f"{run_id}|optim/lr"]
    np.testing.assert_array_equal(lr.raw.getData()[1], monitor.metrics.get(run_id, "optim/lr").values)
    total = monitor.panels["total"].curves[f"{run_id}|loss/total"]
    assert total.smooth.isVisible() and total.data.smooth_y is not None


def test_the_eta_after_a_resume_counts_only_the_new_session(qtbot, store, make_ctx) -> None:
    now = time.time()
    run = store.create_run(name="resumed", stage=1, preset="smoke", config={}, total_steps=200)
    # the first session: 80 steps at 10 steps/s until 20 s ago; the resumed one: 1 step/s from step 81
    old = [(s, now - 28 + (s - 1) * 0.1, {"loss/total": 1.0 / s}) for s in range(1, 81)]
    new = [(s, now - 5 + (s - 81), {"loss/total": 1.0 / s}) for s in range(81, 86)]
    store.log_metrics(run.id, old + new)
    started = datetime.now(UTC) - timedelta(seconds=15)
    store.transition(run.id, "running", step=85, started_at=started, **liveness.this_process())  # this process: alive
    ctx = make_ctx()
    window = MainWindow(ctx, restore=False)  # not started: no runner to re-attach a worker that does not exist
    qtbot.addWidget(window)
    window.show()
    monitor = window.open_monitor(run.id)
    qtbot.waitUntil(lambda: len(monitor.metrics.get(run.id, "loss/total") or []) == 85, timeout=120_000)
    monitor._update_status()
    assert monitor.controls.eta.text().startswith("1.00 steps/s · ETA 1 min 55 s"), monitor.controls.eta.text()


def test_the_session_rate_starts_over_on_a_resume_and_is_smoothed() -> None:
    from app.models.run_progress import SessionRate

    rate = SessionRate()
    assert rate.add(100.0, 10) is None  # one report: no speed yet
    for i in range(1, 11):
        rate.add(100.0 + i, 10 + 2 * i)
    assert abs(rate.rate - 2.0) < 1e-9
    rate.add(111.0, 33)  # one fast report moves it a little, not all the way
    assert 2.0 < rate.rate < 13.0 * 0.5
    rate.add(170.0, 40)  # a minute without reports (paused, restarted): a new session
    assert rate.rate is None and rate.last == (170.0, 40)
    rate.add(171.0, 5)  # the step went back (resumed from an earlier checkpoint)
    assert rate.rate is None
    rate.add(172.0, 8)
    assert rate.rate == 3.0


def test_a_burst_of_reports_read_at_once_does_not_make_a_huge_speed() -> None:
    """A worker's progress lines can be read in one chunk: the first interval is microseconds long."""
    from app.models.run_progress import SessionRate

    rate = SessionRate()
    rate.add(100.0, 10)
    for i in range(1, 9):  # eight reports handled within 8 µs
        rate.add(100.0 + i * 1e-6, 10 + i)
    assert rate.rate is None  # nothing measured yet
    rate.add(102.0, 20)
    assert rate.rate == 5.0  # 10 steps over the 2 s since the last interval that counted


# ---- previews ---------------------------------------------------------------------------------------


def preview_run(store, count: int = 8, size: int = 32) -> tuple[int, np.ndarray, np.ndarray]:
    """A run with one stage-1 preview grid as the worker writes it: inputs above reconstructions."""
    run_id = seed_run(store, name="previewed", steps=20, previews=0)
    rng = np.random.default_rng(4)
    inputs = rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8)
    recons = np.clip(inputs.astype(int) + rng.integers(-20, 21, inputs.shape), 0, 255).astype(np.uint8)
    tiles = grid(np.concatenate([inputs, recons]), cols=count)
    scale = max(1, 128 // tiles.shape[0])
    path = store.run_dir(run_id) / "previews" / "step-00000020.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(path, tiles, scale=scale)
    layout = {"kind": "input_recon", "tile": [size, size], "pad": 2, "scale": scale}
    store.add_artifact(run_id, kind="preview", path=path, step=20, params={"count": count, "layout": layout})
    return run_id, inputs, recons


def test_previews_are_large_thumbnails_that_open_input_reconstruction_and_difference(qtbot, store, window) -> None:
    run_id, inputs, recons = preview_run(store)
    monitor = window.open_monitor(run_id)
    strip = monitor.previews.strip
    assert len(strip.thumbs) == 8
    for thumb in strip.thumbs:
        pixmap = thumb.pixmap()
        assert pixmap.width() >= 96 and pixmap.width() % 32 == 0  # enlarged in whole pixels
        assert pixmap.height() >= 2 * 96  # its input above its reconstruction
    assert "click to enlarge" in monitor.previews.caption.text()
    save_artifact(window, "monitor-previews")

    thumb = strip.thumbs[3]
    strip.ensureWidgetVisible(thumb)
    qtbot.mouseClick(thumb, Qt.MouseButton.LeftButton)
    dialog = monitor.previews.dialog
    assert dialog is not None and dialog.isVisible()
    assert dialog.windowTitle() == "step 20 · image 4 of 8"
    from app.widgets.image_views import array_from_qimage

    shown_input = array_from_qimage(dialog.side.views[0].item.pixmap().toImage())
    shown_recon = array_from_qimage(dialog.side.views[1].item.pixmap().toImage())
    np.testing.assert_array_equal(shown_input, inputs[3])  # at full size, pixel for pixel
    np.testing.assert_array_equal(shown_recon, recons[3])
    np.testing.assert_array_equal(dialog.heatmap.values, abs_difference(inputs[3], recons[3]))
    save_artifact(dialog, "monitor-preview-dialog")
    dialog.close()


def test_a_stage2_preview_splits_into_its_samples_and_an_unknown_one_stays_whole() -> None:
    from app.models.previews import split_preview

    rng = np.random.default_rng(9)
    samples = rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
    tiles = grid(samples, cols=8)
    scale = max(1, 128 // tiles.shape[0])
    big = tiles.repeat(scale, axis=0).repeat(scale, axis=1)  # as the worker writes it, enlarged
    layout = {"kind": "samples", "tile": [16, 16], "pad": 2, "scale": scale}
    items = split_preview(big, {"count": 8, "layout": layout})
    assert len(items) == 8 and all(item.input is None for item in items)
    for item, sample in zip(items, samples, strict=True):
        np.testing.assert_array_equal(item.image, sample)
    whole = split_preview(big, {"count": 8, "layout": {"kind": "clips", "tile": [16, 16], "pad": 2, "scale": 1}})
    assert len(whole) == 1 and whole[0].image is big
