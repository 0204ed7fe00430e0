"""Train one stored run: build it from its resolved config, resume from its latest checkpoint, train,
record metrics/checkpoints/previews in the store, and honour control requests and signals.

The CLI calls this in the foreground; the worker process calls the same function.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ul_engine.core import io, model_files
from ul_engine.core.config import RunConfig, validate
from ul_engine.core.demo import bundle_checkpoint, demo_folder
from ul_engine.core.errors import CheckpointError, DiskFullError, RunStateError, TrainingDiverged, ULError
from ul_engine.core.imaging import grid, save_png, tensor_to_uint8
from ul_engine.core.model_files import recorded_sha256
from ul_engine.core.user_paths import check_folder
from ul_engine.data import BatchStream, fixed_validation_batch, make_source
from ul_engine.ecosystem.latents import check_latents, load_latents
from ul_engine.eval.metrics.fidelity import psnr_ssim
from ul_engine.inference import loading
from ul_engine.inference.loading import ema_copy, stage1_from_checkpoint
from ul_engine.model import LatentBase, UnifiedLatents
from ul_engine.store import liveness
from ul_engine.store.types import ACTIVE_RUN_STATUSES, START_STATUSES
from ul_engine.train.loop import Trainer, make_accelerator, resolve_device
from ul_engine.train.stages import Stage1Objective, Stage2Objective, build_latent_cache, cache_path, source_length

Emit = Callable[[dict[str, Any]], None]
PREVIEW_COUNT = 8
PREVIEW_CLIPS = 4  # video previews: a row of frames per clip
PREVIEW_SEED = 1234


@dataclass
class TrainResult:
    run_id: int
    stage: int
    status: str
    step: int
    losses: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.run_id,
            "stage": self.stage,
            "status": self.status,
            "step": self.step,
            "losses": self.losses,
        }


class StoreHooks:
    """Connects the loop to the store: batched metrics (≥ 1 flush/s), heartbeats, control, checkpoints.

    Everything is scoped to the worker's session: requests for other sessions are not seen, and a heartbeat
    that finds the session over (the run was marked interrupted, or another worker took it) stops training.
    """

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.buffer: list[tuple[int, float, dict[str, float]]] = []
        self.last_flush = time.monotonic()
        self.trainer: Trainer | None = None
        self.mirror: Any = None  # train.log_to = ["tensorboard"]: the same rows as TensorBoard events
        if ctx.is_main and "tensorboard" in ctx.cfg.train.log_to:
            from ul_engine.ecosystem.metrics_export import TensorBoardMirror  # why: tensorboard is an optional extra

            self.mirror = TensorBoardMirror(ctx.run_dir / "tensorboard")

    def flush(self, step: int | None = None) -> None:
        store, run_id = self.ctx.store, self.ctx.run_id
        if self.buffer:
            rows, self.buffer = self.buffer, []
            store.log_metrics(run_id, rows)
            if self.mirror is not None:
                self.mirror.write(rows)
            self.ctx.emit({"event": "metrics", "step": rows[-1][0], "count": len(rows), "values": rows[-1][2]})
        if step is not None and self.ctx.is_main and not store.heartbeat(run_id, step, session=self.ctx.session):
            self.ctx.lost = True
        self.last_flush = time.monotonic()

    def close(self) -> None:
        if self.mirror is not None:
            self.mirror.close()

    def before_checkpoint(self, step: int) -> None:
        # The metrics a checkpoint covers are committed before its file appears: a kill right after the
        # rename leaves no step of the curve missing (a resume from this file keeps them all).
        self.flush(step)

    def on_metrics(self, step: int, wall_time: float, values: dict[str, float]) -> None:
        if not self.ctx.is_main:
            return
        self.buffer.append((step, wall_time, values))
        if time.monotonic() - self.last_flush >= 1.0:
            self.flush(step)

    def on_checkpoint(self, step: int, path: Path, sha256: str, metrics: dict[str, float]) -> None:
        self.flush(step)
        store = self.ctx.store
        store.add_checkpoint(
            self.ctx.run_id,
            step=step,
            path=path,
            sha256=sha256,
            kind="full",
            metrics=metrics,
            size_bytes=path.stat().st_size,
        )
        known = {c.path for c in store.list_checkpoints(self.ctx.run_id)}
        for stale in known:
            if not Path(stale).exists():
                store.delete_checkpoint_row(self.ctx.run_id, path=Path(stale))
        self.ctx.emit({"event": "checkpoint", "step": step, "path": str(path), "sha256": sha256})
        if self.trainer is not None:
            self.ctx.export_and_preview(self.trainer, step)

    def on_progress(self, step: int, total: int, it_per_s: float, eta_s: float | None) -> None:
        self.ctx.emit({"event": "progress", "step": step, "total": total, "it_per_s": it_per_s, "eta_s": eta_s})
        if self.ctx.progress_bar is not None:
            self.ctx.progress_bar.n = step
            self.ctx.progress_bar.refresh()

    def poll(self, step: int) -> str | None:
        if time.monotonic() - self.last_flush >= 1.0:
            self.flush(step)
        if self.ctx.lost:
            return "stop"
        store, run_id, session = self.ctx.store, self.ctx.run_id, self.ctx.session
        action = store.pending_request(run_id, session=session)
        if action is None:
            return None
        if action != "stop":  # take it; a stop that replaced it meanwhile comes back from take_request
            action = store.take_request(run_id, session=session) or action
        if action == "pause":
            # The held step is committed before the status says "paused": a reader that sees "paused"
            # then reads the step the run stays at (else the next heartbeat moves it by one).
            self.flush(step)
            self.ctx.move("paused", expect="running")
            self.ctx.emit({"event": "status", "status": "paused", "step": step})
        if action == "stop":
            self.ctx.move("stopping", expect=("running", "paused"))
            self.ctx.emit({"event": "status", "status": "stopping", "step": step})
        return None if action == "resume" else action

    def on_paused(self, step: int) -> str | None:
        self.flush(step)
        if self.ctx.lost:
            return "stop"
        action = self.ctx.store.pending_request(self.ctx.run_id, session=self.ctx.session)
        if action == "resume":
            action = self.ctx.store.take_request(self.ctx.run_id, session=self.ctx.session) or action
        if action in ("resume", "stop"):
            if action == "resume":
                self.ctx.move("running", expect="paused")
            else:
                self.ctx.move("stopping", expect=("running", "paused"))
            self.ctx.emit({"event": "status", "status": "running" if action == "resume" else "stopping", "step": step})
            return action
        time.sleep(0.2)
        return None

    def on_sample_now(self, step: int) -> None:
        if self.trainer is not None:
            self.ctx.write_preview(self.trainer, step)


class RunContext:
    """Everything one training invocation needs, built from the stored run."""

    def __init__(self, store: Any, run_ref: int | str, *, emit: Emit | None = None, progress: bool = False) -> None:
        self.store = store
        self.run = store.get_run(run_ref)
        if self.run.status == "shipped":
            raise ULError(
                f"run {self.run.name} is a model that came with UL Studio; it cannot be trained. "
                "Train your own: ul train --preset shapes-32 (or folder-64 with --set data.path=DIR)"
            )
        self.run_id = self.run.id
        self.cfg: RunConfig = validate(self.run.config)
        self.run_dir = store.run_dir(self.run_id)
        self.emit_fn = emit
        self.want_progress = progress
        self.progress_bar: Any = None
        self.device = resolve_device(self.cfg.train.device)
        self.acc = make_accelerator(self.device)
        self.is_main = bool(self.acc.is_main_process)
        if not self.is_main:
            self.store = ReadOnlyStore(store)  # rank 0 alone writes to the database and files
        self.stage1: UnifiedLatents | None = None  # frozen stage-1 model (stage 2 only)
        self.session: int | None = None  # the worker session this process started (rank 0)
        self.lost = False  # the session ended under us (marked interrupted, or taken by another worker)

    def start_session(self) -> None:
        """Claim the run: one compare-and-set to "running" that starts a new session; RunStateError if another
        process trains it. Nothing is written before this succeeds."""
        if not self.is_main:
            return
        self.store.mark_stale_runs()  # a dead worker of this run (on this machine: seen at once) never blocks it
        run = self.store.transition(
            self.run_id, "running", expect=START_STATUSES, device=self.device, error=None, exit_code=None,
            started_at=_now(), finished_at=None, **liveness.this_process(),
        )  # fmt: skip
        self.session = run.session
        self.emit({"event": "status", "status": "starting", "device": self.device, "session": self.session})

    def move(self, to: str, *, expect: str | tuple[str, ...] = ACTIVE_RUN_STATUSES, **fields: Any) -> bool:
        """Move this session's run to `to`; False (nothing written) when the status or session has moved on."""
        if not self.is_main:
            return False
        try:
            self.store.transition(self.run_id, to, expect=expect, session=self.session, **fields)
        except RunStateError:
            return False
        return True

    def emit(self, event: dict[str, Any]) -> None:
        if self.emit_fn is not None and self.is_main:
            self.emit_fn({"run": self.run_id, **event})

    # -- building ------------------------------------------------------------------------------------

    def build(self) -> Trainer:
        cfg = self.cfg
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        torch.manual_seed(cfg.train.seed)
        rank, world = self.acc.process_index, self.acc.num_processes
        if cfg.optim.batch_size % (world * cfg.optim.grad_accum):
            raise ULError(
                f"optim.batch_size ({cfg.optim.batch_size}) must divide evenly over {world} processes × "
                f"{cfg.optim.grad_accum} accumulation steps"
            )
        if cfg.stage == 1:
            source = make_source(cfg.data)
            stream = BatchStream(source, cfg.optim.batch_size // world, cfg.data.seed, rank=rank, world_size=world)
            model = UnifiedLatents(cfg)
            if cfg.train.init_from:
                loading.init_stage1_from(model, _init_folder(cfg.train.init_from))
            objective: Any = Stage1Objective(model, stream, self.acc.device)
            self.source = source
        else:
            objective = self._build_stage2(rank, world)
        extra = {"run_id": str(self.run_id)}
        trainer = Trainer(cfg, objective, self.run_dir / "checkpoints", accelerator=self.acc, extra_meta=extra)
        return trainer

    def _build_stage2(self, rank: int, world: int) -> Stage2Objective:
        cfg, run = self.cfg, self.run
        if run.parent_checkpoint_id is None:
            raise ULError(f"run {run.name} is stage 2 but names no stage-1 checkpoint")
        parent = self.store.get_checkpoint(run.parent_checkpoint_id)
        stage1_dir = self.run_dir / "stage1"
        if not (stage1_dir / "decoder.json").is_file():
            if not parent.path.is_file():
                raise ULError(f"the stage-1 checkpoint {parent.path} is gone; train stage 2 from another checkpoint")
            model = stage1_from_checkpoint(parent.path, sha256=parent.sha256)
            loading.export_module(
                model,
                stage1_dir,
                config=model.cfg,
                info={"source_checkpoint_sha256": parent.sha256, "step": parent.step, "run_id": parent.run_id},
            )
        self.stage1 = loading.load_stage1(stage1_dir, self.acc.device)
        for p in self.stage1.parameters():
            p.requires_grad_(False)
        if cfg.data.kind == "latents":  # encoded once by `ul encode`: the folder is the latent cache
            check_latents(cfg, parent.sha256)
            latents, labels, _ = load_latents(cfg.data.path)
            self.emit({"event": "status", "status": "latents_cached", "count": len(latents), "path": cfg.data.path})
            return Stage2Objective(LatentBase(cfg), latents, labels, cfg, self.acc.device, rank=rank, world_size=world)
        source = make_source(cfg.data)
        self.source = source
        count = source_length(source, cfg.train.latent_cache_size)
        path = cache_path(self.run_dir, parent.sha256)
        self.emit({"event": "status", "status": "caching_latents", "count": count})

        bar = None
        if self.want_progress and self.is_main and sys.stdout.isatty():
            bar = tqdm(total=count, unit="img", desc="caching latents")

        def progress(done: int, total: int) -> bool:
            self.emit({"event": "progress", "phase": "latent_cache", "step": done, "total": total})
            if bar is not None:
                bar.n = done
                bar.refresh()
            return self.store.pending_request(self.run_id, session=self.session) == "stop"

        if self.is_main:
            build_latent_cache(self.stage1, source, count, path, device=self.acc.device, progress=progress)
            if bar is not None:
                bar.close()
        self.acc.wait_for_everyone()
        latents, labels = build_latent_cache(self.stage1, source, count, path, device=self.acc.device)
        self.emit({"event": "status", "status": "latents_cached", "count": count, "path": str(path)})
        return Stage2Objective(LatentBase(cfg), latents, labels, cfg, self.acc.device, rank=rank, world_size=world)

    # -- outputs -------------------------------------------------------------------------------------

    def export_and_preview(self, trainer: Trainer, step: int) -> None:
        inference = ema_copy(trainer.unwrapped, trainer.ema)
        loading.export_module(
            inference, self.run_dir / "model", config=self.cfg, info={"step": step, "run_id": self.run_id}
        )
        self.write_preview(trainer, step, inference)

    @torch.no_grad()
    def write_preview(self, trainer: Trainer, step: int, inference: Any = None) -> None:
        """Fixed validation batch (fixed seeds, fixed λ grid) so previews are comparable across steps."""
        if not self.is_main:
            return
        inference = inference or ema_copy(trainer.unwrapped, trainer.ema)
        steps = min(self.cfg.sampling.decoder_steps, 16)
        count = PREVIEW_CLIPS if self.cfg.is_video else PREVIEW_COUNT
        seeds = list(range(PREVIEW_SEED, PREVIEW_SEED + count))
        psnr = None
        if self.cfg.stage == 1:
            x, _ = fixed_validation_batch(self.source, count, PREVIEW_SEED)
            x = x.to(self.acc.device)
            z_clean = inference.encode(x)
            g = torch.Generator().manual_seed(PREVIEW_SEED)
            z0 = inference.noisy_latent(z_clean, torch.randn(z_clean.shape, generator=g).to(x.device))
            recon = inference.decode(z0, steps=steps, seeds=seeds)
            tiles = _preview_grid(torch.cat([x, recon]), count)
            psnr = _preview_psnr(x, recon)
        else:
            assert self.stage1 is not None
            base_steps = min(self.cfg.sampling.base_steps, 32)
            z0 = inference.sample(count, steps=base_steps, seeds=seeds, device=self.acc.device)
            images = self.stage1.decode(z0, steps=steps, seeds=seeds)
            tiles = _preview_grid(images, count)
        path = self.run_dir / "previews" / f"step-{step:08d}.png"
        scale = max(1, 128 // tiles.shape[0])
        save_png(path, tiles, {"run": str(self.run_id), "step": str(step)}, scale=scale)
        tile = [int(v) for v in (recon if self.cfg.stage == 1 else images).shape[-2:]]
        layout = {"kind": "clips" if self.cfg.is_video else "input_recon" if self.cfg.stage == 1 else "samples",
                  "tile": tile, "pad": 2, "scale": scale}  # fmt: skip
        self.store.add_artifact(
            self.run_id,
            kind="preview",
            path=path,
            step=step,
            seed=PREVIEW_SEED,
            params={"decoder_steps": steps, "count": count, "layout": layout},
        )
        if psnr is not None:  # a reconstruction-quality curve at every preview, from images decoded anyway
            # through the hooks, like every metric: the store and any mirror (TensorBoard) get the same rows
            trainer.hooks.on_metrics(step, time.time(), {"preview/psnr": psnr})
        self.emit({"event": "preview", "step": step, "path": str(path)})


def _preview_psnr(x: torch.Tensor, recon: torch.Tensor) -> float:
    """Mean PSNR (dB) of the preview reconstructions (clips: over their frames), capped at 100 dB (identical)."""

    def frames(t: torch.Tensor) -> torch.Tensor:
        return t.transpose(1, 2).flatten(0, 1) if t.dim() == 5 else t

    psnrs, _ = psnr_ssim(frames(x).cpu(), frames(recon).cpu())
    return float(min(100.0, sum(psnrs) / len(psnrs)))


def _preview_grid(x: torch.Tensor, cols: int) -> Any:
    """Images: one tile each, `cols` per row. Clips (B, 3, T, H, W): one row per clip, its frames left to right."""
    if x.dim() == 5:
        return grid(tensor_to_uint8(x.transpose(1, 2).flatten(0, 1)), cols=x.shape[2])
    return grid(tensor_to_uint8(x), cols=cols)


class ReadOnlyStore:
    """What ranks other than 0 see: reads pass through, writes do nothing."""

    _WRITES = frozenset(
        {
            "update_run",
            "heartbeat",
            "request",
            "log_metrics",
            "add_checkpoint",
            "delete_checkpoint_row",
            "add_artifact",
            "truncate_metrics",
            "take_request",
            "transition",
        }
    )

    def __init__(self, store: Any) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        if name in self._WRITES:
            return lambda *args, **kwargs: None
        return getattr(self._store, name)


def _init_folder(value: str) -> Path:
    """`train.init_from`: a bundle folder, or 'demo' for the shipped demo model."""
    if value == "demo":
        folder = demo_folder()
        if folder is None:
            raise ULError("train.init_from = 'demo', but no demo model is installed")
        return folder
    try:
        return check_folder(Path(value).expanduser(), what="model folder")
    except ULError as exc:
        raise ULError(f"train.init_from: {exc} (give an exported model folder or 'demo')") from None


def train_run(
    store: Any,
    run_ref: int | str,
    *,
    steps: int | None = None,
    minutes: float | None = None,
    emit: Emit | None = None,
    progress: bool = False,
    install_signal_handlers: bool = True,
) -> TrainResult:
    """Train (or continue) a stored run. `steps`: this many more steps; default: up to the config's total."""
    ctx = RunContext(store, run_ref, emit=emit, progress=progress)
    store = ctx.store
    run_id = ctx.run_id
    ctx.start_session()  # before the try: a refused start writes nothing to the run
    trainer: Trainer | None = None
    hooks: StoreHooks | None = None
    try:
        trainer = ctx.build()
        hooks = StoreHooks(ctx)
        hooks.trainer = trainer
        trainer.hooks = hooks
        latest = reconcile_checkpoints(ctx, trainer.checkpoint_dir) if ctx.is_main else trainer.latest_checkpoint()
        if latest is not None:
            trainer.load_checkpoint(latest, sha256=recorded_sha256(store, run_id, latest))
            ctx.emit({"event": "status", "status": "resumed", "step": trainer.state.step, "from": str(latest)})
        # Steps logged after the checkpoint (or after step 0 without one) belong to an abandoned future:
        # the curve continues from here with one value per trained step.
        store.truncate_metrics(run_id, after_step=trainer.state.step)
        start = trainer.state.step
        total = start + steps if steps is not None else max(ctx.cfg.train.steps, start)
        if steps is None and minutes is None and ctx.cfg.train.steps == 0 and ctx.cfg.train.minutes == 0:
            raise ULError("the run has neither train.steps nor train.minutes; give --steps or --minutes")
        budget_minutes = minutes if minutes is not None else (ctx.cfg.train.minutes or None)
        if budget_minutes and steps is None and ctx.cfg.train.steps == 0:
            total = 2**62
        deadline = time.time() + budget_minutes * 60 if budget_minutes else None
        store.update_run(run_id, total_steps=total if total < 2**62 else None, step=start)
        if progress and ctx.is_main and sys.stdout.isatty():
            ctx.progress_bar = tqdm(total=total if total < 2**62 else None, initial=start, unit="step")
        old_handlers = _install_stop_signals(trainer) if install_signal_handlers else {}
        ctx.emit({"event": "status", "status": "running", "step": start, "total": total})
        try:
            reason = trainer.train(total, deadline)
        finally:
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
            if ctx.progress_bar is not None:
                ctx.progress_bar.close()
        hooks.flush(trainer.state.step)
        hooks.close()
        status = "completed" if reason.kind in ("steps", "time") else "stopped"
        if not ctx.move(status, step=trainer.state.step, finished_at=_now(), pid=None):
            status = store.get_run(run_id).status  # the session was ended from outside (e.g. interrupted)
        ctx.emit({"event": "status", "status": status, "step": trainer.state.step, "reason": reason.kind})
        return TrainResult(run_id, ctx.cfg.stage, status, trainer.state.step, _losses(trainer.state.last_metrics))
    except BaseException as exc:
        if hooks is not None:
            with contextlib.suppress(Exception):
                hooks.flush(trainer.state.step if trainer else None)
            with contextlib.suppress(Exception):
                hooks.close()
        message = _failure_message(exc)
        status = "stopped" if isinstance(exc, KeyboardInterrupt | InterruptedError) else "failed"
        ctx.move(status, error=message, finished_at=_now(), pid=None)
        ctx.emit({"event": "error" if status == "failed" else "status", "status": status, "message": message})
        raise


WORKER_FOLDERS = ("checkpoints", "model", "stage1", "previews")
"""Folders of a run that only its training worker writes: temp files found there at start are from killed writes."""


def reconcile_checkpoints(ctx: RunContext, folder: Path) -> Path | None:
    """Make the database agree with the checkpoint folder after a crash; returns the checkpoint to resume from.

    Runs right after this process claimed the run, so no other writer of these folders is alive:
    - temp files of killed writes (`.NAME.XXXX.tmp`) are deleted;
    - rows whose file is gone (retention deleted it just before a kill) are dropped;
    - a `step-N.safetensors` without a row (killed right after its rename) is registered once it loads as a
      training checkpoint of this run at step N; a file that does not is left alone and reported.
    The newest usable checkpoint is returned (None: start from step 0).
    """
    store, run_id = ctx.store, ctx.run_id
    temps = [p for name in WORKER_FOLDERS for p in (ctx.run_dir / name).glob(".*.tmp")]
    for tmp in [*temps, *ctx.run_dir.glob(".latents-*.tmp")]:
        with contextlib.suppress(OSError):
            tmp.unlink()
            ctx.emit({"event": "status", "status": "removed_temp_file", "path": str(tmp)})
    rows = {c.path: c for c in store.list_checkpoints(run_id, kind="full")}
    for path in rows:
        if not path.is_file():
            store.delete_checkpoint_row(run_id, path=path)
    usable: list[Path] = []
    for path in sorted(folder.glob("step-*.safetensors")):
        if path in rows:
            usable.append(path)
            continue
        try:
            step, logged = _check_orphan_checkpoint(path, run_id)
        except CheckpointError as exc:
            message = f"{path} has no database row and is not usable ({exc}); it is left alone"
            print(f"ul: warning: {message}", file=sys.stderr, flush=True)
            ctx.emit({"event": "warning", "message": message, "path": str(path)})
            continue
        metrics = {k: float(v) for k, v in logged.items() if isinstance(v, int | float)}
        store.add_checkpoint(run_id, step=step, path=path, sha256=io.sha256_file(path), kind="full", metrics=metrics)
        ctx.emit({"event": "checkpoint", "step": step, "path": str(path), "registered": True})
        usable.append(path)
    return usable[-1] if usable else None


def _check_orphan_checkpoint(path: Path, run_id: int) -> tuple[int, dict[str, Any]]:
    """(step, logged metrics) of a checkpoint file found without a row, from its header alone (the model-file
    checks of `model_files`; the tensors are checked in full when this file is resumed from); CheckpointError
    says what is wrong."""
    header = io.read_header(path, "checkpoint")
    model_files.checkpoint_config(header)
    where = f"{path} (metadata)"
    step = model_files.whole_number(header.metadata.get("step"), where, "step")
    groups = model_files.json_metadata(header, "param_groups")
    metrics = model_files.json_metadata(header, "metrics", {})
    if f"step-{step:08d}.safetensors" != path.name:
        raise CheckpointError(f"its metadata says step {step}")
    if header.metadata.get("run_id", str(run_id)) != str(run_id):
        raise CheckpointError(f"it belongs to run {header.metadata.get('run_id')}")
    if not isinstance(groups, list) or not isinstance(metrics, dict):
        raise CheckpointError("its metadata is malformed")
    if not header.under("model"):
        raise CheckpointError("it holds no model weights")
    return step, metrics


def _failure_message(exc: BaseException) -> str:
    if isinstance(exc, DiskFullError):
        return f"disk full: {exc}"
    if isinstance(exc, OSError) and exc.errno == 28:
        return f"disk full: {exc}"
    if isinstance(exc, TrainingDiverged | ULError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _losses(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if k.startswith(("loss/", "rate/"))}


def _install_stop_signals(trainer: Trainer) -> dict[int, Any]:
    """SIGINT/SIGTERM: finish the current step, checkpoint, stop (a second SIGINT interrupts at once)."""
    old: dict[int, Any] = {}

    def handler(signum: int, frame: Any) -> None:
        if trainer.signal_stop and signum == signal.SIGINT:
            raise KeyboardInterrupt
        trainer.signal_stop = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):  # not the main thread
            old[sig] = signal.signal(sig, handler)
    return old


def _now() -> Any:
    return datetime.now(UTC)


def export_run(store: Any, run_ref: int | str, out: Path) -> list[Path]:
    """Copy a run's inference bundle (and, for stage 2, its stage-1 bundle) to `out`."""

    run = store.get_run(run_ref)
    run_dir = store.run_dir(run.id)
    src = run_dir / "model"
    shipped = bundle_checkpoint(store, run)
    if shipped is not None:  # the demo: its bundle folder is the model
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        files = [p for p in sorted(shipped.path.parent.iterdir()) if p.suffix in (".json", ".safetensors")]
        for item in files:
            shutil.copy2(item, out / item.name)
        return [out / item.name for item in files]
    if not src.is_dir():
        raise ULError(f"run {run.name} has no exported model yet; train it to its first checkpoint")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    copied = []
    for item in src.iterdir():
        shutil.copy2(item, out / item.name)
        copied.append(out / item.name)
    if run.stage == 2:
        for item in (run_dir / "stage1").iterdir():
            if item.suffix in (".json", ".safetensors"):
                shutil.copy2(item, out / item.name)
                copied.append(out / item.name)
    (out / "run.json").write_text(json.dumps({"run": run.id, "name": run.name, "stage": run.stage}, indent=2))
    return copied
