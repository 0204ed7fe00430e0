"""`ul metrics`: every stored point of a run (key, step, wall time, value) to CSV, JSON lines and TensorBoard
events read back with TensorBoard's own EventAccumulator; NaN steps stay empty/null; bad input exits 2."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from ul_testkit import ul_json as run_ul

from ul_engine.store import Store

T0 = 1_790_000_000.0
NAN_STEP = 7


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def store(home: Path) -> Iterator[Store]:
    s = Store.open(home)
    yield s
    s.close()


@pytest.fixture
def run_id(store: Store) -> int:
    """A run with 12 logged steps of three series; loss/total is NaN at step 7 (a non-finite step)."""
    from ul_engine.core.config import resolve

    run = store.create_run(name="logged", stage=1, preset="smoke", config=resolve("smoke", stage=1).to_dict())
    rows = []
    for step in range(1, 13):
        total = float("nan") if step == NAN_STEP else 10.0 / step
        rows.append((step, T0 + 0.25 * step, {"loss/total": total, "loss/decoder": 5.0 / step, "optim/lr": 1e-4}))
    store.log_metrics(run.id, rows)
    return run.id


def expected(key: str, step: int) -> float | None:
    if key == "loss/total":
        return None if step == NAN_STEP else 10.0 / step
    return 5.0 / step if key == "loss/decoder" else 1e-4


def test_csv_has_one_row_per_point_and_empty_cells_for_nan(capsys, home: Path, run_id: int, tmp_path: Path) -> None:
    code, result, _ = run_ul(capsys, home, "metrics", "logged", "--format", "csv", "--out", str(tmp_path / "m.csv"))
    assert code == 0 and result["points"] == 36 and result["keys"] == ["loss/decoder", "loss/total", "optim/lr"]
    with open(tmp_path / "m.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["key", "step", "wall_time", "value"]
    assert len(rows) == 37
    for key, step, wall, value in rows[1:]:
        want = expected(key, int(step))
        assert float(wall) == T0 + 0.25 * int(step)
        assert (value == "") if want is None else float(value) == want
    assert "nan" not in (tmp_path / "m.csv").read_text().lower()


def test_jsonl_holds_null_for_nan_and_the_glob_selects(capsys, home: Path, run_id: int, tmp_path: Path) -> None:
    out = tmp_path / "m.jsonl"
    code, result, _ = run_ul(capsys, home, "metrics", "logged", "--keys", "loss/*", "--format", "jsonl", "--out",
                             str(out))  # fmt: skip
    assert code == 0 and result["keys"] == ["loss/decoder", "loss/total"] and result["points"] == 24
    text = out.read_text()
    assert "NaN" not in text and "Infinity" not in text
    points = [json.loads(line) for line in text.splitlines()]
    assert [set(p) for p in points] == [{"key", "step", "wall_time", "value"}] * 24
    for p in points:
        assert p["value"] == expected(p["key"], p["step"]) and p["wall_time"] == T0 + 0.25 * p["step"]
    assert [p["value"] for p in points if p["key"] == "loss/total" and p["step"] == NAN_STEP] == [None]


def test_tensorboard_events_read_back_with_event_accumulator(capsys, home: Path, run_id: int, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "tb"
    for _ in range(2):  # a second export replaces the first: one event file, no doubled points
        code, result, _ = run_ul(capsys, home, "metrics", str(run_id), "--format", "tensorboard", "--out", str(out))
        assert code == 0 and result["points"] == 36
    assert len(list(out.glob("events.out.tfevents.*"))) == 1
    acc = EventAccumulator(str(out))
    acc.Reload()
    assert sorted(acc.Tags()["scalars"]) == ["loss/decoder", "loss/total", "optim/lr"]
    for key in ("loss/decoder", "loss/total", "optim/lr"):
        events = acc.Scalars(key)
        assert [e.step for e in events] == list(range(1, 13))
        for e in events:
            assert e.wall_time == pytest.approx(T0 + 0.25 * e.step, abs=1e-3)
            want = expected(key, e.step)
            assert math.isnan(e.value) if want is None else e.value == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["metrics", "nope", "--format", "csv", "--out", "OUT"], "nope"),
        (["metrics", "logged", "--keys", "zzz*", "--format", "csv", "--out", "OUT"], "no metric matching zzz*"),
        (["metrics", "logged", "--format", "csv", "--out", "FOLDER"], "is a folder"),
        (["metrics", "logged", "--format", "tensorboard", "--out", "FILE"], "is a file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, home: Path, run_id: int, tmp_path: Path, args: list[str],
                                          needle: str) -> None:  # fmt: skip
    (tmp_path / "file").write_text("x")
    swap = {"OUT": str(tmp_path / "m.csv"), "FOLDER": str(tmp_path), "FILE": str(tmp_path / "file")}
    code, result, err = run_ul(capsys, home, *[swap.get(a, a) for a in args])
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and needle in lines[0] and result["error"] in lines[0]
    assert (tmp_path / "file").read_text() == "x" and not (tmp_path / "m.csv").exists()


def test_a_real_process_prints_one_json_object(home: Path, run_id: int, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "ul_engine.cli", "--home", str(home), "metrics", "logged", "--format", "jsonl",
           "--out", str(tmp_path / "m.jsonl"), "--json"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["points"] == 36
    bad_cmd = [sys.executable, "-m", "ul_engine.cli", "--home", str(home), "metrics", "logged", "--format", "xml",
               "--out", str(tmp_path / "x")]  # fmt: skip
    bad = subprocess.run(bad_cmd, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "invalid choice" in bad.stderr
