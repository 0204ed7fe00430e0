"""The Runs page's details lines for one run, without Qt: who it is, its parent (stage 2), its device, the last
session's failure with the worker's stderr, and what a shipped model measured when it was made."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

STDERR_LINES = 30


def parent_text(info: Any, parent_name: str | None, checkpoint_step: Callable[[int], int | None]) -> str:
    """ "run s1 (3), checkpoint at step 1,200": the step the user knows, not the checkpoint's row id.

    `checkpoint_step(id)` is the step of a stored checkpoint, None when it was deleted since."""
    name = f"run {parent_name} ({info.parent_run_id})" if parent_name is not None else f"run {info.parent_run_id}"
    if info.parent_checkpoint_id is None:
        return name
    step = checkpoint_step(info.parent_checkpoint_id)
    if step is None:
        return f"{name}, a checkpoint that was since deleted"
    return f"{name}, checkpoint at step {step:,}"


def details_text(row: Any, parent: str | None) -> str:
    """The lines for `row` (a `RunRow`); `parent` is `parent_text` of a stage-2 run."""
    info = row.info
    lines = [f"run {info.id} · {info.name} · preset {info.preset} · stage {info.stage} · {info.status}"]
    if info.parent_run_id and parent is not None:
        lines.append(f"stage 2 of {parent}")
    if info.device:
        lines.append(f"device {info.device}" + (f" · pid {info.pid}" if info.pid else ""))
    if row.failure:  # only the last session's: a re-queued run that trains again shows none
        error, *rest = row.failure.splitlines()
        lines.append(f"error: {error}" if info.error else error)
        lines.extend(rest)
    if row.card:
        card = " · ".join(f"{k.replace('_', ' ')} {v:g}" for k, v in row.card.items())
        lines.append(f"measured when it was made: {card} (docs/demo-model.md)")
    if info.stderr_tail and info.status == "failed":
        lines.append("— last lines of the worker's stderr —")
        lines.extend(info.stderr_tail.splitlines()[-STDERR_LINES:])
    return "\n".join(lines)
