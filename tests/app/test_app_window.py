"""The window remembers its geometry and page, asks before closing on a training run (keep it running in
the background, stop it, or cancel), shows devices from a worker and the data folder, has shortcuts for
the common actions, and follows light and dark palettes."""

from __future__ import annotations

from PySide6.QtCore import QPoint, QSize
from PySide6.QtGui import QPalette
from ul_app_testkit import fake_command

from app import theme
from app.main_window import CANCEL, KEEP, MainWindow
from app.workers import procs


def test_geometry_and_last_page_are_remembered(qtbot, make_ctx, settings) -> None:
    first = MainWindow(make_ctx(), restore=True)
    qtbot.addWidget(first)
    first.show()
    first.resize(790, 700)  # inside the offscreen screen (800×800), which restoreGeometry clamps to
    first.show_page("monitor")
    first.close()
    assert settings.last_page() == "monitor"

    second = MainWindow(make_ctx(), restore=True)
    qtbot.addWidget(second)
    second.show()
    assert second.current_page_id() == "monitor" and second.pages["monitor"] is not None
    assert second.size() == QSize(790, 700)
    second.close()


def test_closing_while_training_asks_keep_stop_or_cancel(qtbot, store, home, make_ctx, monkeypatch) -> None:
    run_id = store.create_run(name="trains", stage=1, preset="smoke", config={}).id
    ctx = make_ctx(command_factory=fake_command(home, "sleep"))
    window = MainWindow(ctx, restore=False)
    qtbot.addWidget(window)
    window.show()
    ctx.start()
    ctx.runner.enqueue(run_id, "cpu")
    qtbot.waitUntil(lambda: store.get_run(run_id).status == "running", timeout=120_000)
    pid = store.get_run(run_id).pid

    asked = []
    monkeypatch.setattr(MainWindow, "ask_close_action", staticmethod(lambda p, names: asked.append(names) or CANCEL))
    window.close()
    assert asked == [["trains"]] and window.isVisible() and procs.pid_alive(pid)

    monkeypatch.setattr(MainWindow, "ask_close_action", staticmethod(lambda p, names: KEEP))
    window.close()
    assert not window.isVisible() and window.detached
    assert procs.pid_alive(pid)  # it goes on training without the window
    procs.signal_pid(pid, kill=True)


def test_stop_and_quit_waits_for_the_worker(qtbot, store, home, make_ctx) -> None:
    run_id = store.create_run(name="stops", stage=1, preset="smoke", config={}).id
    ctx = make_ctx(command_factory=fake_command(home, "sleep"))
    window = MainWindow(ctx, restore=False)
    qtbot.addWidget(window)
    window.show()
    ctx.start()
    ctx.runner.enqueue(run_id, "cpu")
    qtbot.waitUntil(lambda: store.get_run(run_id).status == "running", timeout=120_000)
    window.close()  # the conftest answers "stop"
    assert window.isVisible() and store.get_run(run_id).status == "stopping"
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=120_000)
    assert store.get_run(run_id).status == "stopped" and not window.detached


def test_status_bar_shows_devices_from_a_worker_and_the_data_folder(qtbot, make_ctx, home) -> None:
    ctx = make_ctx(start_session=True)
    window = MainWindow(ctx, restore=False)
    qtbot.addWidget(window)
    window.show()
    ctx.start()
    assert str(home) in window.home_label.text()
    qtbot.waitUntil(lambda: window.devices_label.text().startswith("CPU:"), timeout=60_000)
    assert "GPU:" in window.devices_label.text() and ctx.queue_devices()[0] == "cpu"
    window._close_ready = True
    window.close()


def test_common_actions_have_unique_shortcuts_and_tooltips(window) -> None:
    table = dict((text, key) for key, text in window.shortcut_table())
    for name in ("New run", "Start", "Pause", "Stop", "Resume", "Duplicate", "Compare in Monitor", "Quit", "Monitor"):
        assert table.get(name), f"{name} has no shortcut"
    keys = [key for key, _ in window.shortcut_table()]
    assert len(keys) == len(set(keys)), "two actions share a shortcut"
    for act in window.runs.toolbar.actions():
        assert act.toolTip() and act.toolTip() != act.text()


def test_light_and_dark_palettes(qtbot, qapp, window) -> None:
    window.show_page("monitor")
    try:
        theme.apply(qapp, theme.DARK)
        window.apply_theme()
        assert qapp.palette().color(QPalette.ColorRole.Window).lightness() < 60
        assert theme.current_scheme() == theme.DARK and theme.plot_colors()["background"] == "#17181a"
        theme.apply(qapp, theme.LIGHT)
        assert qapp.palette().color(QPalette.ColorRole.Window).lightness() > 200
    finally:
        theme.apply(qapp, theme.LIGHT)


def test_a_window_that_filled_the_screen_reopens_at_that_size_and_place(qtbot, make_ctx, settings) -> None:
    """The saved size is the window's own: a restored frame geometry came back smaller (798×774 here)."""
    first = MainWindow(make_ctx(), restore=True)
    qtbot.addWidget(first)
    first.show()
    qtbot.waitExposed(first)
    screen = first.screen().availableGeometry()
    first.resize(screen.size())
    first.move(screen.topLeft())
    qtbot.waitUntil(lambda: first.size() == screen.size())
    first.close()

    second = MainWindow(make_ctx(), restore=True)
    qtbot.addWidget(second)
    assert second.size() == screen.size()  # already before it is shown: no jump after the first paint
    second.show()
    qtbot.waitExposed(second)
    assert second.size() == screen.size() and second.pos() == screen.topLeft()
    second.resize(760, 610)
    second.move(12, 20)
    second.close()

    third = MainWindow(make_ctx(), restore=True)
    qtbot.addWidget(third)
    third.show()
    assert third.size() == QSize(760, 610) and third.pos() == QPoint(12, 20)
    third.close()
