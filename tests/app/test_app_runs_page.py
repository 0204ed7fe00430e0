"""The Runs page lists runs with their numbers, sorts and filters them, reorders the queue by drag, and
its actions reach the store (delete asks first; compare opens the Monitor with overlays)."""

from __future__ import annotations

from PySide6.QtCore import QMimeData, QPoint, Qt
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication
from ul_app_testkit import save_artifact, seed_run

from app.models.queue_model import MIME
from app.models.runs_model import COLUMNS, RUN_ID_ROLE


def table_rows(page) -> list[dict[str, str]]:
    proxy = page.proxy
    return [{COLUMNS[c]: proxy.index(r, c).data() for c in range(len(COLUMNS))} for r in range(proxy.rowCount())]


def test_table_shows_runs_with_their_metrics(qtbot, store, window) -> None:
    a = seed_run(store, name="alpha", steps=60)
    seed_run(store, name="beta", steps=30, status="failed", seed=1)
    window.ctx.repo.refresh()
    page = window.runs
    qtbot.waitUntil(lambda: page.proxy.rowCount() == 2)
    rows = {r["Name"]: r for r in table_rows(page)}
    assert rows["alpha"]["Status"] == "completed" and rows["alpha"]["Stage"] == "1"
    assert rows["alpha"]["Progress"] == "60 / 60"
    summary = store.summary(a)
    assert rows["alpha"]["Loss"] == f"{summary['loss/total']['last']:.4g}"
    assert rows["alpha"]["Bits/pixel"] == f"{summary['rate/bits_per_pixel']['last']:.4g}"
    assert rows["alpha"]["PSNR"] == "–"  # no evaluation yet
    assert rows["beta"]["Status"] == "failed"
    save_artifact(window, "page-runs")


def test_sorting_and_filtering(qtbot, store, window) -> None:
    for name, steps in (("short", 10), ("long", 80), ("middle", 40)):
        seed_run(store, name=name, steps=steps)
    window.ctx.repo.refresh()
    page = window.runs
    qtbot.waitUntil(lambda: page.proxy.rowCount() == 3)
    page.table.sortByColumn(COLUMNS.index("Loss"), Qt.SortOrder.AscendingOrder)
    # the synthetic loss decays with steps: the longest run has the lowest last loss
    assert [r["Name"] for r in table_rows(page)] == ["long", "middle", "short"]
    page.search.setText("mid")
    assert [r["Name"] for r in table_rows(page)] == ["middle"]
    page.search.setText("")
    page.status_filter.setCurrentText("Stopped or failed")
    assert table_rows(page) == []
    page.status_filter.setCurrentText("All runs")
    assert page.proxy.rowCount() == 3


def test_queue_reorders_by_drag_and_drop(qtbot, store, window) -> None:
    ctx = window.ctx
    ctx.runner.enabled = False  # keep the jobs queued
    ids = [store.create_run(name=f"q{i}", stage=1, preset="smoke", config={}).id for i in range(3)]
    for run_id in ids:
        ctx.runner.enqueue(run_id, "cpu")
    ctx.repo.refresh()
    page = window.runs
    qtbot.waitUntil(lambda: page.queue_panel.model.rowCount() == 3)
    assert [j.run_id for j in store.list_jobs("queued")] == ids

    # drag the last job onto the first row, through the list view's own drop handling
    view = page.queue_panel.view
    last = page.queue_panel.model.index(2)
    mime = page.queue_panel.model.mimeData([last])
    assert mime.hasFormat(MIME)
    target = view.visualRect(page.queue_panel.model.index(0)).topLeft() + QPoint(5, 2)
    enter = QDragEnterEvent(target, Qt.DropAction.MoveAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)  # fmt: skip
    QApplication.sendEvent(view.viewport(), enter)
    drop = QDropEvent(target.toPointF(), Qt.DropAction.MoveAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)  # fmt: skip
    QApplication.sendEvent(view.viewport(), drop)
    qtbot.waitUntil(lambda: [j.run_id for j in store.list_jobs("queued")] == [ids[2], ids[0], ids[1]])
    assert page.queue_panel.model.rowCount() == 3  # nothing removed by the view

    # and with the buttons
    view.setCurrentIndex(page.queue_panel.model.index(0))
    page.queue_panel.down.click()
    assert [j.run_id for j in store.list_jobs("queued")] == [ids[0], ids[2], ids[1]]
    page.queue_panel.remove.click()
    assert len(store.list_jobs("queued")) == 2


def test_drop_mime_data_moves_below_running_jobs(qtbot, store, window) -> None:
    window.ctx.runner.enabled = False
    ids = [store.create_run(name=f"m{i}", stage=1, preset="smoke", config={}).id for i in range(4)]
    for run_id in ids:
        window.ctx.runner.enqueue(run_id, "cpu")
    window.ctx.repo.refresh()
    model = window.runs.queue_panel.model
    mime = QMimeData()
    jobs = store.list_jobs("queued")
    mime.setData(MIME, str(jobs[0].id).encode())
    model.dropMimeData(mime, Qt.DropAction.MoveAction, 3, 0, model.index(-1))
    assert [j.run_id for j in store.list_jobs("queued")] == [ids[1], ids[2], ids[0], ids[3]]


