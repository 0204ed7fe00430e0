"""The main window: a page list (Runs, Monitor, Reconstruct, Latents, Generate, Rate–distortion), the status
bar with the devices and the data folder, menus and shortcuts, remembered geometry and page, and the question
on close while a run trains (keep training in the background, or stop)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QStackedWidget,
    QWidget,
)

from app import APP_NAME
from app.context import AppContext
from app.menus import build_menus
from app.models.window import PAGE_IDS, PAGES, devices_text
from app.pages.placeholder import PlaceholderPage
from app.pages.runs import RunsPage
from app.resources import app_icon
from app.widgets.wheel_guard import install_wheel_guard
from ul_engine.core.supervisor import StopLadder

if TYPE_CHECKING:
    from app.pages.monitor import MonitorPage

KEEP, STOP, CANCEL = "keep", "stop", "cancel"


class MainWindow(QMainWindow):
    first_shown = Signal()

    def __init__(self, ctx: AppContext, *, restore: bool = True, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        install_wheel_guard()  # before any page exists: its spin boxes are polished with StrongFocus
        self.ctx = ctx
        self.settings = ctx.settings
        self._shown_once = False
        self._close_ready = False
        self._detach = False
        self._stopping = False
        self.setWindowTitle(APP_NAME)
        self.setWindowIcon(app_icon())
        self.setMinimumSize(QSize(720, 540))

        central = QWidget()
        layout = QHBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        self.nav = QListWidget()
        self.nav.setObjectName("nav")
        self.nav.setFixedWidth(160)
        self.nav.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.stack = QStackedWidget()
        layout.addWidget(self.nav)
        layout.addWidget(self.stack, 1)
        self.setCentralWidget(central)

        self.pages: dict[str, QWidget | None] = {}
        self.monitor: MonitorPage | None = None
        for i, (page_id, title, tip) in enumerate(PAGES):
            item = QListWidgetItem(title)
            item.setToolTip(f"{tip} (Ctrl+{i + 1})")
            item.setData(Qt.ItemDataRole.UserRole, page_id)
            item.setSizeHint(QSize(140, 38))
            self.nav.addItem(item)
            self.stack.addWidget(QWidget())  # filled on first use (the Monitor pulls in pyqtgraph)
            self.pages[page_id] = None
        self.runs = self._build("runs")
        self.nav.currentRowChanged.connect(self._on_nav)

        self._build_status_bar()
        build_menus(self, self.runs, ctx.home, self.show_page, ctx.repo.refresh, self.shortcut_table)
        ctx.message.connect(lambda text: self.statusBar().showMessage(text, 8000))
        ctx.repo.error.connect(lambda text: self.statusBar().showMessage(text, 8000))
        ctx.devices_changed.connect(self._update_devices)
        ctx.repo.changed.connect(self.runs.update_actions)

        if restore:
            self.restore_placement()
        else:
            self.resize(1280, 800)
        last = self.settings.last_page() if restore else "runs"
        self.show_page(last if last in self.pages else "runs")

    def restore_placement(self) -> None:
        """The size and place the window had when it was closed, kept on a screen that exists now.

        The size itself is stored and set (not `restoreGeometry`'s frame geometry, which platforms shrink by
        the title bar when the window filled the screen), before the window is first shown.
        """
        size, pos = self.settings.window_size(), self.settings.window_pos()
        if size is None:
            geometry = self.settings.geometry()  # what earlier versions saved
            if geometry is None or not self.restoreGeometry(geometry):
                self.resize(1280, 800)
            return
        screen = (QGuiApplication.screenAt(pos) if pos is not None else None) or QGuiApplication.primaryScreen()
        if screen is not None:
            size = size.boundedTo(screen.availableGeometry().size()).expandedTo(self.minimumSize())
        self.resize(size)
        if pos is not None and screen is not None and screen.availableGeometry().contains(pos):
            self.move(pos)
        if self.settings.window_maximized():
            self.setWindowState(self.windowState() | Qt.WindowState.WindowMaximized)

    # ---- pages ---------------------------------------------------------------------------------------

    def _build(self, page_id: str) -> Any:
        existing = self.pages.get(page_id)
        if existing is not None:
            return existing
        page = self._make_page(page_id)
        page.setObjectName(f"page:{page_id}")
        index = PAGE_IDS.index(page_id)
        old = self.stack.widget(index)
        self.stack.insertWidget(index, page)
        if old is not None:
            self.stack.removeWidget(old)
            old.deleteLater()
        self.pages[page_id] = page
        return page

    def _make_page(self, page_id: str) -> QWidget:
        """A page, connected to the window. Pages other than Runs load their modules on first use (the Monitor
        pulls in pyqtgraph, the image pages their views), so the window shows sooner."""
        if page_id == "runs":
            runs = RunsPage(self.ctx)
            runs.open_in_monitor.connect(lambda run_id: self.open_monitor(run_id))
            runs.run_started.connect(lambda run_id: self.open_monitor(run_id))
            runs.compare.connect(lambda ids: self.open_monitor(ids[0], ids[1:]))
            runs.open_reconstruct.connect(self.open_reconstruct_run)
            runs.target_provider = self._action_targets
            for act in runs.window_actions:
                self.addAction(act)
            return runs
        if page_id == "monitor":
            from app.pages.monitor import MonitorPage  # why: pyqtgraph loads with the Monitor, not at launch

            if not self.ctx.repo.rows:
                self.ctx.repo.refresh()  # at launch: the runs now, so the Monitor opens on one, not empty
            self.monitor = MonitorPage(self.ctx)
            self.monitor.show_default_run()
            return self.monitor
        if page_id == "reconstruct":
            from app.pages.reconstruct import ReconstructPage  # why: loaded on first use, not at launch

            return ReconstructPage(self.ctx)
        if page_id == "latents":
            from app.pages.latents import LatentsPage  # why: loaded on first use, not at launch

            return LatentsPage(self.ctx)
        if page_id == "generate":
            from app.pages.generate import GeneratePage  # why: loaded on first use, not at launch

            generate = GeneratePage(self.ctx)
            generate.open_in_latents.connect(self.open_latents)
            return generate
        if page_id == "rd":
            from app.pages.rate_distortion import RateDistortionPage  # why: pyqtgraph on first use, not at launch

            rd = RateDistortionPage(self.ctx)
            rd.open_checkpoint.connect(self.open_reconstructions)
            return rd
        return PlaceholderPage(page_id)

    def page(self, page_id: str) -> Any:
        return self._build(page_id)

    def current_page_id(self) -> str:
        return PAGES[max(0, self.nav.currentRow())][0]

    def show_page(self, page_id: str) -> None:
        index = PAGE_IDS.index(page_id)
        if self.nav.currentRow() != index:
            self.nav.setCurrentRow(index)
        else:
            self._on_nav(index)

    def _on_nav(self, row: int) -> None:
        if row < 0:
            return
        page_id = PAGES[row][0]
        self._build(page_id)
        self.stack.setCurrentIndex(row)
        self.settings.set_last_page(page_id)
        self.runs.update_actions()

    def open_monitor(self, run_id: int, overlays: list[int] | None = None) -> Any:
        monitor = self._build("monitor")
        monitor.show_runs(int(run_id), list(overlays or []))
        self.show_page("monitor")
        return monitor

    def open_reconstruct_run(self, run_id: int) -> Any:
        """The Reconstruct page with a run's latest checkpoint chosen (the welcome's "Reconstruct a photo")."""
        page = self._build("reconstruct")
        page.refresh_models()
        page.picker.select(int(run_id), None)
        self.show_page("reconstruct")
        return page

    def open_latents(self, path: str, run_id: int = 0) -> Any:
        """A generated sample (or any image) in the Latents page."""
        latents = self._build("latents")
        latents.open_sample(path, run_id or None)
        self.show_page("latents")
        return latents

    def open_reconstructions(self, run_id: int, checkpoint_id: int, inputs: list[str] | None = None) -> Any:
        """The Rate–distortion click-through: the Reconstruct page on that checkpoint, showing the listed
        images through it again, or `inputs` (the run's validation images) when the list is empty."""
        page = self._build("reconstruct")
        self.show_page("reconstruct")
        page.refresh_models()
        page.picker.select(int(run_id), int(checkpoint_id))
        if page.table_model.items:
            page.apply_to_all()
        else:
            page.add_paths(list(inputs or []))
        return page

    def _action_targets(self) -> list[int]:
        """The runs the toolbar and shortcuts act on: the Monitor's run there, else the table selection."""
        monitor = self.monitor
        if self.current_page_id() == "monitor" and monitor is not None and monitor.run_id is not None:
            return [monitor.run_id]
        return self.runs.selected_ids()

    # ---- chrome --------------------------------------------------------------------------------------

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.devices_label = QLabel("Devices: asking a worker…")
        self.devices_label.setToolTip("What this machine can train on, as reported by a worker process.")
        self.home_label = QLabel(f"Data: {self.ctx.home}")
        self.home_label.setToolTip(f"The data folder: the database and every run's files live here.\n{self.ctx.home}")
        bar.addPermanentWidget(self.devices_label)
        bar.addPermanentWidget(self.home_label)
        if not self.ctx.asks_devices:
            self.devices_label.setText("Devices: not asked")

    def _update_devices(self) -> None:
        text, tip = devices_text(self.ctx.cpu, self.ctx.gpus, self.ctx.device_error)
        self.devices_label.setText(text)
        if tip:
            self.devices_label.setToolTip(tip)

    def shortcut_table(self) -> list[tuple[str, str]]:
        rows = []
        for act in self.actions() + self.runs.table.actions():
            seq = act.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
            if seq:
                rows.append((seq, act.text().replace("&", "")))
        return rows

    def apply_theme(self, _scheme: str = "") -> None:
        if self.monitor is not None:
            self.monitor.apply_theme()

    # ---- show / close --------------------------------------------------------------------------------

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        if not self._shown_once:
            self._shown_once = True
            QTimer.singleShot(0, self.first_shown.emit)

    @staticmethod
    def ask_close_action(parent: QWidget, names: list[str]) -> str:
        """Keep training in the background, stop, or cancel closing (tests patch this)."""
        box = QMessageBox(parent)
        box.setIcon(QMessageBox.Icon.Question)
        box.setWindowTitle("Training is running")
        listed = ", ".join(names[:5]) + ("…" if len(names) > 5 else "")
        box.setText(f"{listed} {'is' if len(names) == 1 else 'are'} training.")
        box.setInformativeText(
            "Keep training in the background: the run goes on and UL Studio re-attaches to it when you open it "
            "again (queued runs wait until then).\nStop: save a checkpoint and stop; you can resume later."
        )
        keep = box.addButton("Keep training", QMessageBox.ButtonRole.AcceptRole)
        stop = box.addButton("Stop and quit", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(keep)
        box.exec()
        clicked = box.clickedButton()
        return KEEP if clicked is keep else STOP if clicked is stop else CANCEL

    def closeEvent(self, event: QCloseEvent) -> None:
        if self._close_ready:
            self._save_and_shutdown()
            event.accept()
            return
        active = [p for p in self.ctx.runner.processes.values() if not p.done]
        if self._stopping:
            event.ignore()
            return
        if active:
            names = []
            for p in active:
                row = self.ctx.repo.run(p.run_id)
                names.append(row.info.name if row else f"run {p.run_id}")
            choice = self.ask_close_action(self, names)
            if choice == CANCEL:
                event.ignore()
                return
            if choice == STOP:
                self._stopping = True
                self.statusBar().showMessage("Stopping the running training before quitting…")
                self.ctx.runner.idle.connect(self._finish_close)
                self.ctx.runner.stop_all()
                QTimer.singleShot(int((StopLadder().total_s + 5) * 1000), self._finish_close)
                event.ignore()
                return
            self._detach = True
        self._save_and_shutdown()
        event.accept()

    def _finish_close(self) -> None:
        if self._close_ready:
            return
        self._close_ready = True
        self.close()

    @property
    def detached(self) -> bool:
        return self._detach

    def _save_and_shutdown(self) -> None:
        self.settings.set_geometry(self.saveGeometry())
        maximized = self.isMaximized()
        normal = self.normalGeometry() if maximized else None
        size = normal.size() if normal is not None and normal.isValid() else self.size()
        self.settings.set_window_placement(size, self.pos(), maximized)
        self.settings.set_last_page(self.current_page_id())
        self.settings.sync()
        for page_id in ("reconstruct", "rd"):
            page = self.pages.get(page_id)
            if page is not None and hasattr(page, "shutdown"):
                page.shutdown()
        self.ctx.shutdown(detach=self._detach)


def make_window(ctx: AppContext, **kwargs: Any) -> MainWindow:
    window = MainWindow(ctx, **kwargs)
    app = QApplication.instance()
    watcher = getattr(app, "_ul_theme_watcher", None)
    if watcher is not None:
        watcher.changed.connect(window.apply_theme)
    return window
