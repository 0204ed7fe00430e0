"""The Rate–distortion page on real smoke runs evaluated through the real CLI: one point per evaluated
checkpoint at its recorded (bits/pixel, PSNR), coloured by run, tooltips with the loss factor and step,
log x, the Evaluate action (a `ul eval` worker process) and the click-through to the Reconstruct page."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QCoreApplication, QEvent, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication
from ul_app_testkit import save_artifact

from app.models.jobs import DONE
from ul_engine.cli.main import main as ul_main
from ul_engine.store import Store, liveness

RUNS = {"lf-low": 1.5, "lf-high": 8.0}


@pytest.fixture(scope="module")
def rd_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two smoke runs (c_lf 1.5 and 8) with checkpoints at steps 5 and 10; three of the four evaluated."""
    home = tmp_path_factory.mktemp("rd-home")
    for name, lf in RUNS.items():
        sets = ["train.checkpoint_every=5", "train.threads=1", "sampling.decoder_steps=2", f"loss.loss_factor={lf}"]
        args = ["--home", str(home), "train", "--preset", "smoke", "--name", name, "--steps", "10"]
        assert ul_main([*args, *(a for s in sets for a in ("--set", s)), "--json"]) == 0
    for name, step in (("lf-low", 5), ("lf-low", 10), ("lf-high", 10)):
        args = ["--home", str(home), "eval", "--run", name, "--checkpoint", str(step), "--n", "4", "--json"]
        assert ul_main(args) == 0
    return home


@pytest.fixture(scope="module")
def live(qapp, rd_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """A main window on that home with a real session worker (the click-through reconstructs with it)."""
    from PySide6.QtCore import QSettings

    from app.context import AppContext
    from app.main_window import MainWindow
    from app.settings import Settings

    ini = tmp_path_factory.mktemp("settings") / "s.ini"
    ctx = AppContext(rd_home, Settings(QSettings(str(ini), QSettings.Format.IniFormat)), start_session=True)
    window = MainWindow(ctx, restore=False)
    window.resize(1280, 800)
    window.show()
    ctx.start()
    yield window
    window._close_ready = True
    window.close()
    window.deleteLater()  # deleted now, not at interpreter exit (where pyqtgraph items crash on teardown)
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)


def recorded(home: Path) -> dict[tuple[str, int], dict]:
    with Store.open(home) as store:
        out = {}
        for run in store.list_runs():
            for ck in store.list_checkpoints(run.id):
                out[(run.name, ck.step)] = {"id": ck.id, "run_id": run.id, **(ck.metrics or {})}
        return out


def spots(page) -> dict[tuple[str, int], object]:
    return {(s.data().run_name, s.data().step): s for s in page.scatter.points()}


def test_points_tooltips_log_x_and_evaluate(qtbot, live, rd_home: Path) -> None:
    live.show_page("rd")
    page = live.page("rd")
    qtbot.waitExposed(page)
    qtbot.wait(200)
    rec = recorded(rd_home)
    shown = spots(page)
    assert set(shown) == {("lf-low", 5), ("lf-low", 10), ("lf-high", 10)}
    for key, spot in shown.items():
        assert (spot.pos().x(), spot.pos().y()) == pytest.approx(
            (rec[key]["eval/bits_per_pixel"], rec[key]["eval/psnr"])
        )
    # coloured by run: one colour per run, different runs differ
    colors = {key: spot.brush().color().name() for key, spot in shown.items()}
    assert colors[("lf-low", 5)] == colors[("lf-low", 10)] != colors[("lf-high", 10)]

    # tooltips: the loss factor and the step (the same text pyqtgraph shows on hover)
    for (name, step), spot in shown.items():
        tip = page.scatter.opts["tip"](x=spot.pos().x(), y=spot.pos().y(), data=spot.data())
        assert f"{name} · step {step}" in tip and f"c_lf = {RUNS[name]:g}" in tip and "PSNR" in tip
    # a real hover over one point puts that tip on the plot
    spot = shown[("lf-high", 10)]
    view_pos = page.plot.mapFromScene(page.scatter.mapToScene(spot.pos()))
    move = QMouseEvent(QEvent.Type.MouseMove, QPointF(view_pos), QPointF(page.plot.viewport().mapToGlobal(view_pos)),
                       Qt.MouseButton.NoButton, Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier)  # fmt: skip
    QApplication.sendEvent(page.plot.viewport(), move)
    qtbot.waitUntil(lambda: "lf-high · step 10" in page.item.vb.toolTip(), timeout=120_000)

    # log x: the points move to log10(bits/pixel) on a log axis
    page.log_x.setChecked(True)
    for key, spot in spots(page).items():
        assert spot.pos().x() == pytest.approx(np.log10(rec[key]["eval/bits_per_pixel"]))
    assert page.item.getAxis("bottom").logMode
    page.log_x.setChecked(False)

    # the unevaluated checkpoint is in the table; Evaluate runs `ul eval` in a worker and its point appears
    rows = {(page.table.item(r, 0).text(), page.table.item(r, 1).text()): r for r in range(page.table.rowCount())}
    assert page.table.item(rows[("lf-high", "5")], 4).text() == "not evaluated"
    page.n_images.setValue(3)
    page.decoder_steps.setValue(1)
    page.table.selectRow(rows[("lf-high", "5")])
    with qtbot.waitSignal(page.evaluator.finished, timeout=90_000) as done:
        qtbot.mouseClick(page.evaluate_button, Qt.MouseButton.LeftButton)
    job, ok, message = done.args
    assert ok, message
    assert (job.step, job.n, job.decoder_steps) == (5, 3, 1)
    rec = recorded(rd_home)
    assert rec[("lf-high", 5)]["eval/n"] == 3
    new = spots(page)[("lf-high", 5)]
    assert (new.pos().x(), new.pos().y()) == pytest.approx(
        (rec[("lf-high", 5)]["eval/bits_per_pixel"], rec[("lf-high", 5)]["eval/psnr"])
    )
    assert "4 of 4 checkpoints evaluated" in page.status.text()
    # the Runs table's metric summary of that run is read again at once (both evaluated steps)
    summary = live.ctx.repo.run(job.run_id).summary["eval/psnr"]
    assert (summary["first_step"], summary["last_step"], summary["count"]) == (5, 10, 2)
    save_artifact(page, "rate-distortion")


