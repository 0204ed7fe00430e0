"""The command line contract with real `ul` processes: bad inputs and bad arguments are one line and exit 2
before any work, `--json` output is strict JSON (one object, even for a usage error), special files never
hang a command, and large inputs report progress.

The shipped demo model (`--run demo`) is the model, so nothing is trained here. Timeouts only catch a hang.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from ul_testkit import ul_process as ul

HANG_S = 600


def strict_json(line: str) -> dict:
    """json.loads that refuses NaN/Infinity, as JavaScript, jq or Go would."""

    def refuse(token: str) -> None:
        raise AssertionError(f"non-standard JSON constant {token} in {line[:200]}")

    return json.loads(line, parse_constant=refuse)


def photo(path: Path, w: int = 48, h: int = 40, seed: int = 0) -> Path:
    Image.fromarray((np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture
def specials(tmp_path: Path):
    """A FIFO, /dev/zero and a symlink loop, each named like an image."""
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    (tmp_path / "loop-a.png").symlink_to(tmp_path / "loop-b.png")
    (tmp_path / "loop-b.png").symlink_to(tmp_path / "loop-a.png")
    yield {"fifo": (fifo, "FIFO"), "zero": (Path("/dev/zero"), "character device"),
           "loop": (tmp_path / "loop-a.png", "symlink loop")}  # fmt: skip
    with contextlib.suppress(OSError):  # a regression's blocked reader is released
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


# ---- item: special files never hang, and each failed input is named once ---------------------------------


def test_reconstruct_refuses_fifo_dev_zero_and_symlink_loops_without_reading(tmp_path: Path, specials: dict) -> None:
    good = photo(tmp_path / "good.png")
    bad = [specials[k][0] for k in ("fifo", "zero", "loop")]
    args = ("reconstruct", "--run", "demo", str(good), *map(str, bad), "--out", str(tmp_path / "out"))
    proc = ul(tmp_path / "home", *args, "--decoder-steps", "1", "--json")
    assert proc.returncode == 2, proc.stderr
    results = strict_json(proc.stdout.strip().splitlines()[-1])["results"]
    assert results[0]["error"] is None and Path(results[0]["output"]).is_file()
    for r, key in zip(results[1:], ("fifo", "zero", "loop"), strict=True):
        path, needle = specials[key]
        assert r["input"] == str(path) and needle in r["error"] and r["output"] is None, r
    assert "file not found" not in results[3]["error"]

    plain = ul(tmp_path / "home", *args, "--decoder-steps", "1")  # without --json: one line per input
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    for key in ("fifo", "zero", "loop"):
        path, needle = specials[key]
        lines = [ln for ln in plain.stdout.splitlines() if str(path) in ln]
        assert len(lines) == 1 and lines[0].count(str(path)) == 1 and needle in lines[0], plain.stdout


def test_interpolate_and_sample_check_their_input_files_first(tmp_path: Path, specials: dict) -> None:
    good = photo(tmp_path / "good.png")
    for key in ("fifo", "zero", "loop"):
        path, needle = specials[key]
        proc = ul(tmp_path / "home", "interpolate", "--run", "demo", str(good), str(path),
                  "--out", str(tmp_path / "ab.gif"))  # fmt: skip
        assert proc.returncode == 2 and needle in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
        proc = ul(tmp_path / "home", "sample", "--run", "no-such-run", "--context", str(path), "--json")
        assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
        assert needle in strict_json(proc.stdout.strip())["error"]


# ---- item: bad arguments exit 2 with one line, before any work ----------------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["resume", "no-such-run", "--steps", "-5"], "--steps: must be at least 0"),
        (["resume", "no-such-run", "--minutes", "-1"], "--minutes: must be a finite number above 0"),
        (["sample", "--run", "no-such-run", "--out", "{file}"], "is a file, not a folder"),
        (["export", "no-such-run", "--out", "{file}"], "is a file, not a folder"),
        (["reconstruct", "--run", "no-such-run", "x.png", "--out", "{file}"], "is a file, not a folder"),
        (["interpolate", "--run", "no-such-run", "a.png", "b.png", "--out", "{file}/ab.mp4"], "cannot be created"),
        (["interpolate", "--run", "no-such-run", "a.png", "b.png", "--out", "{dir}"], "is a folder; give a file"),
        (["--home", "{file}", "runs"], "is a file, not a folder"),
        (["sample", "--run", "no-such-run", "--steps", "0"], "--steps: must be at least 1"),
        (["sample", "--run", "no-such-run", "--guidance", "-1"], "--guidance: must be a finite number"),
        (["sample", "--run", "no-such-run", "--guidance", "nan"], "--guidance: must be a finite number"),
        (["train", "--preset", "smoke", "--processes", "-1"], "--processes: must be at least 0"),
        (["resume", "no-such-run", "--processes", "-1"], "--processes: must be at least 0"),
        (["bench", "--steps", "-1"], "--steps: must be at least 1"),
        (["interpolate", "--run", "no-such-run", "a.png", "b.png", "--out", "x.mp4", "--fps", "0"], "--fps"),
        (["interpolate", "--run", "no-such-run", "a.png", "b.png", "--out", "x.mp4", "--fps", "inf"], "--fps"),
        (["reconstruct", "--run", "no-such-run", "x.png", "--decoder-steps", "0"], "--decoder-steps"),
        (["eval", "--run", "no-such-run", "--n", "0"], "--n: must be"),
    ],
)
def test_bad_arguments_exit_2_with_one_line_before_any_work(tmp_path: Path, args: list[str], needle: str) -> None:
    """`no-such-run` proves the order: had the command started, it would have said there is no such run."""
    afile = tmp_path / "taken.txt"
    afile.write_text("x")
    (tmp_path / "folder.mp4").mkdir()
    args = [a.replace("{file}", str(afile)).replace("{dir}", str(tmp_path / "folder.mp4")) for a in args]
    home = None if args[0] == "--home" else tmp_path / "home"
    started = sorted(p.name for p in tmp_path.iterdir())
    for extra in ([], ["--json"]):
        proc = ul(home, *args, *extra)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert needle in proc.stderr and "Traceback" not in proc.stderr and "no-such-run" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        if extra:  # --json: even a usage error ends with exactly one JSON object on stdout
            lines = proc.stdout.strip().splitlines()
            assert len(lines) == 1 and needle in strict_json(lines[0])["error"], proc.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == started  # nothing was created, not even the data folder


def test_usage_errors_with_json_end_with_one_json_object(tmp_path: Path) -> None:
    for args in (["sample", "--json"], ["no-such-command", "--json"], ["runs", "--json", "--bogus"]):
        proc = ul(tmp_path / "home", *args)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        obj = strict_json(proc.stdout.strip().splitlines()[-1])
        assert obj["usage_error"] is True and obj["error"] in proc.stderr


def test_doctor_takes_json(tmp_path: Path) -> None:
    proc = ul(tmp_path / "home", "doctor", "--json")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    report = strict_json(lines[-1])
    assert len(lines) == 1 and report["data folder"] == str(tmp_path / "home") and report["torch"]


def test_ul_home_naming_a_file_is_one_line(tmp_path: Path) -> None:
    afile = tmp_path / "home.txt"
    afile.write_text("x")
    proc = ul(None, "runs", env={"UL_HOME": str(afile)})
    assert proc.returncode == 2 and proc.stderr.strip() == f"ul: error: {afile}: is a file, not a folder"


# ---- JSON never holds NaN/Infinity ---------------------------------------------------------------------------


def test_runs_json_writes_non_finite_metrics_as_null_with_a_reason(tmp_path: Path) -> None:
    from ul_engine.store import Store

    with Store.open(tmp_path / "home") as store:
        run = store.create_run(name="nan-run", stage=1, preset="smoke", config={"train": {"device": "cpu"}})
        store.log_metrics(run.id, [(1, time.time(), {"loss/total": math.inf, "rate/bits_per_pixel": math.nan})])
    proc = ul(tmp_path / "home", "runs", "--json")
    assert proc.returncode == 0, proc.stderr
    [row] = strict_json(proc.stdout.strip().splitlines()[-1])["runs"]
    assert row["bits_per_pixel"] is None and row["bits_per_pixel_reason"] == "non-finite (nan)"
    assert row["loss"] is None and row["loss_reason"] == "non-finite (inf)"


# ---- GIF frame rates and progress ----------------------------------------------------------------------------


def test_interpolate_gif_states_the_frame_rate_the_file_holds(tmp_path: Path) -> None:
    a, b = photo(tmp_path / "a.png", seed=1), photo(tmp_path / "b.png", seed=2)
    out = tmp_path / "ab.gif"
    proc = ul(tmp_path / "home", "interpolate", "--run", "demo", str(a), str(b), "--frames", "3",
              "--decoder-steps", "1", "--fps", "30", "--out", str(out), "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = strict_json(proc.stdout.strip().splitlines()[-1])
    with Image.open(out) as im:
        held = 1000.0 / im.info["duration"]  # GIF keeps whole centiseconds: 30 fps is stored as 3 cs
    assert result["fps"] == pytest.approx(held) and result["fps"] != 30 and result["fps_requested"] == 30


def test_reconstruct_reports_progress_with_the_expected_time_as_json_lines(tmp_path: Path) -> None:
    good = photo(tmp_path / "good.png", 130, 70)
    proc = ul(tmp_path / "home", "reconstruct", "--run", "demo", str(good), "--out", str(tmp_path / "out"),
              "--decoder-steps", "3", "--json", env={"UL_PROGRESS_AFTER_S": "0"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    events = [strict_json(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    assert events and all(e["event"] == "progress" and e["input"] == str(good) for e in events)
    done = [e["done"] for e in events]
    assert done == sorted(done) and done[-1] == events[-1]["total"]
    assert any(e["eta_s"] is not None and e["eta_s"] >= 0 for e in events)
    assert len(proc.stdout.strip().splitlines()) == 1  # stdout stays one JSON object


def test_a_folder_named_like_an_image_is_searched_and_an_empty_one_fails_before_loading(tmp_path: Path) -> None:
    (tmp_path / "photo.png").mkdir()
    proc = ul(tmp_path / "home", "reconstruct", "--run", "no-such-run", str(tmp_path / "photo.png"), "--json")
    assert proc.returncode == 2 and "no-such-run" not in proc.stderr
    assert strict_json(proc.stdout.strip())["error"] == f"no input images found in {tmp_path / 'photo.png'}"
