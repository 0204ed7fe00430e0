"""The one background helper: results, reports and errors arrive on the GUI thread; cancelled work stays silent."""

from __future__ import annotations

import threading

from PySide6.QtCore import QThread

from app.workers.background import pending_tasks, run_in_background
from ul_engine.core.errors import DataError

HANG_MS = 120_000  # only catches a hang


def test_result_and_reports_arrive_on_the_gui_thread(qtbot) -> None:
    gui = QThread.currentThread()
    seen: list[tuple[str, object, bool]] = []
    worker_threads: list[bool] = []

    def work(task):
        worker_threads.append(threading.current_thread() is threading.main_thread())
        for i in range(3):
            task.report(i)
        return "answer"

    def on_report(value):
        seen.append(("report", value, QThread.currentThread() == gui))

    def on_done(value):
        seen.append(("done", value, QThread.currentThread() == gui))

    run_in_background(work, done=on_done, report=on_report)
    qtbot.waitUntil(lambda: any(kind == "done" for kind, _, _ in seen), timeout=HANG_MS)
    assert worker_threads == [False]
    assert seen == [("report", 0, True), ("report", 1, True), ("report", 2, True), ("done", "answer", True)]
    qtbot.waitUntil(lambda: pending_tasks() == 0, timeout=HANG_MS)


def test_errors_become_one_line(qtbot, tmp_path) -> None:
    messages: list[str] = []

    def refuse(task):
        raise DataError("photo.png is not an image")

    def unreadable(task):
        return (tmp_path / "missing.png").read_bytes()

    run_in_background(refuse, failed=messages.append)
    run_in_background(unreadable, failed=messages.append)
    qtbot.waitUntil(lambda: len(messages) == 2, timeout=HANG_MS)
    assert "photo.png is not an image" in messages
    assert any("missing.png: cannot read (No such file or directory)" in m for m in messages)


def test_a_cancelled_task_delivers_nothing(qtbot) -> None:
    release = threading.Event()
    delivered: list[object] = []

    def slow(task):
        release.wait(60)
        task.report("late")
        return "stale"

    task = run_in_background(slow, done=delivered.append, report=delivered.append, failed=delivered.append)
    task.cancel()
    release.set()
    qtbot.waitUntil(lambda: pending_tasks() == 0, timeout=HANG_MS)
    assert delivered == []
