"""Dropping a special file where PNG settings are read (Generate, Latents) neither hangs the GUI nor raises:
the path is checked before Pillow opens it, and the file simply carries no settings."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

from app.pages.generate import sample_settings
from app.pages.latents import read_png_text

HANG_S = 60.0


def test_png_settings_from_a_fifo_dev_zero_or_symlink_loop_are_none(tmp_path: Path) -> None:
    fifo = tmp_path / "sample.png"
    os.mkfifo(fifo)
    (tmp_path / "a.png").symlink_to(tmp_path / "b.png")
    (tmp_path / "b.png").symlink_to(tmp_path / "a.png")
    results: dict[str, object] = {}

    def read() -> None:
        for path in (fifo, Path("/dev/zero"), tmp_path / "a.png"):
            results[str(path)] = (read_png_text(path), sample_settings(path))

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(HANG_S)
    hung = thread.is_alive()
    with contextlib.suppress(OSError):  # release a regression's blocked reader
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert not hung, "reading PNG settings opened a FIFO or a device before checking it"
    assert list(results.values()) == [({}, None)] * 3
