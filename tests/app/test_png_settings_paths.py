"""Dropping a special file where PNG settings are read (Generate, Latents: one reader) neither hangs the GUI
nor passes silently: the path is checked before anything opens it, and the refusal names what it is."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

from app.models.generate import sample_settings
from ul_engine.core.errors import DataError

HANG_S = 60.0


def test_png_settings_from_a_fifo_dev_zero_or_symlink_loop_are_refused_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "sample.png"
    os.mkfifo(fifo)
    (tmp_path / "a.png").symlink_to(tmp_path / "b.png")
    (tmp_path / "b.png").symlink_to(tmp_path / "a.png")
    results: dict[str, str] = {}

    def read() -> None:
        for path in (fifo, Path("/dev/zero"), tmp_path / "a.png"):
            try:
                sample_settings(path)
                results[str(path)] = "read"
            except DataError as exc:
                results[str(path)] = str(exc)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(HANG_S)
    hung = thread.is_alive()
    with contextlib.suppress(OSError):  # release a regression's blocked reader
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert not hung, "reading PNG settings opened a FIFO or a device before checking it"
    assert "not a regular file" in results[str(fifo)] and "FIFO" in results[str(fifo)].upper()
    assert "not a regular file" in results["/dev/zero"]
    assert "symlink loop" in results[str(tmp_path / "a.png")]
