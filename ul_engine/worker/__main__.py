"""Worker processes: `python -m ul_engine.worker train --run N` and `python -m ul_engine.worker session`.

A training worker reads its resolved config from the database, trains, and reports JSON-line events on
stdout; it obeys control requests stored on its run row. Under `accelerate launch` every rank runs
this module and only rank 0 writes to the database and files.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

from ul_engine.core import protocol
from ul_engine.core.errors import ULError


def _store(home: Path | None):
    from ul_engine.store import Store

    env = os.environ.get("UL_HOME")
    return Store.open(home or (Path(env) if env else None))


def train_main(args: argparse.Namespace) -> int:
    from ul_engine.train.runner import train_run

    store = _store(args.home)
    try:
        result = train_run(store, args.run, steps=args.steps, minutes=args.minutes, emit=protocol.write)
    except ULError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BaseException:
        traceback.print_exc()
        return 1
    protocol.write({"event": "done", **result.to_json()})
    return 0


def session_main(args: argparse.Namespace) -> int:
    from ul_engine.worker.session import serve

    return serve(_store(args.home), sys.stdin, sys.stdout)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ul_engine.worker")
    p.add_argument("--home", type=Path)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("--run", required=True)
    t.add_argument("--steps", type=int)
    t.add_argument("--minutes", type=float)
    sub.add_parser("session")
    args = p.parse_args(argv)
    if args.command == "train":
        return train_main(args)
    return session_main(args)


if __name__ == "__main__":
    raise SystemExit(main())