def test_delete_asks_and_removes_the_run_and_its_folder(qtbot, store, window, monkeypatch) -> None:
    from app.pages.runs import RunsPage

    run_id = seed_run(store, name="doomed")
    folder = store.run_dir(run_id)
    window.ctx.repo.refresh()
    page = window.runs
    qtbot.waitUntil(lambda: page.proxy.rowCount() == 1)
    page.select_run(run_id)
    asked = []
    monkeypatch.setattr(RunsPage, "confirm_delete", staticmethod(lambda p, names, n: asked.append(names) or False))
    page.act_delete.trigger()
    assert asked == ["doomed"] and store.list_runs() != []
    monkeypatch.setattr(RunsPage, "confirm_delete", staticmethod(lambda p, names, n: True))
    page.act_delete.trigger()
    assert store.list_runs() == [] and not folder.exists()
    qtbot.waitUntil(lambda: page.proxy.rowCount() == 0)


def test_actions_follow_the_selection_and_compare_opens_the_monitor(qtbot, store, window) -> None:
    a, b = seed_run(store, name="one"), seed_run(store, name="two", seed=3)
    window.ctx.repo.refresh()
    page = window.runs
    qtbot.waitUntil(lambda: page.proxy.rowCount() == 2)
    page.select_run(a)
    assert page.act_duplicate.isEnabled() and not page.act_pause.isEnabled() and not page.act_start.isEnabled()
    assert page.act_resume.isEnabled() is False  # completed: nothing to resume
    assert not page.act_compare.isEnabled()
    page.table.selectAll()
    assert page.act_compare.isEnabled()
    page.act_compare.trigger()
    monitor = window.pages["monitor"]
    assert window.current_page_id() == "monitor"
    assert sorted(monitor.watched()) == sorted([a, b]) and len(monitor.overlays) == 1
    qtbot.waitUntil(lambda: monitor.panels.get("total") is not None and len(monitor.panels["total"].curves) == 2)


def test_duplicate_opens_the_form_with_the_runs_config(qtbot, store, window) -> None:
    run_id = seed_run(store, name="source")
    store_cfg = store.get_run(run_id).config
    window.ctx.repo.refresh()
    page = window.runs
    qtbot.waitUntil(lambda: page.proxy.rowCount() == 1)
    page.select_run(run_id)
    page.act_duplicate.trigger()
    dialog = page.last_dialog
    assert dialog.windowTitle() == "Duplicate source"
    assert dialog.preset_name() == "smoke"
    assert dialog.form.value("model.prior.width") == store_cfg["model"]["prior"]["width"]
    dialog.name.setText("forked")
    run = dialog.create_run(start=False)
    assert run is not None and run.config == store_cfg and run.status == "created"
    assert page.proxy.rowCount() == 2
    assert [page.proxy.index(r, 0).data(RUN_ID_ROLE) for r in range(2)].count(run.id) == 1


def test_train_stage2_and_open_folder_act_on_the_selected_run(qtbot, store, window, monkeypatch) -> None:
    from PySide6.QtGui import QDesktopServices

    run_id = seed_run(store, name="encoder")
    window.ctx.repo.refresh()
    page = window.runs
    qtbot.waitUntil(lambda: page.proxy.rowCount() == 1)
    page.select_run(run_id)
    assert not page.act_stage2.isEnabled()  # no checkpoint yet
    ck = store.run_dir(run_id) / "checkpoints" / "step-00000060.safetensors"
    ck.parent.mkdir(parents=True)
    ck.write_bytes(b"x")
    store.add_checkpoint(run_id, step=60, path=ck, sha256="cd" * 32)
    window.ctx.repo.rows.clear()
    window.ctx.repo.refresh()
    page.select_run(run_id)
    assert page.act_stage2.isEnabled()
    page.act_stage2.trigger()
    dialog = page.last_dialog
    assert dialog.stage == 2 and dialog.parent_combo.currentData() == run_id and dialog.preset_name() == "smoke"
    dialog.reject()

    opened = []
    monkeypatch.setattr(QDesktopServices, "openUrl", staticmethod(lambda url: opened.append(url.toLocalFile()) or True))
    page.act_folder.trigger()
    assert opened == [str(store.run_dir(run_id))]


def test_selection_survives_new_runs(qtbot, store, window) -> None:
    a = seed_run(store, name="kept")
    window.ctx.repo.refresh()
    page = window.runs
    qtbot.waitUntil(lambda: page.proxy.rowCount() == 1)
    page.select_run(a)
    seed_run(store, name="newcomer")
    window.ctx.repo.refresh()
    assert page.proxy.rowCount() == 2 and page.selected_ids() == [a]
