"""The Monitor's "Export metrics…": a run's series to CSV, JSON lines or a TensorBoard event folder.

The export is `ul metrics RUN --format F --out PATH --json` in a worker process (the TensorBoard writer
needs torch, which the GUI never imports); the dialog stays responsive and shows the CLI's own result line
or error line when the process ends.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QProcess, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.workers import procs
from app.workers.evaluate import _last_json  # the CLI's --json result: its last JSON line

FORMATS = (("CSV (one row per point)", "csv", ".csv"), ("JSON lines", "jsonl", ".jsonl"),
           ("TensorBoard event folder", "tensorboard", ""))  # fmt: skip


def metrics_arguments(home: Path, run_id: int, fmt: str, out: Path, keys: str = "") -> list[str]:
    """The `ul metrics` command line the dialog runs (python -m ul_engine.cli …)."""
    args = ["-m", "ul_engine.cli", "--home", str(home), "metrics", str(run_id), "--format", fmt, "--out", str(out)]
    return [*args, "--keys", keys, "--json"] if keys else [*args, "--json"]


class ExportMetricsDialog(QDialog):
    """Pick a format, an optional key pattern and where to write; `done_export(ok, message)` when it ends."""

    done_export = Signal(bool, str)

    def __init__(self, home: Path, run_id: int, run_name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("exportMetrics")
        self.setWindowTitle(f"Export metrics of {run_name}")
        self.home, self.run_id, self.run_name = Path(home), int(run_id), run_name
        self.proc: QProcess | None = None
        form = QFormLayout()
        self.format = QComboBox()
        for label, value, _suffix in FORMATS:
            self.format.addItem(label, value)
        self.format.setToolTip("CSV and JSON lines: key, step, wall_time, value per point (no value: empty / null). "
                               "TensorBoard: an event folder for tensorboard --logdir.")  # fmt: skip
        self.keys = QLineEdit()
        self.keys.setPlaceholderText("all metrics, or a pattern such as loss/*")
        self.path = QLineEdit()
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        where = QHBoxLayout()
        where.addWidget(self.path, 1)
        where.addWidget(browse)
        form.addRow("Format", self.format)
        form.addRow("Metrics", self.keys)
        form.addRow("Write to", where)
        self.status = QLabel("")
        self.status.setObjectName("hint")
        self.status.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.export_button = self.buttons.addButton("Export", QDialogButtonBox.ButtonRole.ActionRole)
        self.export_button.clicked.connect(self.start)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.status)
        layout.addWidget(self.buttons)
        self.format.currentIndexChanged.connect(self._suggest_path)
        self._suggest_path()

    def chosen_format(self) -> str:
        return str(self.format.currentData())

    def _suggest_path(self, *_args: Any) -> None:
        suffix = FORMATS[self.format.currentIndex()][2]
        current = Path(self.path.text()) if self.path.text() else Path.home() / f"{self.run_name}-metrics"
        stem = current.with_suffix("") if current.suffix in (".csv", ".jsonl") else current
        self.path.setText(str(stem) + suffix)

    def _browse(self) -> None:
        if self.chosen_format() == "tensorboard":
            chosen = QFileDialog.getExistingDirectory(self, "TensorBoard event folder", self.path.text())
        else:
            chosen, _ = QFileDialog.getSaveFileName(self, "Export metrics", self.path.text())
        if chosen:
            self.path.setText(chosen)

    def start(self) -> None:
        """Run the export in a worker process; the button is off until it ends."""
        if self.proc is not None:
            return
        if not self.path.text().strip():
            self._finish(False, "choose where to write the metrics")
            return
        out = Path(self.path.text().strip()).expanduser()
        proc = self.proc = QProcess(self)
        proc.setProcessEnvironment(procs.worker_environment())
        program, args = procs.python_command(
            *metrics_arguments(self.home, self.run_id, self.chosen_format(), out, self.keys.text().strip())
        )
        proc.finished.connect(lambda code, _status, p=proc: self._on_finished(p, code))
        proc.errorOccurred.connect(lambda error, p=proc: self._on_error(p, error))
        self.export_button.setEnabled(False)
        self.status.setText(f"Exporting to {out}…")
        proc.start(program, args)

    def _on_error(self, proc: QProcess, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self._finish(False, f"the export could not start: {proc.errorString()}")

    def _on_finished(self, proc: QProcess, code: int) -> None:
        out = bytes(proc.readAllStandardOutput().data()).decode("utf-8", errors="replace").strip().splitlines()
        err = bytes(proc.readAllStandardError().data()).decode("utf-8", errors="replace").strip().splitlines()
        result = _last_json(out)
        if code == 0 and result is not None and "error" not in result:
            self._finish(True, f"Wrote {result['points']:,} points of {len(result['keys'])} series to {result['out']}")
        elif result is not None and result.get("error"):
            self._finish(False, str(result["error"]))
        else:
            self._finish(False, err[-1] if err else f"ul metrics ended with code {code}")

    def _finish(self, ok: bool, message: str) -> None:
        if self.proc is not None:
            self.proc.deleteLater()
            self.proc = None
        self.export_button.setEnabled(True)
        self.status.setText(message if ok else f"Export failed: {message}")
        self.done_export.emit(ok, message)


def open_export_dialog(parent: QWidget, ctx: Any, run_id: int | None) -> ExportMetricsDialog | None:
    """The dialog for the Monitor's run (non-modal, so training stays in view), or a status-bar hint."""
    if run_id is None:
        ctx.message.emit("Choose a run to export its metrics.")
        return None
    row = ctx.repo.run(run_id)
    dialog = ExportMetricsDialog(ctx.home, run_id, row.info.name if row else f"run-{run_id}", parent)
    dialog.show()
    return dialog

