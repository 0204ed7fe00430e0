"""The shipped demo model as the run `demo`, so a first-time user can reconstruct, sample and evaluate at once.

Why a run and not a special case: every command and page already speaks runs and checkpoints, so the demo
becomes an ordinary stage-2 run with status "shipped" (never trained, queued or resumed) whose one checkpoint
row has kind "bundle" and points into the shipped bundle folder (`resources/models/demo/`, the bundle format of
`ul_engine.inference.loading`), whose `load_run` builds the models straight from that folder: nothing is copied into
the data folder. Deleting the run only unregisters it (the bundle is outside the data folder) and leaves a
marker so the app does not bring it back; asking for `--run demo` again registers it again.

Torch-free: the GUI calls `ensure_demo_run` when it opens a data folder.
"""

from __future__ import annotations

import contextlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ul_engine.core import RESOURCES_DIR, model_files
from ul_engine.core.errors import ConfigError

if TYPE_CHECKING:  # the store imports the core at run time; the core names its types only
    from ul_engine.store import CheckpointInfo, RunInfo, Store

DEMO_NAME = "demo"
SHIPPED = "shipped"
"""Run status of a model that came with UL Studio: read-only, never trained here."""
BUNDLE_KIND = "bundle"
"""Checkpoint kind whose path is a file inside an inference bundle folder (the folder is the model)."""
DEMO_ENV = "UL_DEMO_MODEL"
"""A folder to use instead of the shipped bundle (for development); "none" turns the demo off."""
DISMISSED = ".demo-dismissed"

SHIPPED_DIR = RESOURCES_DIR / "models" / "demo"
SAMPLES_DIR = RESOURCES_DIR / "samples"
STAGE1_FILES = model_files.STAGE1_COMPONENTS
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def configured_folder() -> Path | None:
    """The folder the demo is to come from ($UL_DEMO_MODEL, else the shipped one), complete or not; None when
    $UL_DEMO_MODEL turns the demo off."""
    env = os.environ.get(DEMO_ENV, "").strip()
    if env.lower() in ("none", "off", "0"):
        return None
    return Path(env).expanduser() if env else SHIPPED_DIR


def demo_folder() -> Path | None:
    """The demo bundle folder ($UL_DEMO_MODEL, else the shipped one), or None when it is not complete."""
    folder = configured_folder()
    return folder if folder is not None and is_bundle(folder) else None


def is_bundle(folder: Path) -> bool:
    """Whether `folder` holds a full stage-1 bundle (encoder, prior, decoder: JSON + safetensors)."""
    return Path(folder).is_dir() and not model_files.missing_files(folder, STAGE1_FILES)


