"""The Monitor's "Export metrics…": the dialog runs `ul metrics` in a worker process and shows its result; the
files are real (JSON lines read back, TensorBoard events read with TensorBoard's EventAccumulator)."""

from __future__ import annotations

import json
from pathlib import Path

from ul_app_testkit import STAGE1_KEYS, seed_run

EXPORT_TIMEOUT_MS = 180_000  # a worker process that imports the engine (and torch for TensorBoard) on busy cores


def open_dialog(qtbot, window, run_id):
    monitor = window.open_monitor(run_id)
    assert monitor.export_button.isEnabled() and monitor.export_button.text() == "Export metrics…"
    monitor.export_button.click()
    dialog = monitor.export_dialog
    assert dialog is not None and dialog.isVisible()
    return dialog


def export(qtbot, dialog, fmt: str, out: Path, keys: str = "") -> tuple[bool, str]:
    dialog.format.setCurrentIndex(dialog.format.findData(fmt))
    dialog.path.setText(str(out))
    dialog.keys.setText(keys)
    with qtbot.waitSignal(dialog.done_export, timeout=EXPORT_TIMEOUT_MS) as blocker:
        dialog.export_button.click()
        assert not dialog.export_button.isEnabled()  # one export at a time; the dialog stays responsive
    assert dialog.export_button.isEnabled()
    return tuple(blocker.args)  # type: ignore[return-value]


def test_export_jsonl_from_the_monitor(qtbot, store, window, tmp_path: Path) -> None:
    run_id = seed_run(store, name="exported", steps=30)
    dialog = open_dialog(qtbot, window, run_id)
    assert dialog.path.text().endswith("exported-metrics.csv")  # a suggestion that follows the format
    ok, message = export(qtbot, dialog, "jsonl", tmp_path / "m.jsonl", keys="loss/*")
    assert ok, message
    assert "points" in message and dialog.status.text() == message
    points = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    loss_keys = sorted(k for k in STAGE1_KEYS if k.startswith("loss/"))
    assert sorted({p["key"] for p in points}) == loss_keys and len(points) == 30 * len(loss_keys)
    series = store.read_metric(run_id, "loss/total")
    total = [p for p in points if p["key"] == "loss/total"]
    assert [p["step"] for p in total] == series.steps.astype(int).tolist()
    assert [p["value"] for p in total] == series.values.tolist()


def test_export_tensorboard_and_a_failure_line(qtbot, store, window, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_id = seed_run(store, name="tb", steps=20)
    dialog = open_dialog(qtbot, window, run_id)
    ok, message = export(qtbot, dialog, "tensorboard", tmp_path / "events")
    assert ok, message
    acc = EventAccumulator(str(tmp_path / "events"))
    acc.Reload()
    assert sorted(acc.Tags()["scalars"]) == sorted(STAGE1_KEYS)
    assert [e.step for e in acc.Scalars("loss/total")] == list(range(1, 21))
    ok, message = export(qtbot, dialog, "csv", tmp_path / "none.csv", keys="no-such/*")
    assert not ok and "no metric matching no-such/*" in message
    assert dialog.status.text().startswith("Export failed:") and not (tmp_path / "none.csv").exists()


def test_without_a_run_the_monitor_says_so(qtbot, window) -> None:
    monitor = window._build("monitor")
    with qtbot.waitSignal(window.ctx.message, timeout=120_000) as blocker:
        assert monitor.export_metrics() is None
    assert "Choose a run" in blocker.args[0]
