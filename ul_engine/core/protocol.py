"""The JSON-lines protocol between the GUI (or any parent) and worker processes. Torch-free.

Training workers print one event per line on stdout: {"event": "status"|"progress"|"metrics"|
"checkpoint"|"preview"|"error", "run": N, ...}. The session worker reads requests
{"id": K, "op": "...", ...} on stdin and answers {"id": K, "ok": true, "result": {...}} or
{"id": K, "ok": false, "error": "..."}; big payloads travel as files named in the result.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

EVENTS = ("status", "progress", "metrics", "checkpoint", "preview", "error", "heartbeat")
SESSION_OPS = ("ping", "devices", "load", "encode", "reconstruct", "sample", "interpolate", "shutdown")


def encode(message: dict[str, Any]) -> str:
    return json.dumps(message, default=str, separators=(",", ":"))


def decode(line: str) -> dict[str, Any] | None:
    """One line → a message, or None for a line that is not a JSON object (e.g. a library's print)."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def write(message: dict[str, Any], stream: TextIO | None = None) -> None:
    out = stream or sys.stdout
    out.write(encode(message) + "\n")
    out.flush()
