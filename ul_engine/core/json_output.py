"""The one JSON writer for `ul --json`: strict JSON, with every non-finite number replaced by null and a reason.

Why: Python's json writes NaN and Infinity, which strict parsers (JavaScript's JSON.parse, jq, Go, Rust)
reject, so one bad metric would make a whole result unreadable. The scheme, stated once: a non-finite
float under key `k` becomes `"k": null` and the same object gains `"k_reason": "non-finite (nan)"`; inside
a list the element becomes null and the object holding the list gains `"k_reason"` naming the indexes.
The text is then written with `allow_nan=False`, so a value that slips past this fails loudly instead of
producing invalid JSON.
"""

from __future__ import annotations

import json
import math
from typing import Any

REASON_SUFFIX = "_reason"


def _scalar(value: Any) -> Any:
    """numpy scalars (np.float32 is no float subclass) as plain Python numbers."""
    if type(value).__module__ == "numpy" and hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    return value


def _bad(value: Any) -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return None


def _clean_list(items: Any) -> tuple[list[Any], list[str]]:
    out: list[Any] = []
    bad: list[str] = []
    for i, item in enumerate(items):
        item = _scalar(item)
        kind = _bad(item)
        if kind is not None:
            out.append(None)
            bad.append(f"{kind} at {i}")
        elif isinstance(item, list | tuple):
            cleaned, inner = _clean_list(item)
            out.append(cleaned)
            bad.extend(f"{b} of {i}" for b in inner)
        else:
            out.append(finite(item))
    return out, bad


def finite(obj: Any) -> Any:
    """A copy of `obj` (dicts, lists, tuples, numbers) with non-finite floats as null plus a `_reason` key."""
    obj = _scalar(obj)
    if isinstance(obj, dict):
        out: dict[Any, Any] = {}
        reasons: dict[str, str] = {}
        for key, value in obj.items():
            value = _scalar(value)
            kind = _bad(value)
            if kind is not None:
                out[key] = None
                reasons[f"{key}{REASON_SUFFIX}"] = f"non-finite ({kind})"
            elif isinstance(value, list | tuple):
                out[key], bad = _clean_list(value)
                if bad:
                    reasons[f"{key}{REASON_SUFFIX}"] = "non-finite values written as null: " + ", ".join(bad[:8])
            else:
                out[key] = finite(value)
        for key, reason in reasons.items():
            out.setdefault(key, reason)
        return out
    if isinstance(obj, list | tuple):
        return _clean_list(obj)[0]
    if _bad(obj) is not None:
        return None
    return obj


def dumps(obj: Any, *, indent: int | None = None) -> str:
    """Strict JSON text of `obj` after `finite()`; other objects (paths, dates) are written as strings."""
    return json.dumps(finite(obj), default=str, allow_nan=False, indent=indent)
