"""The Monitor's log: a run's worker events and stderr, following the newest line unless the reader scrolled
up (back at the bottom, it follows again). Long lines wrap; none is cut."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QTimer
from PySide6.QtGui import QTextOption
from PySide6.QtWidgets import QPlainTextEdit, QWidget

from app.workers import procs
from app.workers.training import describe_event
from ul_engine.core import protocol

HISTORY_EVENTS = 400
HISTORY_STDERR = 100
HISTORY_LINES = 600


def history_lines(home: Path, run_id: int) -> list[str]:
    """The run's last worker events (in words) and its stderr, from the newest launch's log files."""
    events, stderr = procs.newest_logs(home, run_id)
    lines: list[str] = []
    if events is not None:
        for line in procs.tail_lines(events, HISTORY_EVENTS):
            ev = protocol.decode(line)
            text = describe_event(ev) if ev is not None else line
            if text:
                lines.append(text)
    if stderr is not None:
        err = procs.tail_lines(stderr, HISTORY_STDERR)
        if err:
            lines.append("— stderr —")
            lines.extend(err)
    return lines


def run_history(home: Path, run_id: int, row: Any) -> tuple[list[str], str]:
    """A run's log lines (its worker's files, else the stderr tail the store kept) and the placeholder that
    says why there are none (`row`: the run's `RunRow`, None if unknown)."""
    lines = history_lines(home, run_id)
    if not lines and row is not None and row.info.stderr_tail:
        lines.extend(row.info.stderr_tail.splitlines())
    if not lines and row is not None and row.info.status != "created":
        return lines, "No worker log for this run:\nit was trained outside the app\n(e.g. with `ul train`)."
    return lines, "The worker's events and errors appear here while it trains."


class LogTail(QPlainTextEdit):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("logTail")
        self.setReadOnly(True)
        self.setMaximumBlockCount(1000)
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)  # long lines wrap, none is cut
        self.setWordWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
        self.setToolTip(
            "The worker's status events and its stderr (errors, warnings). It follows the newest line unless you "
            "scroll up; scroll back to the bottom to follow again."
        )
        self._follows = True
        self._user = False
        bar = self.verticalScrollBar()
        bar.actionTriggered.connect(self._on_user_scroll)  # wheel, keys, drags, clicks: not our own moves
        bar.valueChanged.connect(self._on_scrolled)
        bar.rangeChanged.connect(self._keep_at_bottom)

    def show_history(self, lines: list[str], placeholder: str) -> None:
        """Replace the text with a run's history (the newest lines) and follow from its end."""
        self.setPlaceholderText(placeholder)
        self._follows = True
        self.setPlainText("\n".join(lines[-HISTORY_LINES:]))
        self._keep_at_bottom()

    def append_line(self, line: str) -> None:
        self.appendPlainText(line)
        self._keep_at_bottom()

    def _on_user_scroll(self, _action: int) -> None:
        """The reader scrolled: follow the newest line again only once they are back at the bottom."""
        self._user = True
        QTimer.singleShot(0, self._after_user_scroll)  # the bar moves after it announces the action

    def _after_user_scroll(self) -> None:
        self._user = False
        bar = self.verticalScrollBar()
        self._follows = bar.value() >= bar.maximum()

    def _on_scrolled(self, value: int) -> None:
        """A move the reader did not make (a re-layout, old lines dropped) never leaves the bottom."""
        if self._follows and not self._user and value < self.verticalScrollBar().maximum():
            self._keep_at_bottom()

    def _keep_at_bottom(self, *_args: Any) -> None:
        """New text, a wrap or a resize changed the scroll range: stay at the bottom when following."""
        if self._follows and not self._user:
            bar = self.verticalScrollBar()
            bar.setValue(bar.maximum())
