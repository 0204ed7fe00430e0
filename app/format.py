"""How numbers, durations and times read in the app."""

from __future__ import annotations

import math
from datetime import UTC, datetime


def duration(seconds: float | None) -> str:
    """3 s, 4 min 05 s, 2 h 07 min, 3 d 4 h."""
    if seconds is None or not math.isfinite(seconds):
        return "–"
    s = round(max(0.0, seconds))
    if s < 60:
        return f"{s} s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m} min {s:02d} s"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h} h {m:02d} min"
    d, h = divmod(h, 24)
    return f"{d} d {h} h"


def number(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if value == 0:
        return "0"
    if abs(value) >= 1e5 or abs(value) < 1e-3:
        return f"{value:.{max(1, digits - 1)}e}"
    return f"{value:.{digits}g}"


def local_time(when: datetime | None) -> str:
    """Creation times in the user's zone: 'today 14:03', else '2026-11-24 09:12'."""
    if when is None:
        return "–"
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    local = when.astimezone()
    now = datetime.now().astimezone()
    if local.date() == now.date():
        return f"today {local:%H:%M}"
    return f"{local:%Y-%m-%d %H:%M}"


def bytes_size(n: int | None) -> str:
    if n is None:
        return "–"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"
