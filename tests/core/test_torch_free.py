"""The core and the store stay torch-free and Qt-free at run time, module by module, in a fresh interpreter.

The import contracts (`lint-imports`) check the import statements; this checks what actually lands in
`sys.modules` when every module of the two packages is imported, so a dependency that pulls torch in
indirectly is caught too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

FORBIDDEN = ("torch", "safetensors.torch", "PySide6", "accelerate", "torchmetrics")

SCRIPT = r"""
import importlib, json, pkgutil, sys
import ul_engine.core, ul_engine.store

imported = []
for package in (ul_engine.core, ul_engine.store):
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if info.name.startswith("ul_engine.store.migrations"):
            continue  # Alembic's scripts run only inside an upgrade, with Alembic's context
        importlib.import_module(info.name)
        imported.append(info.name)
forbidden = sys.argv[1].split(",")
loaded = sorted(m for m in sys.modules if any(m == f or m.startswith(f + ".") for f in forbidden))
print(json.dumps({"imported": imported, "loaded": loaded}))
"""


def test_every_core_and_store_module_imports_without_torch_or_qt(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, ",".join(FORBIDDEN)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    core = Path(__file__).resolve().parents[2] / "ul_engine" / "core"
    expected = {f"ul_engine.core.{p.stem}" for p in core.glob("*.py") if p.stem != "__init__"}
    assert expected <= set(result["imported"]), "a core module was not imported"
    assert {"ul_engine.store.store", "ul_engine.store.db"} <= set(result["imported"])
    assert result["loaded"] == []
