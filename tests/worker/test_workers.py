"""Training workers as real processes on a real SQLite file: crash safety, stop, pause, queue, NaN, disk full."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from worker_testkit import make_run, wait_for

from ul_engine.core.supervisor import LaunchOptions, StopLadder, run_queue, start_worker, stop_run, worker_command
from ul_engine.store import Store


@pytest.fixture()
def store(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "home")


def test_kill_9_then_resume_continues(store: Store):
    run_id = make_run(store, "crashy", **{"train.steps": 2000})
    worker = start_worker(worker_command(store.home, run_id), run_id)
    wait_for(lambda: store.get_run(run_id).step >= 45 and len(store.list_checkpoints(run_id)) >= 2)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    flushed = store.read_metric(run_id, "loss/total")
    assert len(flushed.steps) >= 40
    time.sleep(1.2)
    assert run_id in store.mark_stale_runs(timeout_s=1.0)
    assert store.get_run(run_id).status == "interrupted"
    last_ckpt = max(c.step for c in store.list_checkpoints(run_id) if c.path.is_file())
    assert last_ckpt >= 40
    out = subprocess.run(
        [sys.executable, "-m", "ul_engine.cli", "--home", str(store.home), "resume", "crashy", "--steps", "5",
         "--json"], capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["step"] == last_ckpt + 5
    series = store.read_metric(run_id, "loss/total")
    assert series.steps[0] == 1 and series.steps[-1] == last_ckpt + 5
    assert list(series.steps) == sorted(set(series.steps)), "one value per step: the curve continues"


def test_stop_is_cooperative_and_leaves_a_checkpoint(store: Store):
    """How long a stop takes is a benchmark's question; here: the worker stops by itself, cleanly."""
    run_id = make_run(store, "stoppable", **{"train.steps": 5000, "train.checkpoint_every": 1000})
    worker = start_worker(worker_command(store.home, run_id), run_id)
    wait_for(lambda: store.get_run(run_id).step >= 5)
    how = stop_run(store, run_id, worker=worker, ladder=StopLadder(grace_s=120))  # the grace only catches a hang
    assert how == "cooperative", how
    assert worker.wait(timeout=120) == 0
    run = store.get_run(run_id)
    assert run.status == "stopped"
    assert [c.step for c in store.list_checkpoints(run_id)] == [run.step]


def test_pause_holds_the_step_until_resume(store: Store):
    run_id = make_run(store, "pausable", **{"train.steps": 5000, "train.checkpoint_every": 1000})
    worker = start_worker(worker_command(store.home, run_id), run_id)
    wait_for(lambda: store.get_run(run_id).step >= 3)
    store.request(run_id, "pause")
    wait_for(lambda: store.get_run(run_id).status == "paused", timeout=30)
    held = store.get_run(run_id).step
    time.sleep(1.5)
    assert store.get_run(run_id).step == held
    assert worker.poll() is None, "the model stays loaded"
    store.request(run_id, "resume")
    wait_for(lambda: store.get_run(run_id).step > held + 2, timeout=30)
    assert store.get_run(run_id).status == "running"
    stop_run(store, run_id, worker=worker)
    worker.wait()


def test_queue_continues_after_a_failed_job(store: Store, tmp_path: Path):
    missing = tmp_path / "no-such-folder"
    bad = make_run(store, "bad-data", **{"data.kind": "image-folder", "data.path": str(missing), "data.num_classes": 0})
    good = make_run(store, "good", **{"train.steps": 10})
    store.enqueue(bad)
    store.enqueue(good)
    run_queue(store, "cpu")
    jobs = {j.run_id: j for j in store.list_jobs()}
    assert jobs[bad].status == "failed" and jobs[bad].exit_code == 2
    assert "no-such-folder" in (jobs[bad].error or "") and "no-such-folder" in (jobs[bad].stderr_tail or "")
    assert jobs[good].status == "done" and store.get_run(good).status == "completed"
    assert store.get_run(bad).status == "failed"


def test_nan_losses_stop_the_run_keeping_the_last_good_checkpoint(store: Store):
    run_id = make_run(store, "nan", **{"optim.max_bad_steps": 4, "train.checkpoint_every": 10})
    worker = start_worker(worker_command(store.home, run_id), run_id, env={"UL_FAULT_NAN_STEPS": "25-60"})
    assert worker.wait() == 2
    run = store.get_run(run_id)
    assert run.status == "failed" and "consecutive non-finite" in run.error
    assert max(c.step for c in store.list_checkpoints(run_id)) == 20


def test_disk_full_fails_the_run_and_keeps_earlier_checkpoint(store: Store, monkeypatch: pytest.MonkeyPatch):
    from ul_engine.core import io
    from ul_engine.train.runner import train_run

    run_id = make_run(store, "full", **{"train.checkpoint_every": 10, "train.steps": 40})
    real_replace = io.os.replace
    calls = {"n": 0}

    def replace(src: str, dst: str) -> None:
        if str(dst).endswith("step-00000020.safetensors"):
            raise OSError(errno.ENOSPC, "No space left on device")
        calls["n"] += 1
        real_replace(src, dst)

    monkeypatch.setattr(io.os, "replace", replace)
    with pytest.raises(Exception, match="disk full"):
        train_run(store, run_id, install_signal_handlers=False)
    run = store.get_run(run_id)
    assert run.status == "failed" and "disk full" in run.error
    ckpts = [c for c in store.list_checkpoints(run_id) if c.path.is_file()]
    assert [c.step for c in ckpts] == [10]
    from ul_engine.inference.loading import stage1_from_checkpoint

    stage1_from_checkpoint(ckpts[0].path)


def test_two_process_cpu_run_matches_one_process(store: Store):
    """The distributed path (accelerate launch, gloo) on every CI run; same global batch, similar loss."""
    one = make_run(store, "one", **{"train.steps": 40, "train.checkpoint_every": 40, "train.threads": 1})
    two = make_run(store, "two", **{"train.steps": 40, "train.checkpoint_every": 40, "train.threads": 1})
    for run_id, processes in ((one, 1), (two, 2)):
        worker = start_worker(worker_command(store.home, run_id, launch=LaunchOptions(num_processes=processes)), run_id)
        assert worker.wait() == 0, "\n".join(worker.stderr_tail)
        assert store.get_run(run_id).status == "completed"
    a = store.read_metric(one, "loss/total").values[-10:].mean()
    b = store.read_metric(two, "loss/total").values[-10:].mean()
    assert abs(a - b) / a < 0.25, (a, b)
    assert len(store.read_metric(two, "loss/total").steps) == 40, "rank 0 alone logs, once per step"
