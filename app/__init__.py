"""UL Studio, the desktop app: a PySide6 front end for the Unified Latents engine.

Importing `app` is cheap and never imports torch: training, sampling and device queries run in worker
processes (`python -m ul_engine.worker ...`), and the window reads everything else from the store.
"""

from __future__ import annotations

from ul_engine.core import __version__

APP_NAME = "UL Studio"
ORGANIZATION = "ul-studio"

__all__ = ["APP_NAME", "ORGANIZATION", "__version__"]
