"""The one stop ladder and the one queue policy of ul_engine.core.supervisor, on real processes and a real
SQLite file: `ul stop`, `ul queue run` and the app's queue runner all go through them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from worker_testkit import make_run

from ul_engine.core.supervisor import StopLadder, WorkerExit, claim_jobs, record_exit, run_queue, stop_run
from ul_engine.store import Store
from ul_engine.store.liveness import hostname, process_start_time

DEAF = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('up', flush=True)\ntime.sleep(600)\n"


@pytest.fixture()
def store(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "home")


def test_the_ladder_names_its_rungs_and_their_waits() -> None:
    ladder = StopLadder(grace_s=3.0, term_s=2.0)
    assert [ladder.next_rung("requested"), ladder.next_rung("terminate"), ladder.next_rung("kill")] == [
        "terminate", "kill", None,
    ]  # fmt: skip
    assert (ladder.wait_after("requested"), ladder.wait_after("terminate"), ladder.total_s) == (3.0, 2.0, 5.0)


def test_a_worker_deaf_to_the_request_and_to_sigterm_is_killed_and_its_run_stopped(store: Store) -> None:
    run_id = make_run(store, "deaf")
    proc = subprocess.Popen([sys.executable, "-c", DEAF], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "up\n"  # SIGTERM is ignored from here on
        store.transition(run_id, "running", pid=proc.pid, pid_started_at=process_start_time(proc.pid), host=hostname())
        how = stop_run(store, run_id, ladder=StopLadder(grace_s=0.3, term_s=0.3))
        assert how == "killed"
        assert proc.wait(timeout=30) == -9
        run = store.get_run(run_id)
        assert (run.status, run.pid, run.error) == ("stopped", None, "killed after it did not stop in time")
    finally:
        if proc.poll() is None:
            proc.kill()


def test_claim_jobs_fails_a_job_it_cannot_run_and_takes_the_next(store: Store) -> None:
    first, second, other = make_run(store, "a"), make_run(store, "b"), make_run(store, "c")
    odd = store.enqueue(first, kind="export", device="cpu")
    train = store.enqueue(second, device="cpu")
    store.enqueue(other, device="cuda:0")
    claimed = claim_jobs(store, ["cpu", "cuda:0"], busy={"cuda:0"})
    assert [j.id for j in claimed] == [train.id]  # the busy device's job waits
    failed = next(j for j in store.list_jobs() if j.id == odd.id)
    assert (failed.status, failed.error) == ("failed", "unknown job export")


def test_the_cli_queue_goes_through_the_same_policy(store: Store) -> None:
    """`ul queue run` used to start any job as training; now it refuses what it cannot run, like the app."""
    odd = store.enqueue(make_run(store, "odd"), kind="export", device="cpu")
    assert run_queue(store, "cpu") == []
    assert next(j for j in store.list_jobs() if j.id == odd.id).status == "failed"


def test_record_exit_writes_the_outcome_only_for_the_session_that_ended(store: Store) -> None:
    run_id = make_run(store, "r")
    job = store.enqueue(run_id)
    claimed = store.next_job("cpu")
    assert claimed is not None and claimed.id == job.id
    session = store.transition(run_id, "running").session
    tail = "loading\nRuntimeError: boom\n"
    assert not record_exit(store, WorkerExit(run_id, job.id, session + 1, 1, stderr_tail=tail))  # another session
    assert store.get_run(run_id).status == "running"
    assert not record_exit(store, WorkerExit(run_id, job.id, session, 1, stderr_tail=tail))
    run = store.get_run(run_id)
    assert (run.status, run.error, run.exit_code) == ("failed", "RuntimeError: boom", 1)
    done = next(j for j in store.list_jobs() if j.id == job.id)
    assert (done.status, done.exit_code, done.error) == ("failed", 1, "RuntimeError: boom")
    stopped_id = make_run(store, "s")
    stopped_session = store.transition(stopped_id, "running").session
    assert not record_exit(store, WorkerExit(stopped_id, None, stopped_session, -15, stop_requested=True))
    assert store.get_run(stopped_id).status == "stopped"  # asked to stop: stopped, resumable, not failed


def test_stopping_a_worker_that_shares_its_parents_group_signals_only_the_worker(tmp_path: Path) -> None:
    """`ul train` started from a script shares the script's process group: the stop ladder's SIGTERM must reach
    the worker alone. Played out in a parent that leads its own session, so a regression kills only that parent."""
    script = tmp_path / "parent.py"
    script.write_text(
        "import subprocess, sys, time\n"
        "from ul_engine.core.supervisor import signal_tree\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "time.sleep(0.5)\n"
        "assert signal_tree(child.pid, 15)\n"
        "child.wait(timeout=60)\n"
        "print('parent survived', child.returncode)\n"
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                          start_new_session=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "parent survived -15"