def test_an_evaluation_that_cannot_run_says_why(qtbot, live) -> None:
    from app.workers.evaluate import EvalJob

    page = live.page("rd")
    p = page.points[0]
    with qtbot.waitSignal(page.evaluator.finished, timeout=120_000) as done:
        page.evaluator.submit(EvalJob(p.run_id, 999, 10_000, n=2))
    assert done.args[1:] == [False, "no checkpoint with id 10000"]
    page.table.clearSelection()
    assert page.evaluate_selected() == 0 and "Select one or more checkpoints" in page.status.text()
    assert len(page.evaluated()) == 4  # nothing lost


def test_clicking_a_point_opens_its_reconstructions(qtbot, live, rd_home: Path) -> None:
    live.show_page("rd")
    page = live.page("rd")
    page.refresh()
    qtbot.wait(200)  # the view's auto range settles before a point is mapped to the screen
    rec = recorded(rd_home)
    target = rec[("lf-low", 5)]
    spot = spots(page)[("lf-low", 5)]
    view_pos = page.plot.mapFromScene(page.scatter.mapToScene(QPointF(spot.pos())))
    qtbot.mouseClick(page.plot.viewport(), Qt.MouseButton.LeftButton, pos=view_pos)
    assert live.current_page_id() == "reconstruct"
    recon = live.page("reconstruct")
    assert recon.picker.current()["checkpoint_id"] == target["id"]
    assert recon.picker.current()["run_id"] == target["run_id"]
    # the list was empty: the run's 8 validation images (the previews' input row) are reconstructed
    items = recon.table_model.items
    assert len(items) == 8
    first = np.asarray(Image.open(items[0].path))
    assert first.shape == (16, 16, 3) and first.std() > 0
    qtbot.waitUntil(lambda: all(i.state == DONE for i in items), timeout=90_000)
    for item in items:
        assert item.entry["ok"] and item.entry["checkpoint_step"] == 5
        assert item.entry["metrics"]["psnr"] is not None
    assert json.dumps(recon.picker.current())  # the selection is plain data


def test_evaluate_shows_which_checkpoint_of_how_many_and_takes_a_training_runs_checkpoints(
    qtbot, live, rd_home: Path
) -> None:
    sets = ["train.checkpoint_every=5", "train.threads=1", "sampling.decoder_steps=2"]
    args = ["--home", str(rd_home), "train", "--preset", "smoke", "--name", "still-on", "--steps", "10"]
    assert ul_main([*args, *(a for s in sets for a in ("--set", s)), "--json"]) == 0
    store = live.ctx.store
    run = store.get_run("still-on")
    # As while its worker trains (this process stands in for the worker, so it is alive): two checkpoints so far.
    store.transition(run.id, "running", **liveness.this_process())
    live.ctx.repo.refresh()
    live.show_page("rd")
    page = live.page("rd")
    page.n_images.setValue(2)
    page.decoder_steps.setValue(1)
    texts: list[str] = []
    page.evaluator.started.connect(lambda _job: texts.append(page.status.text()))
    try:
        with qtbot.waitSignal(page.evaluator.idle, timeout=180_000):
            assert page.evaluate_missing() == 2  # both checkpoints of the run still training
            assert "still-on is still training" in page.status.text()
    finally:
        store.transition(run.id, "completed", expect="running")
    assert texts[0].startswith("Evaluating 1 of 2: still-on step 5")
    assert texts[1].startswith("Evaluating 2 of 2: still-on step 10")
    assert {("still-on", 5), ("still-on", 10)} <= set(spots(page))
