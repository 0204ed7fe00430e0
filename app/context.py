"""Everything the pages share: the store, the polled run list, the queue runner, the metric series, the
session worker and the settings. Built once per window; pages receive it instead of globals."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal

from app.control import RunController
from app.models.repository import RunsRepository
from app.settings import Settings
from app.workers.queue_runner import CommandFactory, QueueRunner
from ul_engine.core.demo import ensure_demo_run
from ul_engine.core.errors import ULError
from ul_engine.store import Store

if TYPE_CHECKING:
    from app.models.metrics_model import MetricsModel
    from app.workers.session import SessionClient


class AppContext(QObject):
    devices_changed = Signal()
    message = Signal(str)  # a line for the status bar

    def __init__(
        self,
        home: Path,
        settings: Settings | None = None,
        *,
        start_session: bool = True,
        command_factory: CommandFactory | None = None,
        install_demo: bool = False,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.home = Path(home).expanduser().absolute()
        self.settings = settings or Settings()
        self.store = Store.open(self.home)
        self.demo_error: str | None = None
        if install_demo:  # the app (not each test's context) registers the shipped demo model as the run `demo`
            self._install_demo()
        self.repo = RunsRepository(self.store, parent=self)
        self.runner = QueueRunner(self.store, command_factory=command_factory, parent=self)
        self.runner.changed.connect(self.repo.refresh)
        self.controller = RunController(self, parent=self)
        self.controller.message.connect(self.message)
        self._shut = False
        self.gpus: list[str] = []
        self.cpu: dict[str, Any] | None = None
        self.device_error: str | None = None
        self._metrics: MetricsModel | None = None
        self._start_session = start_session
        self.session: SessionClient | None = None

    def _install_demo(self) -> None:
        try:
            ensure_demo_run(self.store)
        except (ULError, OSError, ValueError, KeyError) as exc:  # a broken bundle must not stop the app
            self.demo_error = f"the demo model could not be registered: {exc}"

    @property
    def asks_devices(self) -> bool:
        """Whether a session worker is (or will be) asked for the devices."""
        return self._start_session

    @property
    def has_metrics(self) -> bool:
        return self._metrics is not None

    @property
    def metrics(self) -> MetricsModel:
        """The metric series model (created on first use: it polls the store for the watched runs)."""
        if self._metrics is None:
            from app.models.metrics_model import MetricsModel  # why: numpy and the series code only with the Monitor

            self._metrics = MetricsModel(self.home, parent=self)
        return self._metrics

    def start(self) -> None:
        self.repo.start()
        self.runner.start()
        if self._start_session:
            from app.workers.session import SessionClient  # why: the worker protocol only when a session starts

            self.session = SessionClient(self.home, parent=self)
            self.session.devices_known.connect(self._on_devices)
            self.session.failed.connect(self._on_session_failed)
            self.session.start()
            self.session.ask_devices()

    def _on_devices(self, devices: dict) -> None:
        self.cpu = devices.get("cpu") or {}
        self.gpus = [str(g) for g in devices.get("gpus") or []]
        self.runner.set_devices(self.queue_devices())
        self.devices_changed.emit()

    def _on_session_failed(self, message: str) -> None:
        self.device_error = message
        self.devices_changed.emit()

    def queue_devices(self) -> list[str]:
        """The queue's devices: "cpu" and one "cuda:N" per GPU."""
        return ["cpu", *(f"cuda:{i}" for i in range(len(self.gpus)))]

    def default_device(self, config: dict[str, Any] | None) -> str:
        """Where a run with this config trains: its train.device, "auto" meaning the first GPU if any."""
        wanted = ((config or {}).get("train") or {}).get("device", "auto")
        if wanted == "cpu" or (wanted == "auto" and not self.gpus):
            return "cpu"
        return "cuda:0"

    def shutdown(self, *, detach: bool = False) -> None:
        """Stop polling and threads; leave training workers running when `detach`."""
        if self._shut:
            return
        self._shut = True
        self.repo.stop()
        if detach:
            self.runner.detach_all()
        else:
            self.runner.shutdown()
        if self._metrics is not None:
            self._metrics.shutdown()
        if self.session is not None:
            self.session.shutdown()
        self.store.close()
