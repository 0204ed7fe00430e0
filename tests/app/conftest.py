"""Fixtures of the app tests: offscreen Qt, private QSettings, a temporary data folder, and a window whose
modal questions are answered by the test.

Waits (`qtbot.waitUntil`, `waitSignal`) use a 120 s timeout: it only catches a hang. Nothing here asserts how
fast something happened, so the suite passes on a machine busy with other work; speeds are benchmarks'."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before any QApplication exists

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QCoreApplication, QSettings

from ul_engine.store import Store


@pytest.fixture(scope="session", autouse=True)
def _private_settings(tmp_path_factory: pytest.TempPathFactory) -> None:
    """QSettings in a temporary folder, so tests never touch (or read) the user's settings."""
    folder = tmp_path_factory.mktemp("qsettings")
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(folder))
    QCoreApplication.setOrganizationName("ul-studio-tests")
    QCoreApplication.setApplicationName("ul-studio-tests")


@pytest.fixture(autouse=True)
def _answer_questions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Modal questions would block a test: answer them (tests override where it matters)."""
    from app.main_window import STOP, MainWindow
    from app.pages.runs import RunsPage

    monkeypatch.setattr(MainWindow, "ask_close_action", staticmethod(lambda parent, names: STOP))
    monkeypatch.setattr(RunsPage, "confirm_delete", staticmethod(lambda parent, names, count: True))


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "home"
    monkeypatch.setenv("UL_HOME", str(path))
    return path


@pytest.fixture
def store(home: Path) -> Iterator[Store]:
    s = Store.open(home)
    yield s
    s.close()


@pytest.fixture
def settings(tmp_path: Path):
    from app.settings import Settings

    return Settings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))


@pytest.fixture
def make_ctx(qapp, home: Path, settings):
    """Build an AppContext (no session worker unless asked); everything is shut down after the test."""
    from app.context import AppContext

    made = []

    def factory(**kwargs):
        kwargs.setdefault("start_session", False)
        ctx = AppContext(home, settings, **kwargs)
        made.append(ctx)
        return ctx

    yield factory
    for ctx in made:
        for proc in list(ctx.runner.processes.values()):
            pid = proc.pid()
            if pid and proc.is_running():
                from app.workers.procs import signal_pid

                signal_pid(pid, kill=True)
        ctx.shutdown()


@pytest.fixture
def ctx(make_ctx):
    return make_ctx()


@pytest.fixture
def window(qtbot, ctx):
    from app.main_window import MainWindow

    w = MainWindow(ctx, restore=False)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    ctx.start()
    yield w
    w._close_ready = True
    w.close()
