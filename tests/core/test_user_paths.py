"""User paths are checked before anything opens, reads or hashes them: a FIFO, /dev/zero, a symlink loop, a
broken link, a folder named like an image and a path through a file are each one line naming the path.

A regression would hang (reading a FIFO or /dev/zero never ends), so every call runs under a deadline that
only catches a hang; a blocked FIFO reader is released at teardown by opening the FIFO for writing.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from ul_engine.core.errors import DataError, ULError
from ul_engine.core.image_folder import ImageFolderSource
from ul_engine.core.io import sha256_file
from ul_engine.core.media import load_image_rgb, probe_image
from ul_engine.core.reconstruction import file_sha256
from ul_engine.core.user_paths import check_file, check_folder, check_output_file, check_output_folder
from ul_engine.core.video_io import probe_video, read_video
from ul_engine.data.video_folder import VideoFolderSource
from ul_engine.inference.reconstruct import cache_key

HANG_S = 60.0  # only a hang gets near this


def deadline(fn: Callable[[], Any]) -> Any:
    """fn() in a daemon thread; fails the test if it is still running after HANG_S (a read that never ends)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(HANG_S)
    if thread.is_alive():
        pytest.fail(f"still running after {HANG_S:.0f} s: the path was opened or read before it was checked")
    if "error" in box:
        raise box["error"]
    return box.get("value")


@pytest.fixture
def special(tmp_path: Path) -> Iterator[dict[str, tuple[Path, str]]]:
    """name -> (path, what the one-line message must say)."""
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    (tmp_path / "a.png").symlink_to(tmp_path / "b.png")
    (tmp_path / "b.png").symlink_to(tmp_path / "a.png")
    (tmp_path / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "plain.txt").write_text("a file")
    (tmp_path / "empty.png").write_bytes(b"")
    yield {
        "fifo": (fifo, "FIFO"),
        "dev_zero": (Path("/dev/zero"), "character device"),
        "loop": (tmp_path / "a.png", "symlink loop"),
        "broken": (tmp_path / "gone.png", "broken symbolic link"),
        "folder": (tmp_path / "folder.png", "is a folder"),
        "through_file": (tmp_path / "plain.txt" / "x.png", "is a file, not a folder"),
        "missing": (tmp_path / "missing.png", "file not found"),
        "empty": (tmp_path / "empty.png", "file is empty"),
    }
    with contextlib.suppress(OSError):  # release a reader a regression left blocked on the FIFO
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


def _assert_one_line(exc: BaseException, path: Path, needle: str) -> None:
    text = str(exc)
    assert isinstance(exc, ULError) and str(path) in text and needle in text and "\n" not in text, text


@pytest.mark.parametrize("name", ["fifo", "dev_zero", "loop", "broken", "folder", "through_file", "missing", "empty"])
def test_check_file_names_what_the_path_is(special: dict[str, tuple[Path, str]], name: str) -> None:
    path, needle = special[name]
    with pytest.raises(DataError) as err:
        deadline(lambda: check_file(path))
    _assert_one_line(err.value, path, needle)


@pytest.mark.parametrize(
    "reader",
    [
        load_image_rgb,
        probe_image,
        read_video,
        probe_video,
        file_sha256,
        lambda p: cache_key(None, None, p, {}),
        sha256_file,
    ],
    ids=[
        "load_image_rgb",
        "probe_image",
        "read_video",
        "probe_video",
        "reconstruct-sha256",
        "video-cache-sha256",
        "model-file-sha256",
    ],
)
@pytest.mark.parametrize("name", ["fifo", "dev_zero", "loop", "folder"])
def test_every_reader_and_hash_checks_first(
    special: dict[str, tuple[Path, str]], reader: Callable[[Path], Any], name: str
) -> None:
    path, needle = special[name]
    with pytest.raises(DataError) as err:
        deadline(lambda: reader(path))
    _assert_one_line(err.value, path, needle)


@pytest.mark.parametrize(("name", "needle"), [("fifo", "FIFO"), ("loop", "symlink loop"), ("missing", "not found")])
def test_a_model_folder_for_init_from_is_checked_first(
    special: dict[str, tuple[Path, str]], name: str, needle: str
) -> None:
    from ul_engine.train.runner import _init_folder

    path = special[name][0]
    with pytest.raises(ULError) as err:
        deadline(lambda: _init_folder(str(path)))
    _assert_one_line(err.value, path, needle)
    assert str(err.value).startswith("train.init_from: ")


def test_folder_sources_check_the_folder_and_skip_special_files(
    special: dict[str, tuple[Path, str]], tmp_path: Path
) -> None:
    for source in (
        lambda p: ImageFolderSource(p, 16),
        lambda p: VideoFolderSource(p, 16, frames=2),
        check_folder,
    ):
        for name, kind in (("fifo", "FIFO"), ("dev_zero", "character device"), ("loop", "symlink loop")):
            path = special[name][0]
            with pytest.raises(DataError) as err:
                deadline(lambda source=source, path=path: source(path))
            _assert_one_line(err.value, path, kind)
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(np.full((20, 20, 3), 200, np.uint8)).save(folder / "b.png")
    os.mkfifo(folder / "a.png")  # sorted first: served in its place is the readable image
    source = ImageFolderSource(folder, 16)
    image, _ = deadline(lambda: source[0])
    assert image.shape == (16, 16, 3) and int(image[0, 0, 0]) == 200
    assert "FIFO" in source.skipped[str(folder / "a.png")]
    with contextlib.suppress(OSError):
        os.close(os.open(folder / "a.png", os.O_WRONLY | os.O_NONBLOCK))


def test_output_paths_are_refused_before_any_work(tmp_path: Path) -> None:
    afile = tmp_path / "taken"
    afile.write_text("x")
    with pytest.raises(ULError, match="is a file, not a folder"):
        check_output_folder(afile)
    with pytest.raises(ULError, match=r"cannot be created: .*taken is a file"):
        check_output_folder(afile / "sub" / "deeper")
    with pytest.raises(ULError, match=r"cannot be created: .*taken is a file"):
        check_output_file(afile / "clip.gif")
    (tmp_path / "dir.gif").mkdir()
    with pytest.raises(ULError, match="is a folder; give a file name"):
        check_output_file(tmp_path / "dir.gif")
    os.mkfifo(tmp_path / "pipe.mp4")
    with pytest.raises(ULError, match="FIFO"):
        check_output_file(tmp_path / "pipe.mp4")
    assert check_output_folder(tmp_path / "new" / "folder") == tmp_path / "new" / "folder"
    assert check_output_file(tmp_path / "new" / "clip.gif") == tmp_path / "new" / "clip.gif"
    assert not (tmp_path / "new").exists()  # checking creates nothing
