"""The queue runs one job per device, keeps a failed job's exit code and stderr tail and goes on; the stop
ladder ends a worker that ignores requests; closing can leave a worker running, and a new session
re-attaches to it. (A torch-free fake worker keeps these fast; test_app_training uses the real one.)"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

from ul_app_testkit import FAKE_WORKER, fake_command

from app.workers import procs
from ul_engine.core.supervisor import StopLadder
from ul_engine.store.liveness import hostname


def new_run(store, name: str) -> int:
    return store.create_run(name=name, stage=1, preset="smoke", config={}).id


def test_failed_job_keeps_exit_code_and_stderr_tail_and_the_queue_goes_on(qtbot, store, home, make_ctx) -> None:
    crash, ok = new_run(store, "crashes"), new_run(store, "works")
    ctx = make_ctx(command_factory=fake_command(home, {crash: "crash", ok: "ok"}))
    ctx.start()
    ctx.runner.enqueue(crash, "cpu")
    ctx.runner.enqueue(ok, "cpu")
    started = []
    ctx.runner.run_started.connect(lambda run_id, job_id: started.append((run_id, len(ctx.runner.processes))))
    qtbot.waitUntil(lambda: store.get_run(ok).status == "completed" and not ctx.runner.is_busy(), timeout=120_000)
    assert [s[0] for s in started] == [crash, ok] and all(n == 1 for _, n in started)  # one job at a time
    failed = store.get_run(crash)
    assert failed.status == "failed" and failed.exit_code == 3
    assert failed.error == "RuntimeError: the fake worker crashed"
    lines = failed.stderr_tail.splitlines()
    assert len(lines) == 200 and lines[-1] == "RuntimeError: the fake worker crashed"
    jobs = {j.run_id: j for j in store.list_jobs()}
    assert jobs[crash].status == "failed" and jobs[crash].exit_code == 3
    assert len(jobs[crash].stderr_tail.splitlines()) == 200
    assert jobs[ok].status == "done" and jobs[ok].exit_code == 0
    assert store.get_run(ok).exit_code == 0


def test_stop_request_is_obeyed_and_the_ladder_kills_a_deaf_worker(qtbot, store, home, make_ctx) -> None:
    polite, deaf = new_run(store, "polite"), new_run(store, "deaf")
    ctx = make_ctx(command_factory=fake_command(home, {polite: "sleep", deaf: "sleep"}))
    ctx.runner.set_devices(["cpu", "cuda:0"])  # two devices, so both run at once
    ctx.start()
    ctx.runner.enqueue(polite, "cpu")
    ctx.runner.tick()  # polite starts with the plain command
    assert polite in ctx.runner.processes
    ctx.runner.command_factory = fake_command(home, {polite: "sleep", deaf: "sleep"}, "--ignore-stop")
    ctx.runner.enqueue(deaf, "cuda:0")
    qtbot.waitUntil(lambda: all(store.get_run(r).status == "running" for r in (polite, deaf)), timeout=120_000)

    ctx.runner.stop_run(polite)
    # Shown at once: "stopping", or already "stopped" when the worker obeyed within the moment since.
    assert store.get_run(polite).status in ("stopping", "stopped")
    qtbot.waitUntil(lambda: store.get_run(polite).status == "stopped" and polite not in ctx.runner.processes,
                    timeout=120_000)  # fmt: skip

    proc = ctx.runner.process_for(deaf)
    phases = []
    proc.stop_phase.connect(phases.append)
    ctx.runner.stop_run(deaf, StopLadder(grace_s=0.5, term_s=0.5))
    qtbot.waitUntil(lambda: deaf not in ctx.runner.processes, timeout=120_000)
    assert phases == ["requested", "terminate", "kill"]
    run = store.get_run(deaf)
    assert run.status == "stopped" and run.exit_code is not None and run.exit_code != 0


def test_keep_training_in_the_background_then_reattach(qtbot, store, home, make_ctx) -> None:
    run_id = new_run(store, "background")
    ctx = make_ctx(command_factory=fake_command(home, "sleep"))
    ctx.start()
    ctx.runner.enqueue(run_id, "cpu")
    qtbot.waitUntil(lambda: store.get_run(run_id).status == "running", timeout=120_000)
    pid = store.get_run(run_id).pid
    ctx.shutdown(detach=True)  # "keep training": the app goes, the worker stays
    assert procs.pid_alive(pid)

    second = make_ctx()
    second.start()  # a new session finds the run alive and follows it
    proc = second.runner.process_for(run_id)
    assert proc is not None and proc.pid() == pid and second.runner.busy_devices() == {"cpu"}
    second.runner.stop_run(run_id)
    qtbot.waitUntil(lambda: run_id not in second.runner.processes, timeout=120_000)
    assert store.get_run(run_id).status == "stopped"
    assert store.list_jobs(run_id=run_id)[0].status == "done"


def test_a_worker_that_died_while_the_app_was_closed_is_marked_interrupted(store, make_ctx) -> None:
    run_id = new_run(store, "orphan")
    store.enqueue(run_id)
    job = store.next_job("cpu")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store.transition(run_id, "running", pid=dead.pid, host=hostname(), started_at=datetime.now(UTC))
    ctx = make_ctx()
    ctx.start()
    run = store.get_run(run_id)
    assert run.status == "interrupted" and "resume" in run.error
    assert [j.status for j in store.list_jobs(run_id=run_id)] == ["failed"] and job is not None


CLAIM_AND_SLEEP = (
    "import sys, time\n"
    "from ul_engine.store import Store\n"
    "from ul_engine.store.liveness import this_process\n"
    "Store.open(sys.argv[1]).transition(int(sys.argv[2]), 'running', **this_process())\n"
    "print('claimed', flush=True)\n"
    "time.sleep(600)\n"
)


def test_a_worker_killed_while_the_app_is_open_is_interrupted_at_once(qtbot, store, home, make_ctx) -> None:
    """A worker the app does not follow (started from a terminal) is killed: the next tick marks it."""
    run_id = new_run(store, "outside")
    ctx = make_ctx()
    ctx.start()
    outside = subprocess.Popen(
        [sys.executable, "-c", CLAIM_AND_SLEEP, str(home), str(run_id)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert outside.stdout is not None and outside.stdout.readline().strip() == "claimed"
        qtbot.wait(2500)  # a few ticks: a live worker is left alone
        assert store.get_run(run_id).status == "running"
    finally:
        outside.kill()
        outside.wait()
    qtbot.waitUntil(lambda: store.get_run(run_id).status == "interrupted", timeout=120_000)
    assert "is gone" in store.get_run(run_id).error


def test_fake_worker_exists() -> None:
    assert FAKE_WORKER.is_file()
