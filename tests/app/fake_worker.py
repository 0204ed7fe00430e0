"""A stand-in for `python -m ul_engine.worker train`, torch-free so queue tests take seconds.

Modes: ok (a few steps, completed), crash (stderr lines, exit 3), sleep (runs until asked to stop;
--ignore-stop makes it ignore the request and SIGTERM, so only kill ends it).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from datetime import UTC, datetime

from ul_engine.store import Store
from ul_engine.store.liveness import this_process
from ul_engine.store.types import START_STATUSES


def emit(event: dict) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--home", required=True)
    p.add_argument("--run", type=int, required=True)
    p.add_argument("--mode", default="ok")
    p.add_argument("--ignore-stop", action="store_true")
    args = p.parse_args()
    store = Store.open(args.home)
    run = args.run
    if args.mode == "crash":
        for i in range(250):
            print(f"fake traceback line {i}", file=sys.stderr)
        print("RuntimeError: the fake worker crashed", file=sys.stderr)
        return 3
    now = datetime.now(UTC)
    claimed = store.transition(
        run, "running", expect=START_STATUSES, started_at=now, heartbeat_at=now, device="cpu", **this_process()
    )
    session = claimed.session
    emit({"event": "status", "run": run, "status": "running", "step": 0, "session": session})
    if args.ignore_stop:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    steps = 5 if args.mode == "ok" else 10**9
    for step in range(1, steps + 1):
        store.log_metrics(run, [(step, time.time(), {"loss/total": 1.0 / step})])
        store.heartbeat(run, step, session=session)
        emit({"event": "progress", "run": run, "step": step, "total": steps, "it_per_s": 10.0, "eta_s": 1.0})
        request = store.pending_request(run, session=session)
        if request == "stop" and not args.ignore_stop:
            store.take_request(run, session=session)
            store.transition(run, "stopped", session=session, finished_at=datetime.now(UTC), pid=None)
            emit({"event": "status", "run": run, "status": "stopped", "step": step})
            return 0
        time.sleep(0.05 if args.mode == "ok" else 0.2)
    store.transition(run, "completed", session=session, finished_at=datetime.now(UTC), pid=None)
    emit({"event": "status", "run": run, "status": "completed", "step": steps})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
