"""Which process owns a run: pid, process start time and host, and whether that process still lives.

A pid alone is not an identity: after a crash the number can be reused by an unrelated process. The
pid's start time (psutil) tells them apart. Only the host that runs the worker can check either, so a run
trained on another machine is judged by its heartbeat instead.
"""

from __future__ import annotations

import functools
import os
import socket

import psutil

START_TIME_TOLERANCE_S = 0.05
"""psutil derives start times from boot time and clock ticks; the same process always reads the same."""


@functools.cache
def hostname() -> str:
    return socket.gethostname()


def process_start_time(pid: int) -> float | None:
    """The start time (unix seconds) of a live, non-zombie process, or None."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return float(proc.create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError, OverflowError):
        return None


def this_process() -> dict[str, object]:
    """The identity a worker records on its run row when it starts a session."""
    pid = os.getpid()
    return {"pid": pid, "pid_started_at": process_start_time(pid), "host": hostname()}


def process_alive(pid: int | None, started_at: float | None = None) -> bool:
    """Whether process `pid` on this host is alive and, when `started_at` is given, is the same process."""
    if not pid or pid <= 0:
        return False
    start = process_start_time(pid)
    if start is None:
        return False
    return started_at is None or abs(start - started_at) <= START_TIME_TOLERANCE_S


def worker_alive(pid: int | None, started_at: float | None, host: str | None) -> bool | None:
    """True/False when this host can tell (the worker runs here), None when only a heartbeat can."""
    if host is None or host != hostname() or not pid:
        return None
    return process_alive(pid, started_at)
