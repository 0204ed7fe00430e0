"""The engine's torch-free core: what the app may import (with `ul_engine.store`).

Config, errors, model-file headers and JSON, the session protocol, media probing, the reconstruction cache's keys
and limits, the demo registration and the worker supervisor. Nothing here imports torch, directly or inside a
function: the import contracts in `make test` (pyproject.toml, [tool.importlinter]) and
tests/core/test_torch_free.py check it. The torch side of model files is `ul_engine.weights`.
"""

from pathlib import Path

__version__ = "0.1.0"

RESOURCES_DIR = Path(__file__).resolve().parents[2] / "resources"
"""The repository's (or the frozen bundle's) `resources/`: presets, the demo model, the metrics' feature nets."""
