"""Model weights in and out of torch: safetensors files as tensors, checked against the model before allocation.

The torch side of `ul_engine.core.io` and `ul_engine.core.model_files`: those read headers, JSON and configs without
torch (the app uses them); this module adds what needs tensors, in the order the model-file checks run:

2–3. the fit: the model is built on the meta device (no memory) and compared with the parsed header: every weight
   is floating point, the model has as many values as the file holds (a config describing a 77 G-parameter network
   against a 10 MB file stops here), then every tensor's name and shape;
4. the record: the sha256 the store recorded (`model_files.verify_sha256`);
5. the data: only now are tensors read, and every one must be finite (no NaN or infinity).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import _TYPES, save
from torch import nn

from ul_engine.core import io
from ul_engine.core.config import RunConfig
from ul_engine.core.errors import CheckpointError, ModelFileError
from ul_engine.core.model_files import (
    checkpoint_config,
    json_kind,
    json_metadata,
    verify_sha256,
    whole_number,
)

_MOMENTS = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
_LOOP_COUNTERS = ("bad_steps", "consecutive_bad", "examples_seen")


# ----------------------------------------------------------------------------------------------
# Plain files


def save_tensors(path: Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, Any]) -> str:
    """Atomically write tensors + JSON metadata as one safetensors file; returns its sha256."""
    flat_meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    blob = save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=flat_meta)
    io.atomic_write_bytes(path, lambda f: f.write(blob))
    return hashlib.sha256(blob).hexdigest()


def load_tensors(path: Path, *, prefix: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file (optionally only keys under `prefix.`) and its metadata."""
    path = Path(path)
    io.read_header(path)  # a pickle or a damaged header is refused before safetensors opens the file
    try:
        tensors: dict[str, torch.Tensor] = {}
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            for key in f.keys():  # noqa: SIM118 (safe_open is not a dict)
                if prefix is None:
                    tensors[key] = f.get_tensor(key)
                elif key.startswith(prefix + "."):
                    tensors[key[len(prefix) + 1 :]] = f.get_tensor(key)
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"{path.name} is not a readable safetensors file ({exc})") from None
    return tensors, meta


# ----------------------------------------------------------------------------------------------
# 2–3. Header against the model, built on the meta device


def on_meta(build: Callable[[], nn.Module], source: str) -> nn.Module:
    """`build()` on the meta device: shapes and dtypes without a byte of parameter memory. A config that
    validates but still cannot be built (`source` says where it came from) is one line too."""
    try:
        with torch.device("meta"):
            return build()
    except Exception as exc:
        raise ModelFileError(f"{source} does not describe a buildable model ({type(exc).__name__}: {exc})") from None


def float_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The floating-point entries of a state dict (what an EMA copy stores)."""
    return {k: v for k, v in module.state_dict().items() if v.is_floating_point()}


def check_fits(
    header: io.Header, expected: Mapping[str, torch.Tensor], *, prefix: str | None = None, source: str
) -> None:
    """The file's tensors (those under `prefix.`) are exactly `expected`: floating point where the model is,
    as many values in all, then the same names and shapes. `source` says where the model's config came from."""
    stored = header.under(prefix)

    def full(key: str) -> str:
        return f"{prefix}.{key}" if prefix else key

    for key, entry in stored.items():
        want = expected.get(key)
        if want is not None and not want.is_floating_point():
            if entry.dtype != _dtype_name(want):
                raise ModelFileError(f"{header.path}: tensor {full(key)} is {entry.dtype}, the model's is {want.dtype}")
        elif not entry.is_float:
            raise ModelFileError(
                f"{header.path}: tensor {full(key)} is {entry.dtype}; weights must be floating point "
                f"({', '.join(io.FLOAT_DTYPES)})"
            )
    model_values = sum(t.numel() for t in expected.values())
    file_values = sum(e.numel for e in stored.values())
    difference = _first_difference(stored, expected, full)
    if model_values != file_values:
        raise ModelFileError(
            f"{header.path} does not fit {source}: the config describes {_count(model_values)} values, the file "
            f"holds {_count(file_values)} ({_bytes(header.size)}); first difference: {difference}"
        )
    if difference:
        raise ModelFileError(f"{header.path} does not fit {source}: {difference}")


def check_optimizer_state(header: io.Header, optimizer: torch.optim.Optimizer) -> None:
    """`optim.<index>.<name>` tensors: an index of one of the optimizer's parameters, moments of its shape."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for key, entry in header.under("optim").items():
        index, _, name = key.partition(".")
        if not index.isdigit() or int(index) >= len(params) or not name:
            raise ModelFileError(
                f"{header.path}: tensor optim.{key} names no parameter of this run's optimizer "
                f"({len(params)} parameters)"
            )
        if not entry.is_float:
            raise ModelFileError(f"{header.path}: tensor optim.{key} is {entry.dtype}; optimizer state must be float")
        want = tuple(params[int(index)].shape) if name in _MOMENTS else ()
        if entry.shape != want:
            raise ModelFileError(f"{header.path}: tensor optim.{key} is {entry.shape}, this run's is {want}")


# ----------------------------------------------------------------------------------------------
# 5. The data


def load_finite(header: io.Header, *, prefix: str | None = None) -> dict[str, torch.Tensor]:
    """Read the tensors under `prefix.` (keys without it); each must have its header's shape and be finite."""
    stored = header.under(prefix)
    out: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(header.path), framework="pt", device="cpu") as f:
            for key, entry in stored.items():
                name = f"{prefix}.{key}" if prefix else key
                tensor = f.get_tensor(name)
                if tuple(tensor.shape) != entry.shape:
                    raise ModelFileError(f"{header.path} changed while it was read (tensor {name})")
                if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                    raise ModelFileError(
                        f"{header.path}: tensor {name} holds NaN or infinite values; the weights are unusable"
                    )
                out[key] = tensor
    except ModelFileError:
        raise
    except Exception as exc:
        raise ModelFileError(f"{header.path} is not a readable safetensors file ({exc})") from None
    return out


