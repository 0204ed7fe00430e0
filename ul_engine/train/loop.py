"""One training loop for both stages, on accelerate.

What makes a resume exact: every step reseeds torch from (seed, rank, step), the data stream is a pure
function of the step, the LR is a pure function of the step, and a checkpoint holds the weights, the
EMA and the optimizer state bit for bit. So 20 steps straight equal 10 + resume + 10.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list
from torch import Tensor, nn

from ul_engine import weights
from ul_engine.core import faults, model_files
from ul_engine.core.config import RunConfig
from ul_engine.core.errors import ConfigError, TrainingDiverged
from ul_engine.train.compiling import compile_transformers
from ul_engine.train.ema import EMA

CHECKPOINT_FORMAT = model_files.CHECKPOINT_FORMAT


class Objective(Protocol):
    """A stage: the trainable module and the loss of one micro-batch of a given step."""

    module: nn.Module

    def micro_losses(
        self, model: nn.Module, step: int, micro: int, micro_count: int
    ) -> tuple[Tensor, dict[str, float]]:
        """Mean loss over the micro-batch and its logged values."""
        ...


class Hooks(Protocol):
    """How a loop talks to the outside: metrics out, control in. All optional to act on."""

    def on_metrics(self, step: int, wall_time: float, values: dict[str, float]) -> None: ...

    def before_checkpoint(self, step: int) -> None:
        """Called before a checkpoint file is written: what it covers (metrics up to `step`) is committed first."""
        ...

    def on_checkpoint(self, step: int, path: Path, sha256: str, metrics: dict[str, float]) -> None: ...

    def on_progress(self, step: int, total: int, it_per_s: float, eta_s: float | None) -> None: ...

    def poll(self, step: int) -> str | None:
        """Return 'stop', 'pause', 'save_now', 'sample_now' or None."""
        ...

    def on_paused(self, step: int) -> str | None:
        """Called while paused; return 'resume' or 'stop' to leave the pause."""
        ...

    def on_sample_now(self, step: int) -> None: ...


class NullHooks:
    def on_metrics(self, step: int, wall_time: float, values: dict[str, float]) -> None:
        pass

    def before_checkpoint(self, step: int) -> None:
        pass

    def on_checkpoint(self, step: int, path: Path, sha256: str, metrics: dict[str, float]) -> None:
        pass

    def on_progress(self, step: int, total: int, it_per_s: float, eta_s: float | None) -> None:
        pass

    def poll(self, step: int) -> str | None:
        return None

    def on_paused(self, step: int) -> str | None:
        return "resume"

    def on_sample_now(self, step: int) -> None:
        pass


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from (seed, rank, step, …) that does not collide for neighbouring inputs."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint64)[0] >> 1)


def lr_at(cfg: RunConfig, step: int) -> float:
    """Linear warm-up to the peak LR, then constant (the paper gives no decay), with an optional linear cooldown
    to 0 over the last `optim.cooldown` fraction of `train.steps`: a fixed short budget ends on settled weights."""
    warm = cfg.optim.warmup_steps
    lr = cfg.optim.lr * min(1.0, (step + 1) / warm) if warm else cfg.optim.lr
    total = cfg.train.steps
    if cfg.optim.cooldown and total:
        span = max(1.0, cfg.optim.cooldown * total)
        lr *= min(1.0, max(0.0, (total - step) / span))
    return lr


STOP_KINDS = ("steps", "time", "signal", "stop")


@dataclass
class StopReason:
    kind: str  # "steps" | "time" | "stop" | "signal"
    step: int


@dataclass
class LoopState:
    step: int = 0
    bad_steps: int = 0
    consecutive_bad: int = 0
    examples_seen: int = 0
    last_metrics: dict[str, float] = field(default_factory=dict)


class Trainer:
    """Owns the accelerator, optimizer, EMA and checkpoints for one run directory."""

    def __init__(
        self,
        cfg: RunConfig,
        objective: Objective,
        checkpoint_dir: Path,
        *,
        accelerator: Any,
        hooks: Hooks | None = None,
        extra_meta: dict[str, Any] | None = None,
    ) -> None:
        self.cfg = cfg
        self.objective = objective
        self.checkpoint_dir = Path(checkpoint_dir)
        self.acc = accelerator
        self.hooks = hooks or NullHooks()
        self.extra_meta = extra_meta or {}
        self.state = LoopState()
        self.signal_stop = False
        module = objective.module
        if cfg.train.compile:
            compile_transformers(module)  # in place: the state-dict keys (checkpoints, EMA) do not change
        self.ema = EMA(module, cfg.ema.decay)
        groups = getattr(objective, "param_groups", None)
        self.optimizer = torch.optim.AdamW(
            groups() if groups is not None else [p for p in module.parameters() if p.requires_grad],
            lr=cfg.optim.lr,
            betas=(cfg.optim.beta1, cfg.optim.beta2),
            weight_decay=cfg.optim.weight_decay,
        )
        self.model, self.optimizer = self.acc.prepare(module, self.optimizer)
        self.prior_updates = getattr(objective, "prior_updates", 0)
        if self.prior_updates and self.acc.num_processes > 1:
            raise ConfigError("optim.prior_updates_per_step > 1 runs in one process only; set train.num_processes = 1")
        self.ema.shadow = {k: v.to(self.acc.device) for k, v in self.ema.shadow.items()}
        self._inject_nan = _parse_fault_steps(os.environ.get("UL_FAULT_NAN_STEPS", ""))

    # -- properties --------------------------------------------------------------------------------

    @property
    def is_main(self) -> bool:
        return bool(self.acc.is_main_process)

    @property
    def unwrapped(self) -> nn.Module:
        return self.acc.unwrap_model(self.model)

    # -- one optimizer step --------------------------------------------------------------------------

    def train_step(self) -> dict[str, float] | None:
        """One optimizer step over grad_accum micro-batches; None when the step was skipped (non-finite)."""
        cfg, step = self.cfg, self.state.step
        torch.manual_seed(derive_seed(cfg.train.seed, self.acc.process_index, step))
        lr = lr_at(cfg, step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        micro_count = cfg.optim.grad_accum
        logged: dict[str, float] = {}
        finite = True
        for micro in range(micro_count):
            sync = micro == micro_count - 1
            ctx = self.acc.no_sync(self.model) if not sync else _nullcontext()
            with ctx, self.acc.autocast():
                loss, values = self.objective.micro_losses(self.model, step, micro, micro_count)
                if step in self._inject_nan:
                    loss = loss * float("nan")
            if not torch.isfinite(loss.detach()).all():
                finite = False
            self.acc.backward(loss / micro_count)
            for k, v in values.items():
                logged[k] = logged.get(k, 0.0) + v / micro_count
        grad_norm = self._grad_norm()
        if not finite or not math.isfinite(grad_norm):
            self.optimizer.zero_grad(set_to_none=True)
            self.state.bad_steps += 1
            self.state.consecutive_bad += 1
            self.state.step += 1
            if self.state.consecutive_bad >= cfg.optim.max_bad_steps:
                raise TrainingDiverged(
                    f"{self.state.consecutive_bad} consecutive non-finite steps (last at step {step}); "
                    "the last good checkpoint is kept — lower optim.lr or check the data"
                )
            return None
        self.optimizer.step()
        if self.prior_updates:
            logged.update(self._prior_updates())
        self.ema.update(self.unwrapped, self.state.step - self.state.bad_steps)
        self.state.consecutive_bad = 0
        self.state.step += 1
        self.state.examples_seen += cfg.optim.batch_size
        logged.update({"optim/lr": lr, "optim/grad_norm": grad_norm, "train/bad_steps": float(self.state.bad_steps)})
        return logged

    def _prior_updates(self) -> dict[str, float]:
        """Extra prior-only optimizer steps on the step's frozen latents; a non-finite one ends them."""
        losses: list[float] = []
        for _ in range(self.prior_updates):
            self.optimizer.zero_grad(set_to_none=True)
            with self.acc.autocast():
                micro = self.objective.prior_update_losses(self.unwrapped)  # type: ignore[attr-defined]
            loss = torch.stack(micro).mean()
            if not torch.isfinite(loss.detach()):
                self.optimizer.zero_grad(set_to_none=True)
                break
            self.acc.backward(loss)
            if not math.isfinite(self._grad_norm()):
                self.optimizer.zero_grad(set_to_none=True)
                break
            self.optimizer.step()
            losses.append(float(loss.detach()))
        return {"loss/prior_extra": sum(losses) / len(losses)} if losses else {}

    def _grad_norm(self) -> float:
        params = [p for p in self.model.parameters() if p.grad is not None]
        if not params:
            return 0.0
        clip = self.cfg.optim.grad_clip
        if clip > 0:
            norm = self.acc.clip_grad_norm_(params, clip)
        else:
            norm = torch.linalg.vector_norm(torch.stack([p.grad.detach().float().norm() for p in params]))
        return float(norm)

    # -- the loop ----------------------------------------------------------------------------------------

    def train(self, until_step: int, deadline: float | None = None) -> StopReason:
        """Train until `until_step` (absolute) or the wall-clock `deadline`; checkpoint on the way out."""
        cfg = self.cfg
        t0 = time.perf_counter()
        last_report = t0
        rate_window: list[tuple[float, int]] = [(t0, self.state.step)]
        while True:
            decision = self._decide(until_step, deadline)
            if decision in STOP_KINDS:
                reason = StopReason(decision, self.state.step)
                break
            if decision == "save_now":
                self.save_checkpoint()
            elif decision == "sample_now" and self.is_main:
                self.hooks.on_sample_now(self.state.step)
            step_start = time.perf_counter()
            values = self.train_step()
            now = time.perf_counter()
            if values is not None:
                values["perf/examples_per_s"] = cfg.optim.batch_size / max(now - step_start, 1e-9)
                self.state.last_metrics = values
                if self.state.step % cfg.train.log_every == 0 or self.state.step == until_step:
                    self.hooks.on_metrics(self.state.step, time.time(), values)
            if self.state.step % cfg.train.checkpoint_every == 0:
                self.save_checkpoint()
            rate_window.append((now, self.state.step))
            rate_window = rate_window[-50:]
            if now - last_report >= 0.5 or self.state.step >= until_step:
                last_report = now
                (t_a, s_a), (t_b, s_b) = rate_window[0], rate_window[-1]
                it_s = (s_b - s_a) / max(t_b - t_a, 1e-9)
                eta = (until_step - self.state.step) / it_s if it_s > 0 else None
                self.hooks.on_progress(self.state.step, until_step, it_s, eta)
        if not self._has_checkpoint_at(self.state.step):
            self.save_checkpoint()
        return reason

    def _decide(self, until_step: int, deadline: float | None) -> str | None:
        """Rank 0 decides what happens before the next step (stop, pause, save…); every rank obeys it.

        One decision broadcast per step keeps the processes of a distributed run in lock step, so a stop
        or a pause never leaves a rank waiting in a collective.
        """
        decision: str | None = None
        if self.is_main:
            if self.state.step >= until_step:
                decision = "steps"
            elif deadline is not None and time.time() >= deadline:
                decision = "time"
            elif self.signal_stop:
                decision = "signal"
            else:
                decision = self.hooks.poll(self.state.step)
                if decision == "pause":
                    decision = self._wait_paused()
        if self.acc.num_processes > 1:
            box = [decision]
            broadcast_object_list(box, from_process=0)
            decision = box[0]
        return decision

    def _wait_paused(self) -> str | None:
        while True:
            if self.signal_stop:
                return "stop"
            answer = self.hooks.on_paused(self.state.step)
            if answer in ("resume", "stop"):
                return "stop" if answer == "stop" else None
            time.sleep(0.1)

    # -- checkpoints --------------------------------------------------------------------------------

    def checkpoint_path(self, step: int) -> Path:
        return self.checkpoint_dir / f"step-{step:08d}.safetensors"

    def _has_checkpoint_at(self, step: int) -> bool:
        return self.checkpoint_path(step).is_file()

    def save_checkpoint(self) -> Path | None:
        """Full training state (weights, EMA, optimizer, counters) in one atomic safetensors file."""
        self.acc.wait_for_everyone()
        if not self.is_main:
            return None
        step = self.state.step
        tensors: dict[str, Tensor] = {}
        for k, v in self.unwrapped.state_dict().items():
            tensors[f"model.{k}"] = v
        for k, v in self.ema.state_dict().items():
            tensors[f"ema.{k}"] = v
        opt_state = self.optimizer.state_dict()
        for idx, st in opt_state["state"].items():
            for name, value in st.items():
                tensors[f"optim.{idx}.{name}"] = value if torch.is_tensor(value) else torch.tensor(value)
        meta = {
            "format": CHECKPOINT_FORMAT,
            "step": str(step),
            "stage": str(self.cfg.stage),
            "config": self.cfg.to_dict(),
            "param_groups": [{k: v for k, v in g.items() if k != "params"} for g in opt_state["param_groups"]],
            "loop": {
                "bad_steps": self.state.bad_steps,
                "consecutive_bad": self.state.consecutive_bad,
                "examples_seen": self.state.examples_seen,
            },
            "metrics": self.state.last_metrics,
            **self.extra_meta,
        }
        path = self.checkpoint_path(step)
        self.hooks.before_checkpoint(step)
        sha = weights.save_tensors(path, tensors, meta)
        faults.kill_point("after_rename", path)
        self._apply_retention()
        self.hooks.on_checkpoint(step, path, sha, dict(self.state.last_metrics))
        return path

    def _apply_retention(self) -> None:
        files = sorted(self.checkpoint_dir.glob("step-*.safetensors"))
        for old in files[: -self.cfg.train.keep_checkpoints]:
            old.unlink(missing_ok=True)

    def latest_checkpoint(self) -> Path | None:
        files = sorted(self.checkpoint_dir.glob("step-*.safetensors"))
        return files[-1] if files else None

    def load_checkpoint(self, path: Path, sha256: str | None = None) -> None:
        """Resume from `path`, checked first against this run's model, EMA and optimizer (and `sha256`, the
        store's record of the file, when given) by `ul_engine.core.model_files` and `ul_engine.weights`."""
        ck = weights.read_training_state(
            path, model=self.unwrapped, ema=self.ema.shadow, optimizer=self.optimizer, recorded=sha256
        )
        tensors = ck.tensors
        model_state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
        self.unwrapped.load_state_dict(model_state)
        self.ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
        self.ema.shadow = {k: v.to(self.acc.device) for k, v in self.ema.shadow.items()}
        opt_state: dict[str, Any] = {"state": {}, "param_groups": ck.param_groups}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, idx, name = key.split(".", 2)
                opt_state["state"].setdefault(int(idx), {})[name] = value
        ids = [g["params"] for g in self.optimizer.state_dict()["param_groups"]]
        for group, params in zip(opt_state["param_groups"], ids, strict=True):
            group["params"] = params
        self.optimizer.load_state_dict(opt_state)
        self.state.step = ck.step
        self.state.bad_steps = ck.loop["bad_steps"]
        self.state.consecutive_bad = ck.loop["consecutive_bad"]
        self.state.examples_seen = ck.loop["examples_seen"]
        self.state.last_metrics = ck.metrics


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _parse_fault_steps(text: str) -> set[int]:
    """UL_FAULT_NAN_STEPS="5" or "5-9": steps whose loss is made NaN (fault-injection for tests)."""
    steps: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        lo, _, hi = part.partition("-")
        steps.update(range(int(lo), int(hi or lo) + 1))
    return steps


def make_accelerator(device: str) -> Any:
    """accelerate's Accelerator on the resolved device: bf16 on CUDA, fp32 on the CPU (bf16 is slow there)."""
    if device == "cuda":
        return Accelerator(mixed_precision="bf16")
    return Accelerator(cpu=True, mixed_precision="no")


def resolve_device(requested: str) -> str:
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: 'cuda' was asked for but no CUDA device is available; use cpu or auto")
    return requested
