"""`ul doctor`: what is installed and where data lives — the first thing to paste into a bug report."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from pathlib import Path
from typing import Any

from ul_engine.core import __version__
from ul_engine.core.errors import ULError


def _version(distribution: str) -> str:
    """Installed version read from package metadata, without importing (the engine never loads Qt)."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "MISSING"


def diagnose(home: Path | None = None) -> dict[str, Any]:
    import torch  # lazy: torch

    from ul_engine.diffusion.precision import sampling_precision  # lazy: torch
    from ul_engine.store import Store  # lazy: SQLAlchemy

    report: dict[str, Any] = {
        "ul-studio": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "cpu threads": torch.get_num_threads(),
        "cpu sampling precision": sampling_precision("cpu"),
    }
    for name in (
        "accelerate",
        "safetensors",
        "SQLAlchemy",
        "alembic",
        "pydantic",
        "opencv-python-headless",
        "imageio",
        "imageio-ffmpeg",
        "torchmetrics",
        "PySide6-Essentials",
        "pyqtgraph",
    ):
        report[name] = _version(name)
    try:
        import imageio_ffmpeg  # inside the try: a missing or broken ffmpeg is reported, not fatal

        report["ffmpeg"] = imageio_ffmpeg.get_ffmpeg_version()
    except Exception as exc:
        report["ffmpeg"] = f"unavailable ({exc})"
    env_home = os.environ.get("UL_HOME")
    try:  # a broken data folder is part of the report, not the end of it
        store = Store.open(home)
        report["data folder"] = str(store.home) + (" (read-only)" if store.read_only else "")
        report["database"] = str(store.db_path)
        report["runs"] = len(store.list_runs())
    except ULError as exc:
        report["data folder"] = str(home or env_home or "default")
        report["database"] = f"unusable: {exc}"
        report["runs"] = None
    from ul_engine.core.demo import demo_folder, sample_photos  # lazy: pydantic

    folder = demo_folder()
    report["demo model"] = str(folder) if folder else "not found (resources/models/demo/)"
    report["sample photos"] = len(sample_photos())
    return report