def sample_photos() -> list[Path]:
    """The held-out photos shipped beside the demo model (sorted), for trying it and for `ul eval --run demo`."""
    if not SAMPLES_DIR.is_dir():
        return []
    return sorted(p for p in SAMPLES_DIR.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _component(folder: Path) -> tuple[str, dict[str, Any]]:
    """The bundle's top component ("base" for a stage-2 bundle, else "decoder") and its JSON, checked (an
    object with a valid config and step) so a damaged bundle is one line here, not a KeyError."""
    name = "base" if (folder / "base.json").is_file() and (folder / "base.safetensors").is_file() else "decoder"
    return name, model_files.component_info(folder, name)[0]


def model_card(folder: Path) -> dict[str, Any]:
    """The bundle's `model.json` (training command, time, metrics), or {} when absent or unreadable."""
    try:
        data = json.loads((Path(folder) / "model.json").read_text())
    except (OSError, ValueError, RecursionError):  # ValueError: not JSON, not UTF-8
        return {}
    return data if isinstance(data, dict) else {}


def _run_config(config: dict[str, Any]) -> dict[str, Any]:
    """The bundle's config, with an image-folder data path pointing at the shipped held-out photos (the
    training crops are not shipped), so `ul eval --run demo` measures on photos the model never saw."""
    config = json.loads(json.dumps(config))
    data = config.get("data") or {}
    if data.get("kind") == "image-folder" and sample_photos():
        data["path"] = str(SAMPLES_DIR)
        config["data"] = data
    return config


def _numeric_metrics(card: dict[str, Any]) -> dict[str, float] | None:
    metrics = card.get("metrics")
    if not isinstance(metrics, dict):
        return None
    out = {str(k): float(v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    return out or None


def _find(store: Store, name: str) -> RunInfo | None:
    return next((r for r in store.list_runs() if r.name == name), None)


def is_dismissed(home: Path) -> bool:
    return (Path(home) / DISMISSED).exists()


def dismiss(home: Path) -> None:
    """Remember that the user deleted the demo run, so opening the app does not register it again."""
    with contextlib.suppress(OSError):
        (Path(home) / DISMISSED).write_text("the demo run was deleted; `ul reconstruct --run demo` brings it back\n")


def is_shipped(run: RunInfo | None) -> bool:
    return getattr(run, "status", None) == SHIPPED


def ensure_demo_run(store: Store, *, folder: Path | None = None, force: bool = False) -> RunInfo | None:
    """Register the demo bundle as the run `demo` (or point the existing shipped run at the bundle's current
    place and weights); returns its RunInfo, or None when there is no bundle, the user's own run is called
    `demo`, or the user deleted the demo (unless `force`)."""
    folder = Path(folder) if folder is not None else demo_folder()
    if folder is None or not is_bundle(folder):
        return None
    folder = folder.resolve()
    run = _find(store, DEMO_NAME)
    if run is not None and not is_shipped(run):
        return None  # the user's own run has the name; theirs wins
    if run is None and not force and is_dismissed(store.home):
        return None
    component, info = _component(folder)
    step = model_files.whole_number(info.get("step") or 0, str(folder / f"{component}.json"), "step")
    card = model_card(folder)
    if run is None:
        config = _run_config(info["config"])
        try:
            run = store.create_run(
                name=DEMO_NAME,
                stage=2 if component == "base" else 1,
                preset=str(config.get("preset") or DEMO_NAME),
                config=config,
                total_steps=step or None,
            )
        except ConfigError:  # another process registered it a moment ago
            run = _find(store, DEMO_NAME)
            return run if is_shipped(run) else None
        now = datetime.now(UTC)
        store.transition(run.id, SHIPPED, step=step, started_at=now, finished_at=now, device="shipped")
        if force:
            with contextlib.suppress(OSError):
                (Path(store.home) / DISMISSED).unlink(missing_ok=True)
    path = folder / f"{component}.safetensors"
    sha = model_files.bundle_sha256(folder)
    rows = store.list_checkpoints(run.id)
    if len(rows) == 1 and rows[0].kind == BUNDLE_KIND and rows[0].sha256 == sha and rows[0].step == step:
        if rows[0].path != path:  # the same weights moved (another checkout, a frozen bundle): follow them
            store.add_checkpoint(run.id, step=step, path=path, sha256=sha, kind=BUNDLE_KIND, metrics=rows[0].metrics)
        return store.get_run(run.id)
    for row in rows:  # other weights: forget them with their cached reconstructions
        store.delete_checkpoint_row(row.id)
    store.add_checkpoint(run.id, step=step, path=path, sha256=sha, kind=BUNDLE_KIND, metrics=_numeric_metrics(card))
    return store.get_run(run.id)


def get_run(store: Store, ref: int | str) -> RunInfo:
    """`store.get_run`, except that `demo` registers the shipped demo model first when needed; a demo folder
    that lacks a file is named with what it lacks (not "no run named demo")."""
    if isinstance(ref, str) and ref.strip() == DEMO_NAME:
        mine = _find(store, DEMO_NAME)
        folder = configured_folder()
        if folder is not None and (mine is None or is_shipped(mine)) and (folder.exists() or folder != SHIPPED_DIR):
            model_files.require_bundle(folder, STAGE1_FILES)
        ensure_demo_run(store, force=True)
    return store.get_run(ref)


def bundle_checkpoint(store: Store, run: RunInfo) -> CheckpointInfo | None:
    """The run's bundle checkpoint row (None for a trained run)."""
    rows = [c for c in store.list_checkpoints(run.id) if c.kind == BUNDLE_KIND]
    return rows[-1] if rows else None
