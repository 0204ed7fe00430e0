"""The settings a sample PNG carries are read defensively and validated as one record (real PNG files written
by Pillow): bounded chunks and nesting before any parsing, the run config's own bounds, one DataError line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from ul_engine.core.errors import DataError
from ul_engine.core.sample_settings import MAX_CHUNK_BYTES, SEED_MAX, read_sample_settings
from ul_engine.store.paths import samples_dir

GOOD = {"ul-run": "3", "ul-run-name": "s2", "ul-seed": "42", "ul-checkpoint-sha256": "ab" * 32,
        "ul-params": json.dumps({"base_steps": 8, "decoder_steps": 16, "sampler": "dpmpp2m", "guidance": 2.5,
                                 "class": 3})}  # fmt: skip


def png(path: Path, text: dict[str, str], *, zipped: tuple[str, ...] = (), itxt: tuple[str, ...] = ()) -> Path:
    info = PngInfo()
    for key, value in text.items():
        if key in itxt:
            info.add_itxt(key, value, zip=key in zipped)
        else:
            info.add_text(key, value, zip=key in zipped)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path, pnginfo=info)
    return path


def test_a_good_record_reads_whole(tmp_path: Path) -> None:
    found = read_sample_settings(png(tmp_path / "a.png", GOOD, zipped=("ul-params",)))
    assert found is not None
    assert (found.run, found.run_name, found.seed) == (3, "s2", 42)
    assert found.params.model_dump(by_alias=True) == {"base_steps": 8, "decoder_steps": 16, "sampler": "dpmpp2m",
                                                       "guidance": 2.5, "class": 3}  # fmt: skip
    itxt = read_sample_settings(png(tmp_path / "i.png", GOOD, zipped=("ul-params",), itxt=("ul-params",)))
    assert itxt is not None and itxt.params.sampler == "dpmpp2m"
    assert read_sample_settings(png(tmp_path / "plain.png", {"Software": "x"})) is None
    at_limit = read_sample_settings(png(tmp_path / "max.png", {**GOOD, "ul-seed": str(SEED_MAX)}))
    assert at_limit is not None and at_limit.seed == SEED_MAX


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ul-seed": "9" * 40}, "ul-seed"),
        ({"ul-seed": str(SEED_MAX + 1)}, "ul-seed"),
        ({"ul-seed": "-1"}, "ul-seed"),
        ({"ul-run": "x1"}, "ul-run"),
        ({"ul-params": json.dumps({"base_steps": 1e12})}, "base_steps"),
        ({"ul-params": json.dumps({"base_steps": "abc"})}, "base_steps"),
        ({"ul-params": json.dumps({"decoder_steps": 0})}, "decoder_steps"),
        ({"ul-params": json.dumps({"decoder_steps": 4097})}, "less than or equal to 4096"),
        ({"ul-params": json.dumps({"guidance": 51})}, "guidance"),
        ({"ul-params": json.dumps({"sampler": "euler"})}, "sampler"),
        ({"ul-params": json.dumps({"class": -1})}, "class"),
        ({"ul-params": "[1, 2]"}, "not a JSON object"),
        ({"ul-params": "{"}, "not valid JSON"),
        ({"ul-params": "[" * 3000 + "]" * 3000}, "nested deeper"),
        ({"ul-checkpoint-sha256": "not-a-hash"}, "ul-checkpoint-sha256"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_field(tmp_path: Path, change: dict, message: str) -> None:
    path = png(tmp_path / "bad.png", {**GOOD, **change})
    with pytest.raises(DataError) as err:
        read_sample_settings(path)
    text = str(err.value)
    assert text.startswith("bad.png: ") and message in text and "\n" not in text


def test_oversized_chunks_are_refused_before_they_are_read_or_inflated(tmp_path: Path) -> None:
    big = {**GOOD, "ul-params": json.dumps({"pad": "x" * (MAX_CHUNK_BYTES + 10)})}
    with pytest.raises(DataError, match="a text chunk of"):
        read_sample_settings(png(tmp_path / "big.png", big))
    bomb = {**GOOD, "ul-params": json.dumps({"pad": "x" * 50_000_000})}  # ~50 KB compressed, 50 MB inflated
    path = png(tmp_path / "bomb.png", bomb, zipped=("ul-params",))
    assert path.stat().st_size < MAX_CHUNK_BYTES
    with pytest.raises(DataError, match="inflates beyond"):
        read_sample_settings(path)


def test_what_is_not_a_regular_png_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a PNG"):
        read_sample_settings(_write(tmp_path / "x.png", b"GIF89a....."))
    with pytest.raises(DataError, match="is a folder, not a file"):
        read_sample_settings(tmp_path)
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="not a regular file"):  # checked first: reading would hang
        read_sample_settings(fifo)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_samples_go_to_a_folder_named_by_the_run(tmp_path: Path) -> None:
    assert samples_dir(tmp_path, "demo") == tmp_path / "samples" / "demo"
    assert samples_dir(tmp_path, 'a/b:c*"d"') == tmp_path / "samples" / "a_b_c__d_"
    assert samples_dir(tmp_path, "..") == tmp_path / "samples" / "run"
