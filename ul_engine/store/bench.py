"""Store benchmark: sustained metric writes and decimated reads of a long series.

    python -m ul_engine.store.bench [--home DIR] [--points 1000000] [--seconds 3]

Prints one JSON object. `writer` is also the writer process of the store's concurrency test.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from ul_engine.store.store import Store

KEYS = ("loss", "loss/prior", "loss/decoder", "kl", "grad_norm", "lr", "bits_per_dim", "psnr")


def _latency_stats(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "p50_ms": round(1000 * statistics.median(ordered), 3),
        "p99_ms": round(1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 3),
        "max_ms": round(1000 * ordered[-1], 3),
    }


def writer(
    home: str | Path,
    run_id: int,
    seconds: float,
    steps_per_batch: int,
    keys: tuple[str, ...] = KEYS,
    out: str | Path | None = None,
    first_step: int = 0,
) -> dict[str, Any]:
    """Log batches of `steps_per_batch` steps × len(keys) values as fast as possible for `seconds`.

    Returns (and writes to `out` as JSON, for a spawned process) rows/s, batches/s, per-batch latencies.
    """
    store = Store.open(home)
    latencies: list[float] = []
    step = first_step
    start = time.perf_counter()
    result: dict[str, Any]
    try:
        while time.perf_counter() - start < seconds:
            wall = time.time()
            batch = [
                (s, wall, {k: math.sin(s * 1e-3 + i) + 1e-4 * (s % 97) for i, k in enumerate(keys)})
                for s in range(step, step + steps_per_batch)
            ]
            t0 = time.perf_counter()
            store.log_metrics(run_id, batch)
            latencies.append(time.perf_counter() - t0)
            step += steps_per_batch
        elapsed = time.perf_counter() - start
        result = {
            "steps_per_batch": steps_per_batch,
            "keys": len(keys),
            "batches": len(latencies),
            "batches_per_s": round(len(latencies) / elapsed, 1),
            "rows_per_s": round(len(latencies) * steps_per_batch * len(keys) / elapsed),
            "rows_per_s_in_store": round(len(latencies) * steps_per_batch * len(keys) / sum(latencies)),
            "latency": _latency_stats(latencies),
            "latencies_s": latencies if out is not None else None,
            "last_step": step - 1,
            "error": None,
        }
    except Exception as exc:  # reported to the parent process rather than lost in a child's stderr
        result = {"error": f"{type(exc).__name__}: {exc}", "batches": len(latencies)}
    finally:
        store.close()
    if out is not None:
        Path(out).write_text(json.dumps(result))
    return result


def fill(store: Store, run_id: int, key: str, points: int, batch: int = 50_000) -> float:
    """Log `points` values of one key (a noisy decaying curve); returns the seconds it took."""
    t0 = time.perf_counter()
    for lo in range(0, points, batch):
        wall = time.time()
        store.log_metrics(
            run_id,
            [
                (s, wall, {key: 1.0 / (1 + s * 1e-4) + 0.05 * math.sin(s * 0.37)})
                for s in range(lo, min(points, lo + batch))
            ],
        )
    return time.perf_counter() - t0


def read_benchmark(store: Store, run_id: int, key: str, max_points: int, repeats: int) -> dict[str, Any]:
    """Time decimated reads of the whole series and of a zoomed-in window, and one raw read."""

    def timed(**kw: Any) -> tuple[float, int]:
        t0 = time.perf_counter()
        series = store.read_metric(run_id, key, **kw)
        return time.perf_counter() - t0, len(series)

    full = [timed(max_points=max_points) for _ in range(repeats)]
    last = store.summary(run_id)[key]["last_step"]
    zoom = [timed(max_points=max_points, step_range=(last // 3 + 1, last // 3 + last // 10)) for _ in range(repeats)]
    raw_s, raw_n = timed()
    return {
        "decimated_full_ms": {
            "median": round(1000 * statistics.median(t for t, _ in full), 2),
            "max": round(1000 * max(t for t, _ in full), 2),
            "points": full[0][1],
        },
        "decimated_zoom_10pct_ms": {
            "median": round(1000 * statistics.median(t for t, _ in zoom), 2),
            "max": round(1000 * max(t for t, _ in zoom), 2),
            "points": zoom[0][1],
        },
        "raw_read_ms": round(1000 * raw_s, 1),
        "raw_points": raw_n,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=None, help="store folder (default: a temporary one)")
    parser.add_argument("--points", type=int, default=1_000_000, help="length of the series read back")
    parser.add_argument("--max-points", type=int, default=1500, help="plot width in pixels")
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each write benchmark")
    parser.add_argument("--repeats", type=int, default=20, help="timed reads per read benchmark")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ul-store-bench-") as tmp:
        home = args.home or Path(tmp)
        store = Store.open(home)
        writes = []
        for steps_per_batch in (1, 10, 100):
            run = store.create_run(
                name=None, stage=1, preset="bench-write", config={"steps_per_batch": steps_per_batch}
            )
            r = writer(home, run.id, args.seconds, steps_per_batch)
            r.pop("latencies_s", None)
            writes.append(r)
        run = store.create_run(name=None, stage=1, preset="bench-read", config={"points": args.points})
        fill_s = fill(store, run.id, "loss", args.points)
        reads = read_benchmark(store, run.id, "loss", args.max_points, args.repeats)
        db_mb = sum(p.stat().st_size for p in Path(home).glob("ul.sqlite*")) / 2**20
        store.close()
    result = {
        "writes": writes,
        "fill": {"points": args.points, "seconds": round(fill_s, 2), "rows_per_s": round(args.points / fill_s)},
        "read": {"points": args.points, "max_points": args.max_points, **reads},
        "db_size_mb": round(db_mb, 1),
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