def assign(module: nn.Module, tensors: Mapping[str, torch.Tensor]) -> None:
    """Copy checked tensors into `module`, each in the dtype the module keeps it in (F16 exports → F32)."""
    state = module.state_dict()
    module.load_state_dict({**state, **{k: v.to(state[k].dtype) for k, v in tensors.items() if k in state}})


# ----------------------------------------------------------------------------------------------
# Whole files


def load_component(
    path: Path, module_on_meta: nn.Module, *, source: str, recorded: str | None = None
) -> dict[str, torch.Tensor]:
    """A bundle component's weights, checked against the meta-device module (steps 2–5)."""
    header = io.read_header(path)
    check_fits(header, module_on_meta.state_dict(), source=source)
    verify_sha256(path, recorded)
    return load_finite(header)


def checkpoint_ema(
    path: Path, stage: int, build: Callable[[RunConfig], nn.Module], recorded: str | None
) -> tuple[RunConfig, dict[str, torch.Tensor]]:
    """(config, EMA tensors) of a training checkpoint for inference: `build(cfg)` makes the stage's model."""
    header = io.read_header(path, "checkpoint")
    cfg = checkpoint_config(header)
    if cfg.stage != stage:
        raise ModelFileError(f"{path} is a stage-{cfg.stage} checkpoint; a stage-{stage} checkpoint is needed")
    source = f"the config in {path}"
    check_fits(header, float_state(on_meta(lambda: build(cfg), source)), prefix="ema", source=source)
    verify_sha256(path, recorded)
    return cfg, load_finite(header, prefix="ema")


@dataclass
class TrainingState:
    """A checked training checkpoint: every tensor (finite) and the loop's counters."""

    tensors: dict[str, torch.Tensor]
    step: int
    param_groups: list[dict[str, Any]]
    loop: dict[str, int]
    metrics: dict[str, float]


def read_training_state(
    path: Path,
    *,
    model: nn.Module,
    ema: Mapping[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    recorded: str | None = None,
) -> TrainingState:
    """The checkpoint to resume from, checked against this run's model, EMA and optimizer before use."""
    header = io.read_header(path, "checkpoint")
    checkpoint_config(header)
    where = f"{path} (metadata)"
    step = whole_number(header.metadata.get("step"), where, "step")
    groups = _param_groups(json_metadata(header, "param_groups"), optimizer, where)
    loop = json_metadata(header, "loop", {})
    if not isinstance(loop, dict):
        raise ModelFileError(f"{where}: 'loop' is a JSON {json_kind(loop)}, not an object")
    counters = {k: whole_number(loop.get(k, 0), where, f"loop.{k}") for k in _LOOP_COUNTERS}
    metrics = json_metadata(header, "metrics", {})
    if not isinstance(metrics, dict):
        raise ModelFileError(f"{where}: 'metrics' is a JSON {json_kind(metrics)}, not an object")
    source = "this run's model"
    check_fits(header, model.state_dict(), prefix="model", source=source)
    check_fits(header, ema, prefix="ema", source=source)
    check_optimizer_state(header, optimizer)
    verify_sha256(path, recorded)
    return TrainingState(load_finite(header), step, groups, counters, metrics)


def _param_groups(value: Any, optimizer: torch.optim.Optimizer, where: str) -> list[dict[str, Any]]:
    live = optimizer.param_groups
    if not isinstance(value, list) or not all(isinstance(g, dict) for g in value):
        raise ModelFileError(f"{where}: 'param_groups' is not a list of objects")
    if len(value) != len(live):
        raise ModelFileError(f"{where}: 'param_groups' has {len(value)} groups, this run's optimizer {len(live)}")
    for group, mine in zip(value, live, strict=True):
        lacking = sorted(set(mine) - {"params"} - set(group))
        if lacking:
            raise ModelFileError(f"{where}: 'param_groups' lacks {lacking[0]}")
    return value


# ----------------------------------------------------------------------------------------------
# Wording


def _first_difference(
    stored: Mapping[str, io.TensorEntry], expected: Mapping[str, torch.Tensor], full: Callable[[str], str]
) -> str:
    for key, want in expected.items():
        entry = stored.get(key)
        if entry is None:
            return f"it lacks {full(key)} {tuple(want.shape)}"
        if entry.shape != tuple(want.shape):
            return f"{full(key)} is {entry.shape} in the file, {tuple(want.shape)} in the model"
    extra = next((k for k in stored if k not in expected), None)
    return f"it holds {full(extra)}, which the model has no place for" if extra is not None else ""


def _dtype_name(t: torch.Tensor) -> str:
    return next((name for name, dtype in _TYPES.items() if dtype == t.dtype), str(t.dtype))


def _count(n: int) -> str:
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return str(n)


def _bytes(n: int) -> str:
    for scale, unit in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"
