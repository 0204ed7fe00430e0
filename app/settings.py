"""What the app remembers between launches (QSettings): window geometry, last page, plot options and the
measured speed estimates per preset and device. Typed accessors, so widgets never parse QSettings strings."""

from __future__ import annotations

import json
import time
from typing import Any

from PySide6.QtCore import QByteArray, QPoint, QSettings, QSize


class Settings:
    """Typed view over QSettings (the organisation and app names are set once in `app.__main__`)."""

    def __init__(self, qsettings: QSettings | None = None) -> None:
        self._s = qsettings if qsettings is not None else QSettings()

    # ---- generic -----------------------------------------------------------------------------------

    def get(self, key: str, default: Any = None, kind: type | None = None) -> Any:
        value = self._s.value(key, default)
        if value is None or kind is None:
            return value
        try:
            if kind is bool:
                return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
            return kind(value)
        except (TypeError, ValueError):
            return default

    def set(self, key: str, value: Any) -> None:
        self._s.setValue(key, value)

    def sync(self) -> None:
        self._s.sync()

    # ---- window ------------------------------------------------------------------------------------

    def geometry(self) -> QByteArray | None:
        value = self._s.value("window/geometry")
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    def set_geometry(self, data: QByteArray) -> None:
        self._s.setValue("window/geometry", data)

    def window_size(self) -> QSize | None:
        value = self._s.value("window/size")
        return value if isinstance(value, QSize) and value.isValid() and not value.isEmpty() else None

    def window_pos(self) -> QPoint | None:
        value = self._s.value("window/pos")
        return value if isinstance(value, QPoint) else None

    def window_maximized(self) -> bool:
        return bool(self.get("window/maximized", False, bool))

    def set_window_placement(self, size: QSize, pos: QPoint, maximized: bool) -> None:
        """The window's own size and place (not a frame geometry a platform may shrink to fit on restore)."""
        self._s.setValue("window/size", size)
        self._s.setValue("window/pos", pos)
        self._s.setValue("window/maximized", bool(maximized))

    def window_state(self) -> QByteArray | None:
        value = self._s.value("window/state")
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    def set_window_state(self, data: QByteArray) -> None:
        self._s.setValue("window/state", data)

    def last_page(self) -> str:
        return str(self.get("window/page", "runs"))

    def set_last_page(self, page: str) -> None:
        self.set("window/page", page)

    # ---- monitor -----------------------------------------------------------------------------------

    def smoothing(self) -> float:
        return min(0.999, max(0.0, float(self.get("monitor/smoothing", 0.6, float))))

    def set_smoothing(self, value: float) -> None:
        self.set("monitor/smoothing", float(value))

    def plot_flag(self, name: str, default: bool = False) -> bool:
        return bool(self.get(f"monitor/{name}", default, bool))

    def set_plot_flag(self, name: str, value: bool) -> None:
        self.set(f"monitor/{name}", bool(value))

    def x_axis(self) -> str:
        value = str(self.get("monitor/x_axis", "step"))
        return value if value in ("step", "time") else "step"

    def set_x_axis(self, value: str) -> None:
        self.set("monitor/x_axis", value)

    # ---- speed estimates ---------------------------------------------------------------------------

    def estimate(self, preset: str, device: str) -> dict[str, Any] | None:
        """{"seconds_per_1000": float, "measured_at": unix time} from a trial on this machine, or None."""
        raw = self._s.value(f"estimates/{preset}@{device}")
        if not raw:
            return None
        try:
            value = json.loads(str(raw))
        except json.JSONDecodeError:
            return None
        return value if isinstance(value, dict) and "seconds_per_1000" in value else None

    def set_estimate(self, preset: str, device: str, seconds_per_1000: float) -> None:
        blob = json.dumps({"seconds_per_1000": float(seconds_per_1000), "measured_at": time.time()})
        self._s.setValue(f"estimates/{preset}@{device}", blob)
