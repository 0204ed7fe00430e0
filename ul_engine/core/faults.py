"""Fault injection for crash tests: a real worker process kills itself at a named point of a file write.

UL_FAULT_KILL="after_rename@40" makes the process SIGKILL itself right after `step-00000040.safetensors`
was renamed into place (before its database row exists); several specs are separated by commas. Points:
"before_rename" (the temp file is fully written, not renamed) and "after_rename". A spec names a
checkpoint step (`@40`) or a file name (`:decoder.safetensors`). Unset, each point costs one lookup.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

ENV = "UL_FAULT_KILL"


def _matches(spec: str, point: str, path: Path) -> bool:
    if "@" in spec:
        where, _, step = spec.partition("@")
        return where == point and step.strip().isdigit() and path.name.startswith(f"step-{int(step):08d}.")
    where, _, name = spec.partition(":")
    return where == point and name == path.name


def kill_point(point: str, path: Path) -> None:
    """SIGKILL this process if UL_FAULT_KILL names `point` for `path` (a real, uncatchable kill)."""
    specs = os.environ.get(ENV)
    if not specs:
        return
    if any(_matches(spec.strip(), point, Path(path)) for spec in specs.split(",")):
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
