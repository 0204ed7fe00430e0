"""`ul bench`: speed of training and sampling, against this machine's measured matmul peak.

FLOPs are counted by torch's FlopCounterMode on one forward (every matmul, conv and attention);
training costs 3× the forward, as in the paper's accounting. No store or files are touched.
"""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from ul_engine.bench.peer import peer_comparison
from ul_engine.core.config import RunConfig, resolve
from ul_engine.core.errors import ULError
from ul_engine.data import BatchStream, make_source
from ul_engine.model import LatentBase, UnifiedLatents
from ul_engine.train.compiling import transformer_parts
from ul_engine.train.loop import Trainer, make_accelerator, resolve_device
from ul_engine.train.stages import Stage1Objective, Stage2Objective


def matmul_gflops(device: str = "cpu", n: int | None = None, seconds: float = 1.0) -> float:
    """Sustained fp32 (CPU) / bf16 (CUDA) matmul rate: the practical ceiling for these models.

    A GPU needs a large product (8192³) to reach its tensor-core rate; 1024³ is enough for a CPU.
    """
    n = n or (8192 if device == "cuda" else 1024)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    _sync(device)
    return 2 * n**3 * count / (time.perf_counter() - start) / 1e9


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def forward_gflop(module: torch.nn.Module, *inputs: Any) -> float:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(*inputs)
    return counter.get_total_flops() / 1e9


