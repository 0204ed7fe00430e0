"""The runs table: one row per run (name, stage, status, progress, bits/pixel, PSNR, loss, created,
duration), sortable by the underlying values and filterable by text and status."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, QSortFilterProxyModel, Qt
from PySide6.QtGui import QColor

from app import format as fmt
from app.models.repository import RunRow, RunsRepository
from app.theme import STATUS_COLORS

COLUMNS = ("Name", "Stage", "Status", "Progress", "Bits/pixel", "PSNR", "Loss", "Created", "Duration")
COLUMN_TIPS = (
    "The run's name (double-click to open it in the Monitor).",
    "Stage 1 trains encoder, prior and decoder together; stage 2 trains the base model on frozen latents.",
    "What the run is doing now; the worker process sets it.",
    "Steps done out of the run's step budget.",
    "Bits per pixel the latent costs (stage 1: the prior's rate; stage 2: the base model's); lower is smaller.",
    "Reconstruction PSNR in dB from the last evaluation (higher is sharper); empty until evaluated.",
    "The last logged training loss (loss/total).",
    "When the run was created.",
    "Time spent training (until now for a running run).",
)
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
RUN_ID_ROLE = Qt.ItemDataRole.UserRole + 2
PROGRESS_ROLE = Qt.ItemDataRole.UserRole + 3
STATUS_ROLE = Qt.ItemDataRole.UserRole + 4

STATUS_FILTERS = {
    "All runs": None,
    "Active": {"running", "paused", "stopping", "queued"},
    "Finished": {"completed", "shipped"},
    "Stopped or failed": {"stopped", "interrupted", "failed"},
    "Not started": {"created"},
}


class RunsTableModel(QAbstractTableModel):
    def __init__(self, repo: RunsRepository, parent: Any = None) -> None:
        super().__init__(parent)
        self.repo = repo
        self._rows: list[RunRow] = []
        self._index: dict[int, int] = {}
        repo.changed.connect(self.reload)
        self.reload()

    # ---- sync with the repository --------------------------------------------------------------------

    def reload(self) -> None:
        new_rows = self.repo.ordered()
        new_ids = [r.id for r in new_rows]
        if new_ids != [r.id for r in self._rows]:
            self.beginResetModel()
            self._rows = new_rows
            self._index = {rid: i for i, rid in enumerate(new_ids)}
            self.endResetModel()
            return
        self._rows = new_rows
        if self._rows:
            self.dataChanged.emit(self.index(0, 0), self.index(len(self._rows) - 1, len(COLUMNS) - 1))

    def row_for(self, run_id: int) -> int | None:
        return self._index.get(int(run_id))

    def run_at(self, row: int) -> RunRow:
        return self._rows[row]

    # ---- Qt model API --------------------------------------------------------------------------------

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation != Qt.Orientation.Horizontal:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        if role == Qt.ItemDataRole.ToolTipRole:
            return COLUMN_TIPS[section]
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row = self._rows[index.row()]
        info, col = row.info, index.column()
        if role == RUN_ID_ROLE:
            return info.id
        if role == STATUS_ROLE:
            return info.status
        if role == PROGRESS_ROLE:
            return row.progress
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(row, col)
        if role == SORT_ROLE:
            return self._sort_value(row, col)
        if role == Qt.ItemDataRole.ForegroundRole and col == 2:
            return QColor(STATUS_COLORS.get(info.status, "#7a7a7a"))
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (1, 4, 5, 6, 8):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(row, col)
        return None

    def _display(self, row: RunRow, col: int) -> str:
        info = row.info
        if col == 0:
            return info.name
        if col == 1:
            return str(info.stage)
        if col == 2:
            return info.status
        if col == 3:
            total = info.total_steps
            return f"{info.step:,} / {total:,}" if total else f"{info.step:,}"
        if col == 4:
            return fmt.number(row.bits_per_pixel)
        if col == 5:
            psnr = row.psnr
            return "–" if psnr is None else f"{psnr:.2f} dB"
        if col == 6:
            return fmt.number(row.loss)
        if col == 7:
            return fmt.local_time(info.created_at)
        if col == 8:
            return fmt.duration(row.duration_s())
        return ""

    def _sort_value(self, row: RunRow, col: int) -> Any:
        info = row.info
        missing = float("inf")
        values = (
            info.name.lower(),
            info.stage,
            info.status,
            row.progress if row.progress is not None else -1.0,
            row.bits_per_pixel if row.bits_per_pixel is not None else missing,
            row.psnr if row.psnr is not None else -missing,
            row.loss if row.loss is not None else missing,
            info.created_at.timestamp() if info.created_at else 0.0,
            row.duration_s(datetime.now(UTC)) or 0.0,
        )
        return values[col]

    def _tooltip(self, row: RunRow, col: int) -> str:
        info = row.info
        if col == 2 and row.failure:
            return row.failure
        if col == 0:
            parent = f"\nfrom run {info.parent_run_id}" if info.parent_run_id else ""
            return f"run {info.id} · preset {info.preset}{parent}"
        return COLUMN_TIPS[col]


class RunsFilterProxy(QSortFilterProxyModel):
    """Filters by a text (name, preset, status) and a status group; sorts by the raw values."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.setSortRole(SORT_ROLE)
        self.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self._text = ""
        self._statuses: set[str] | None = None

    def set_text(self, text: str) -> None:
        self._text = text.strip().lower()
        self._refilter()

    def set_status_group(self, name: str) -> None:
        self._statuses = STATUS_FILTERS.get(name)
        self._refilter()

    def _refilter(self) -> None:
        if hasattr(self, "beginFilterChange"):  # Qt ≥ 6.9 (invalidateRowsFilter is deprecated there)
            self.beginFilterChange()
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:  # pragma: no cover - older Qt
            self.invalidateRowsFilter()

    def filterAcceptsRow(self, source_row: int, source_parent: QModelIndex | QPersistentModelIndex) -> bool:
        model = self.sourceModel()
        if not isinstance(model, RunsTableModel):
            return True
        row = model.run_at(source_row)
        if self._statuses is not None and row.info.status not in self._statuses:
            return False
        if self._text:
            hay = f"{row.info.name} {row.info.preset} {row.info.status} stage{row.info.stage} {row.info.id}".lower()
            return all(word in hay for word in self._text.split())
        return True

    def lessThan(self, left: QModelIndex | QPersistentModelIndex, right: QModelIndex | QPersistentModelIndex) -> bool:
        a, b = left.data(SORT_ROLE), right.data(SORT_ROLE)
        try:
            return a < b
        except TypeError:
            return str(a) < str(b)
