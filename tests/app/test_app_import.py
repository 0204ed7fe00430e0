"""The GUI process never imports torch; `--version` needs no display; PySide6 keeps None's refcount."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = r"""
import json, os, sys
os.environ["QT_QPA_PLATFORM"] = "offscreen"
import app
after_import = sorted(m for m in sys.modules if m == "torch" or m.startswith(("torch.", "accelerate")))
from PySide6.QtWidgets import QApplication
qapp = QApplication([])
from app.context import AppContext
from app.main_window import MainWindow
ctx = AppContext(sys.argv[1], start_session=False)
window = MainWindow(ctx, restore=False)
window.show()
window.open_monitor(1) if ctx.repo.ordered() else window.show_page("monitor")
window.runs.new_run()
for page in ("reconstruct", "latents", "generate", "rd"):
    window.show_page(page)
from app.pages.dataset import scan_image_folder  # the folder chooser reads images with the engine's readers
scan_image_folder(sys.argv[1], 32)
qapp.processEvents()
after_window = sorted(m for m in sys.modules if m == "torch" or m.startswith(("torch.", "accelerate")))
window._close_ready = True
window.close()
print(json.dumps({"after_import": after_import, "after_window": after_window}))
"""


def test_importing_app_and_building_every_page_leaves_torch_out(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "home")],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"after_import": [], "after_window": []}


def test_version_prints_without_a_display(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    out = subprocess.run(
        [sys.executable, "-m", "app", "--version"], capture_output=True, text=True, timeout=30, env=env, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    from ul_engine.core import __version__

    assert out.stdout.strip() == f"ul-studio {__version__}"


@pytest.mark.parametrize("calls", [2000])
def test_pyside_update_keeps_none_refcount(qtbot, calls: int) -> None:
    """platform-notes §2.1: PySide6 6.12.0 leaks a reference to None per void call; 6.11.3 does not."""
    from PySide6.QtWidgets import QWidget

    w = QWidget()
    qtbot.addWidget(w)
    before = sys.getrefcount(None)
    for _ in range(calls):
        w.update()
    assert abs(sys.getrefcount(None) - before) < 10
