"""The app's shape: small page modules with their decisions in Qt-free models, no import cycles, and the
Monitor's series read through the one background helper instead of a thread of its own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp
import pytest
from PySide6.QtCore import QThread

from app.models.metrics_model import MetricsModel
from app.workers.background import pending_tasks

APP = Path(__file__).resolve().parents[2] / "app"
MAX_LINES = 400
SMALL = [
    "pages/monitor.py", "pages/runs.py", "pages/new_run.py", "pages/run_knobs.py", "pages/config_form.py",
    "pages/welcome.py", "pages/placeholder.py", "plots.py", "main_window.py", "menus.py", "context.py",
    "control.py", "bench.py", "widgets/previews.py", "widgets/log_tail.py", "widgets/plot_options.py",
    "widgets/run_controls.py", "widgets/run_picker.py", "widgets/queue_panel.py", "widgets/speed_estimate.py",
    "widgets/field_row.py", "widgets/checkpoint_picker.py", "widgets/run_combo.py", "widgets/frame_plot.py",
]  # fmt: skip
QT_FREE_MODELS = [
    "app.models.panels", "app.models.previews", "app.models.run_progress", "app.models.run_form",
    "app.models.run_details", "app.models.window",
]  # fmt: skip


@pytest.mark.parametrize("module", SMALL)
def test_page_and_view_modules_stay_small(module: str) -> None:
    lines = len((APP / module).read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"app/{module} has {lines} lines; split a view widget or a model out of it"


def test_the_models_import_no_qt() -> None:
    """Their decisions (what a panel shows, the ETA, a preview's caption, the form's values) run without Qt."""
    code = (
        "import importlib, sys\n"
        f"for name in {QT_FREE_MODELS!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph', 'shiboken6')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_the_app_has_no_import_cycle() -> None:
    """Counting imports made only for type checking: a cycle there is still two modules that cannot be read
    (or split) one without the other, as app.context and app.control were."""
    graph = grimp.build_graph("app")
    cycles = sorted(
        (module, imported)
        for module in graph.modules
        for imported in graph.find_modules_directly_imported_by(module)
        if graph.find_shortest_chain(importer=imported, imported=module) is not None
    )
    assert cycles == []


def test_the_metrics_model_reads_through_the_background_helper(qtbot, store, home) -> None:
    run = store.create_run(name=None, stage=1, preset="smoke", config={})
    store.log_metrics(run.id, [(1, 1.0, {"loss/total": 1.0})])
    model = MetricsModel(home)
    try:
        assert model.findChildren(QThread) == []  # no thread of its own
        before = pending_tasks()
        with qtbot.waitSignal(model.fetched, timeout=120_000):
            model.watch([run.id])
            assert pending_tasks() == before + 1  # the read is a run_in_background task
        assert model.keys(run.id) == ["loss/total"]
    finally:
        model.shutdown()
    assert pending_tasks() == before