def _data_batch_ms(stream: BatchStream, batches: int = 7) -> float:
    """Median time to make one training batch: the data pipeline must stay far below a step's time."""
    times = []
    for step in range(1, batches + 1):
        start = time.perf_counter()
        stream.batch(step)
        times.append(time.perf_counter() - start)
    return 1000 * sorted(times)[len(times) // 2]


def _timed_steps(trainer: Trainer, steps: int, device: str, warmup: int = 1) -> float:
    for _ in range(warmup):
        trainer.train_step()  # warm-up (allocations, oneDNN primitive caches; compilation)
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    _sync(device)
    return (time.perf_counter() - start) / steps


def compile_comparison(
    cfg: RunConfig,
    stream: Any,
    acc: Any,
    device: str,
    steps: int,
    stages: tuple[int, ...] = (1, 2),
    rounds: int = 3,
) -> dict[str, Any]:
    """Training images/s of both stages eager and with the transformer parts compiled (`train.compile`),
    from the same initial weights and batches. After two warm-up steps each (the compiled one's extra time
    is the compile time), eager and compiled alternate in `rounds` of `steps` steps, so both see the same
    machine load; the median round counts."""
    batch = cfg.optim.batch_size
    c, h, w = cfg.latent_shape()
    latents = torch.randn(max(batch * 4, 256), c, h, w)
    labels = torch.randint(0, max(cfg.data.num_classes, 1), (latents.shape[0],))
    out: dict[str, Any] = {}
    for stage in stages:
        row: dict[str, Any] = {}
        trainers: dict[str, Trainer] = {}
        for compiled in (False, True):
            key = "compiled" if compiled else "eager"
            raw = cfg.to_dict()
            staged = RunConfig.model_validate({**raw, "stage": stage, "train": {**raw["train"], "compile": compiled}})
            torch.manual_seed(0)
            if stage == 1:
                module: torch.nn.Module = UnifiedLatents(staged)
                objective: Any = Stage1Objective(module, stream, acc.device)
            else:
                module = LatentBase(staged)
                objective = Stage2Objective(module, latents, labels, staged, acc.device)
            trainer = trainers[key] = Trainer(staged, objective, _tmp(), accelerator=acc)
            start = time.perf_counter()
            try:
                for _ in range(2):
                    trainer.train_step()
            except Exception as exc:  # inductor's failures are long tracebacks; say what is needed
                if not compiled:
                    raise
                raise ULError(
                    f"torch.compile failed ({type(exc).__name__}: {str(exc).splitlines()[0][:300]}); on a CPU it "
                    "needs a C++ compiler (gcc or clang) on PATH"
                ) from exc
            _sync(device)
            row[f"{key}_warmup_seconds"] = time.perf_counter() - start
            if compiled:
                row["compiled_parts"] = list(transformer_parts(module))
        wall: dict[str, list[float]] = {k: [] for k in trainers}
        cpu: dict[str, list[float]] = {k: [] for k in trainers}
        for _ in range(rounds):
            for key, trainer in trainers.items():
                cpu_start = time.process_time()
                wall[key].append(_timed_steps(trainer, steps, device, warmup=0))
                cpu[key].append((time.process_time() - cpu_start) / steps)
        for key in trainers:
            row[f"{key}_images_per_s"] = batch / statistics.median(wall[key])
            row[f"{key}_cpu_seconds_per_step"] = statistics.median(cpu[key])  # steadier on a shared machine
        row["speedup"] = row["compiled_images_per_s"] / row["eager_images_per_s"]
        row["cpu_time_speedup"] = row["eager_cpu_seconds_per_step"] / row["compiled_cpu_seconds_per_step"]
        row["compile_seconds"] = max(0.0, row["compiled_warmup_seconds"] - row["eager_warmup_seconds"])
        out[f"stage{stage}"] = row
    return out


def run_bench(
    preset: str,
    *,
    steps: int = 5,
    sample_n: int = 8,
    overrides: list[str] | None = None,
    compile: bool = False,
    peer: bool = False,
) -> dict[str, Any]:
    """The bench of one preset; `compile` adds eager vs compiled training, `peer` the diffusers peer model."""
    overrides = (['data.path="."'] if preset in ("folder-64", "imagenet-512") else []) + list(overrides or [])
    cfg: RunConfig = resolve(preset, overrides)
    if cfg.data.kind != "shapes":
        cfg = RunConfig.model_validate({**cfg.to_dict(), "data": {**cfg.to_dict()["data"], "kind": "shapes"}})
    device = resolve_device("auto")
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    torch.manual_seed(0)
    acc = make_accelerator(device)
    batch = cfg.optim.batch_size
    source = make_source(cfg.data)
    stream = BatchStream(source, batch, 0)

    stage1 = UnifiedLatents(cfg)
    x, _ = stream.batch(0)
    data_ms = _data_batch_ms(stream)
    gflop1 = forward_gflop(stage1.to(acc.device), x.to(acc.device)) / batch
    t1 = Trainer(cfg, Stage1Objective(stage1, stream, acc.device), _tmp(), accelerator=acc)
    sec1 = _timed_steps(t1, steps, device)

    cfg2 = RunConfig.model_validate({**cfg.to_dict(), "stage": 2})
    base = LatentBase(cfg2)
    c, h, w = cfg.latent_shape()
    latents = torch.randn(max(batch * 4, 256), c, h, w)
    labels = torch.randint(0, max(cfg.data.num_classes, 1), (latents.shape[0],))
    gflop2 = forward_gflop(base.to(acc.device), latents[:batch].to(acc.device), labels[:batch].to(acc.device)) / batch
    t2 = Trainer(cfg2, Stage2Objective(base, latents, labels, cfg2, acc.device), _tmp(), accelerator=acc)
    sec2 = _timed_steps(t2, steps, device)

    stage1.eval()
    base.eval()
    start = time.perf_counter()
    z0 = base.sample(sample_n, steps=cfg.sampling.base_steps, seeds=range(sample_n), device=acc.device)
    _sync(device)
    base_s = time.perf_counter() - start
    start = time.perf_counter()
    stage1.decode(z0, steps=cfg.sampling.decoder_steps, seeds=range(sample_n))
    _sync(device)
    dec_s = time.perf_counter() - start

    peak = matmul_gflops(device)
    card = _card_peak_gflops() if device == "cuda" else None
    train1_ips, train2_ips = batch / sec1, batch / sec2
    achieved1 = 3 * gflop1 * train1_ips
    achieved2 = 3 * gflop2 * train2_ips
    result: dict[str, Any] = {
        "preset": preset,
        "device": device,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "threads": torch.get_num_threads(),
        "batch_size": batch,
        "stage1": {
            "train_images_per_s": train1_ips,
            "seconds_per_step": sec1,
            "forward_gflop_per_image": gflop1,
            "train_gflop_per_image": 3 * gflop1,
            "achieved_gflops": achieved1,
            "fraction_of_matmul_peak": achieved1 / peak,
        },
        "stage2": {
            "train_images_per_s": train2_ips,
            "seconds_per_step": sec2,
            "forward_gflop_per_image": gflop2,
            "train_gflop_per_image": 3 * gflop2,
            "achieved_gflops": achieved2,
            "fraction_of_matmul_peak": achieved2 / peak,
        },
        "sampling": {
            "n": sample_n,
            "base_steps": cfg.sampling.base_steps,
            "decoder_steps": cfg.sampling.decoder_steps,
            "base_images_per_s": sample_n / base_s,
            "decoder_images_per_s": sample_n / dec_s,
            "images_per_s": sample_n / (base_s + dec_s),
        },
        "data": {"batch_size": batch, "batch_ms_median": data_ms},
        "matmul_peak_gflops": peak,
        "card": torch.cuda.get_device_name() if device == "cuda" else None,
        "card_bf16_peak_gflops": card,
        "mfu": {"stage1": achieved1 / card, "stage2": achieved2 / card} if card else None,
    }
    if compile:
        result["compile"] = compile_comparison(cfg, stream, acc, device, steps)
    if peer:
        result["peer"] = peer_comparison(cfg, acc, device, steps)
    return result


# Dense bf16 tensor-core peaks from the vendors' data sheets (GFLOP/s), for MFU against the card's rating.
CARD_BF16_PEAK_GFLOPS = {"H100": 989_000.0, "H200": 989_000.0, "A100": 312_000.0, "L40S": 362_000.0}


def _card_peak_gflops() -> float | None:
    name = torch.cuda.get_device_name()
    return next((v for k, v in CARD_BF16_PEAK_GFLOPS.items() if k in name), None)


def _tmp() -> Path:
    return Path(tempfile.mkdtemp(prefix="ul-bench-"))
