"""Run control with real `ul` and worker processes on a real SQLite file: stop then resume, a killed worker,
two resumes at once, and kills around checkpoint writes. Deadlines here only catch hangs."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ul_testkit import ul_process as ul
from worker_testkit import HANG_S, make_run, wait_for

from ul_engine.core.supervisor import start_worker, worker_command
from ul_engine.store import Store


def ul_bg(home: Path, *args: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "ul_engine.cli", "--home", str(home), *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])






@pytest.fixture()
def store(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "home")


# ---- 1. a stop request belongs to the session it was made for ----------------------------------------------


def test_stop_then_resume_trains_the_asked_steps(store: Store):
    home = store.home
    trainer = ul_bg(home, "train", "--preset", "smoke", "--steps", "5000", "--name", "s1", "--set", "train.threads=1",
                    "--json")  # fmt: skip
    try:
        wait_for(lambda: any(r.name == "s1" and r.step >= 3 for r in store.list_runs()))
        stop = ul(home, "stop", "s1", "--json")
        assert stop.returncode == 0, stop.stderr
        assert last_json(stop.stdout)["how"] in ("cooperative", "terminated")
        trainer.communicate(timeout=HANG_S)
    finally:
        trainer.kill()
    stopped = store.get_run("s1")
    assert stopped.status == "stopped"
    resumed = ul(home, "resume", "s1", "--steps", "20", "--json")
    assert resumed.returncode == 0, resumed.stderr
    result = last_json(resumed.stdout)
    assert (result["status"], result["step"]) == ("completed", stopped.step + 20)
    assert store.get_run("s1").session == stopped.session + 1


def test_a_stop_for_an_old_session_does_not_stop_the_next(store: Store):
    """`ul stop` of a run that is no longer active (its session ended) leaves no request for the next one."""
    run_id = make_run(store, "late-stop", **{"train.steps": 3})
    assert start_worker(worker_command(store.home, run_id), run_id).wait() == 0
    ended = store.get_run(run_id)
    assert store.request(run_id, "stop")  # a request that came too late for that session
    assert store.get_run(run_id).control_session == ended.session
    out = ul(store.home, "resume", "late-stop", "--steps", "4", "--json")
    assert out.returncode == 0, out.stderr
    assert (last_json(out.stdout)["status"], last_json(out.stdout)["step"]) == ("completed", 7)


# ---- 2. a dead worker on this machine is seen at once -----------------------------------------------------


def test_a_killed_worker_is_interrupted_at_once_and_stop_leaves_it_resumable(store: Store):
    run_id = make_run(store, "killed", **{"train.steps": 5000})
    worker = start_worker(worker_command(store.home, run_id), run_id)
    wait_for(lambda: store.get_run(run_id).step >= 12 and store.latest_checkpoint(run_id) is not None)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    killed_at = time.monotonic()
    runs = ul(store.home, "runs", "--json")
    assert runs.returncode == 0, runs.stderr
    row = next(r for r in last_json(runs.stdout)["runs"] if r["name"] == "killed")
    assert row["status"] == "interrupted" and "is gone" in row["error"]
    stop = ul(store.home, "stop", "killed", "--json")
    assert stop.returncode == 2 and stop.stderr.count("\n") == 1 and "nothing to stop" in stop.stderr
    checkpoint = store.latest_checkpoint(run_id).step
    resumed = ul(store.home, "resume", "killed", "--steps", "3", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert (last_json(resumed.stdout)["status"], last_json(resumed.stdout)["step"]) == ("completed", checkpoint + 3)
    assert time.monotonic() - killed_at < HANG_S


def test_stop_of_a_dead_worker_still_marked_running_makes_it_resumable(store: Store):
    """The worker died before anything noticed: `ul stop` finds it gone, and resume works right after."""
    run_id = make_run(store, "dead", **{"train.steps": 5000})
    worker = start_worker(worker_command(store.home, run_id), run_id)
    wait_for(lambda: store.get_run(run_id).step >= 12 and store.latest_checkpoint(run_id) is not None)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    assert store.get_run(run_id).status == "running"  # nothing has looked yet
    stop = ul(store.home, "stop", "dead", "--json")
    assert stop.returncode == 0, stop.stderr
    assert last_json(stop.stdout) == {"run": run_id, "status": "interrupted", "how": "not running"}
    resumed = ul(store.home, "resume", "dead", "--steps", "2", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert last_json(resumed.stdout)["status"] == "completed"


def test_a_worker_whose_session_was_ended_elsewhere_stops_and_writes_no_status(store: Store):
    """A worker on another machine judged gone by its heartbeat must not train on beside a new session."""
    run_id = make_run(store, "judged-gone", **{"train.steps": 5000, "train.checkpoint_every": 1000})
    worker = start_worker(worker_command(store.home, run_id), run_id)
    wait_for(lambda: store.get_run(run_id).step >= 3)
    session = store.get_run(run_id).session
    store.transition(run_id, "interrupted", session=session, error="no heartbeat for 30 s")
    assert worker.wait(timeout=HANG_S) == 0
    run = store.get_run(run_id)
    assert (run.status, run.session, run.error) == ("interrupted", session, "no heartbeat for 30 s")


# ---- 3. two resumes of one run: exactly one trains ----------------------------------------------------------


def test_two_resumes_at_once_one_trains_the_other_exits_2(store: Store):
    home = store.home
    first = ul(home, "train", "--preset", "smoke", "--steps", "2", "--name", "A", "--set", "train.threads=1", "--json")
    assert first.returncode == 0, first.stderr
    racers = [ul_bg(home, "resume", "A", "--steps", "100000", "--json") for _ in range(2)]
    try:
        wait_for(lambda: any(p.poll() is not None for p in racers))
        loser = next(p for p in racers if p.poll() is not None)
        winner = next(p for p in racers if p is not loser)
        out, err = loser.communicate(timeout=HANG_S)
        assert loser.returncode == 2, err
        assert err.count("\n") == 1 and "running in another process" in err and "Traceback" not in err
        assert json.loads(out.strip().splitlines()[-1])["error"]
        assert winner.poll() is None, "the other one trains"
        runs = last_json(ul(home, "runs", "--json").stdout)["runs"]
        assert [r["status"] for r in runs if r["name"] == "A"] == ["running"]
        stop = ul(home, "stop", "A", "--json")
        assert stop.returncode == 0, stop.stderr
        out, err = winner.communicate(timeout=HANG_S)
        assert winner.returncode == 0, err
        assert last_json(out)["status"] == "stopped"
    finally:
        for p in racers:
            p.kill()
    run = store.get_run("A")
    assert run.status == "stopped" and run.session == 2, "one session per claim: the loser never started one"


# ---- 4. kills around checkpoint writes ----------------------------------------------------------------------

KILL_POINTS = ("before_rename", "after_rename")


def _train_until_killed(store: Store, run_id: int, env: dict[str, str] | None = None, kill_after: float | None = None):
    worker = start_worker(worker_command(store.home, run_id), run_id, env=env)
    if kill_after is not None:
        start = store.get_run(run_id).step
        wait_for(lambda: store.get_run(run_id).step >= start + 2 or worker.poll() is not None)
        time.sleep(kill_after)
        if worker.poll() is None:
            os.kill(worker.pid, signal.SIGKILL)
    return worker.wait()


def test_kills_around_checkpoint_writes_lose_no_metric_step_and_no_checkpoint_row(store: Store):
    rng = random.Random(14)
    run_id = make_run(store, "kill-loop", **{"train.checkpoint_every": 5, "train.steps": 60})
    folder = store.run_dir(run_id) / "checkpoints"
    points = [KILL_POINTS[i % 2] for i in range(5)]  # both points, in a seeded random order
    rng.shuffle(points)
    for point, step in zip(points, [5, 15, 25, 35, 45], strict=True):
        code = _train_until_killed(store, run_id, env={"UL_FAULT_KILL": f"{point}@{step}"})
        assert code == -signal.SIGKILL, f"the worker was to kill itself at {point}@{step}"
        name = f"step-{step:08d}.safetensors"
        if point == "before_rename":
            assert not (folder / name).exists() and list(folder.glob(f".{name}.*.tmp")), "a killed write's temp file"
        else:
            assert (folder / name).is_file() and step not in [c.step for c in store.list_checkpoints(run_id)]
        logged = store.read_metric(run_id, "loss/total").steps
        assert logged.max() >= step, "the metrics up to the checkpoint were committed before its rename"
    for delay in (rng.uniform(0.0, 1.5), rng.uniform(0.0, 1.5)):  # and kills from outside, at random moments
        _train_until_killed(store, run_id, kill_after=delay)
    assert _train_until_killed(store, run_id) == 0
    run = store.get_run(run_id)
    assert (run.status, run.step) == ("completed", 60)
    series = store.read_metric(run_id, "loss/total")
    assert [int(s) for s in series.steps] == list(range(1, 61)), "exactly one value per trained step"
    on_disk = sorted(p.name for p in folder.glob("step-*.safetensors"))
    rows = sorted(c.path.name for c in store.list_checkpoints(run_id, kind="full"))
    assert on_disk == rows and on_disk, "every checkpoint file has a row, and every row a file"
    assert not [p for p in store.run_dir(run_id).rglob("*.tmp")], "no temp files of killed writes remain"


def test_an_after_rename_kill_is_resumed_from_that_checkpoint(store: Store):
    run_id = make_run(store, "after-rename", **{"train.checkpoint_every": 10, "train.steps": 30})
    assert _train_until_killed(store, run_id, env={"UL_FAULT_KILL": "after_rename@20"}) == -signal.SIGKILL
    assert [c.step for c in store.list_checkpoints(run_id)] == [10]
    out = ul(store.home, "resume", "after-rename", "--steps", "1", "--json")
    assert out.returncode == 0, out.stderr
    assert last_json(out.stdout)["step"] == 21, "resumed from the file the kill left without a row"
    assert [c.step for c in store.list_checkpoints(run_id)] == [10, 20, 21]
    registered = store.list_checkpoints(run_id)[1]
    from ul_engine.core.io import sha256_file

    assert registered.sha256 == sha256_file(registered.path) and registered.size_bytes == registered.path.stat().st_size


def test_an_unusable_checkpoint_file_without_a_row_is_left_alone_and_reported(store: Store):
    run_id = make_run(store, "junk", **{"train.checkpoint_every": 10, "train.steps": 10, "train.keep_checkpoints": 10})
    assert _train_until_killed(store, run_id) == 0
    folder = store.run_dir(run_id) / "checkpoints"
    junk = folder / "step-00000050.safetensors"
    junk.write_bytes(b"\x80\x04not a checkpoint")
    truncated = folder / "step-00000007.safetensors"
    truncated.write_bytes((folder / "step-00000010.safetensors").read_bytes()[:100])
    out = ul(store.home, "resume", "junk", "--steps", "2", "--json")
    assert out.returncode == 0, out.stderr
    assert last_json(out.stdout)["step"] == 12, "resumed from the newest usable checkpoint"
    warnings = [line for line in out.stderr.splitlines() if line.startswith("ul: warning:")]
    assert len(warnings) == 2 and all("left alone" in w for w in warnings)
    assert "pickle" in next(w for w in warnings if junk.name in w)
    assert junk.read_bytes() == b"\x80\x04not a checkpoint" and truncated.is_file()
    assert sorted(c.step for c in store.list_checkpoints(run_id)) == [10, 12]
