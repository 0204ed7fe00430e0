"""End to end with the real training worker (`python -m ul_engine.worker train`, the smoke preset):
a run created from the form trains, its curves fill, it completes with its metrics in the table; Pause and
Stop change the run's state in the database and the worker obeys."""

from __future__ import annotations

import time

from ul_app_testkit import save_artifact

from app.models.runs_model import COLUMNS
from app.pages.runs import RunsPage


def create_from_form(qtbot, window, *, steps: int | None = None):
    page = window.runs
    page.act_new.trigger()
    dialog = page.last_dialog
    dialog.preset.setCurrentIndex(dialog.preset.findData("smoke"))
    dialog.knobs.device.setCurrentIndex(dialog.knobs.device.findData("cpu"))
    if steps is not None:
        dialog.knobs.steps.setValue(steps)
    qtbot.mouseClick(dialog.create_start, qtbot_button())
    run = dialog.created_run
    assert run is not None, dialog.banner.text()
    return run


def qtbot_button():
    from PySide6.QtCore import Qt

    return Qt.MouseButton.LeftButton


def row_of(page, run_id: int) -> dict[str, str]:
    from app.models.runs_model import RUN_ID_ROLE

    for r in range(page.proxy.rowCount()):
        if page.proxy.index(r, 0).data(RUN_ID_ROLE) == run_id:
            return {COLUMNS[c]: page.proxy.index(r, c).data() for c in range(len(COLUMNS))}
    return {}


def test_a_run_created_from_the_form_trains_and_completes(qtbot, store, window, tmp_path, monkeypatch) -> None:
    run = create_from_form(qtbot, window)
    assert store.get_run(run.id).status in ("queued", "running")
    monitor = window.open_monitor(run.id)

    def loss_points() -> int:
        panel = monitor.panels.get("total")
        c = panel.curves.get(f"{run.id}|loss/total") if panel else None
        return 0 if c is None or c.data is None else len(c.data.raw_x)

    qtbot.waitUntil(lambda: loss_points() > 0, timeout=90_000)  # the loss plot receives points while training
    first = loss_points()
    qtbot.waitUntil(lambda: store.get_run(run.id).status == "completed", timeout=120_000)
    qtbot.waitUntil(lambda: run.id not in window.ctx.runner.processes, timeout=30_000)  # the worker exited
    qtbot.waitUntil(lambda: loss_points() == 60, timeout=120_000)
    assert first <= 60

    page = window.runs
    qtbot.waitUntil(lambda: row_of(page, run.id).get("Status") == "completed", timeout=120_000)
    row = row_of(page, run.id)
    summary = store.summary(run.id)
    assert row["Progress"] == "60 / 60"
    assert row["Loss"] == f"{summary['loss/total']['last']:.4g}"
    assert row["Bits/pixel"] == f"{summary['rate/bits_per_pixel']['last']:.4g}"
    assert store.list_jobs(run_id=run.id)[0].status == "done"
    assert store.get_run(run.id).exit_code == 0

    qtbot.waitUntil(lambda: len(monitor.previews.artifacts) >= 1, timeout=120_000)
    assert "status: completed" in monitor.log.toPlainText()
    monitor.flush()
    save_artifact(window, "page-monitor-trained")

    # Export writes the inference bundle through `ul export` in a worker process
    out = tmp_path / "bundle"
    monkeypatch.setattr(RunsPage, "ask_export_dir", staticmethod(lambda parent, name: str(out)))
    window.show_page("runs")
    page.select_run(run.id)
    with qtbot.waitSignal(window.ctx.controller.export_finished, timeout=60_000) as blocker:
        page.act_export.trigger()
    assert blocker.args[:2] == [run.id, True], blocker.args
    assert (out / "run.json").is_file() and any(out.glob("*.safetensors"))


def test_pause_and_stop_reach_the_worker(qtbot, store, window) -> None:
    run = create_from_form(qtbot, window, steps=5000)
    monitor = window.open_monitor(run.id)
    qtbot.waitUntil(lambda: store.get_run(run.id).status == "running" and store.get_run(run.id).step >= 2,
                    timeout=90_000)  # fmt: skip
    pause = monitor.controls.pause_button
    qtbot.waitUntil(lambda: pause.isEnabled() and pause.text() == "Pause")
    qtbot.mouseClick(pause, qtbot_button())
    qtbot.waitUntil(lambda: store.get_run(run.id).status == "paused", timeout=120_000)
    held = store.get_run(run.id).step
    time.sleep(1.5)
    qtbot.wait(10)
    assert store.get_run(run.id).step == held  # no step advances while paused
    qtbot.waitUntil(lambda: monitor.controls.pause_button.text() == "Resume", timeout=120_000)

    qtbot.mouseClick(monitor.controls.pause_button, qtbot_button())  # resume
    qtbot.waitUntil(lambda: store.get_run(run.id).status == "running" and store.get_run(run.id).step > held,
                    timeout=120_000)  # fmt: skip

    qtbot.mouseClick(monitor.controls.stop_button, qtbot_button())
    assert store.get_run(run.id).status == "stopping"  # at once, before the worker reacts
    qtbot.waitUntil(lambda: run.id not in window.ctx.runner.processes, timeout=30_000)
    final = store.get_run(run.id)
    assert final.status == "stopped" and final.exit_code == 0
    assert store.latest_checkpoint(run.id) is not None  # stop = checkpoint, then exit
    assert store.list_jobs(run_id=run.id)[0].status == "done"
    qtbot.waitUntil(lambda: row_of(window.runs, run.id).get("Status") == "stopped", timeout=120_000)
