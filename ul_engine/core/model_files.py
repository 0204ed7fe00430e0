"""Model files are judged before anything is allocated: one path for bundles, checkpoints and resume.

Every loader of model weights (an exported bundle folder, the demo model, a run's checkpoint for inference,
a checkpoint to resume training from) goes through these steps, in this order, and stops at the first fault
with a `ModelFileError` naming the file and what is wrong:

1. the JSON: a bundle's `<component>.json`, or a checkpoint's metadata (read from its safetensors header
   without reading tensor data; a pickle is named as one), is an object whose `config` is an object that
   validates as a run config; on resume also `step`, `param_groups`, `loop` and `metrics`;
2. the header: every tensor's dtype, shape and byte range in the safetensors header are consistent;
3. the fit: the model is built on the meta device (no memory) and compared with the header: every weight is
   floating point, the model has as many values as the file holds (a config describing a 77 G-parameter
   network against a 10 MB file stops here), then every tensor's name and shape;
4. the record: the sha256 the store recorded for the checkpoint, when there is one, matches the file;
5. the data: only now are tensors read, and every one must be finite (no NaN or infinity).

Torch is imported only inside the functions that need it: `ul_engine.core.demo` (which the GUI imports) uses the
JSON checks here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ul_engine.core import io
from ul_engine.core.config import RunConfig, format_validation_error
from ul_engine.core.errors import ModelFileError

if TYPE_CHECKING:
    import torch
    from torch import nn

BUNDLE_FORMAT = "ul-studio-bundle/1"
CHECKPOINT_FORMAT = "ul-studio-checkpoint/1"
STAGE1_COMPONENTS = ("encoder", "prior", "decoder")
MAX_JSON_BYTES = 16 * 1024 * 1024
"""A bundle JSON is a few KB; anything past this is not one (and is not read into memory)."""
_MOMENTS = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
_LOOP_COUNTERS = ("bad_steps", "consecutive_bad", "examples_seen")


# ----------------------------------------------------------------------------------------------
# 1. JSON and config (torch-free)


def read_json_object(path: Path, what: str = "model JSON") -> dict[str, Any]:
    """A JSON file that must hold an object; any other content is one line naming the file."""
    path = Path(path)
    st = io.regular_file(path, what)
    if st.st_size > MAX_JSON_BYTES:
        raise ModelFileError(f"{path} is {st.st_size} bytes; a {what} is at most {MAX_JSON_BYTES} bytes")
    try:
        data = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path} is not valid JSON ({exc})") from None
    except RecursionError:
        raise ModelFileError(f"{path} is not valid JSON (nested too deeply)") from None
    except OSError as exc:
        raise ModelFileError(f"{path} cannot be read ({exc.strerror})") from None
    if not isinstance(data, dict):
        raise ModelFileError(f"{path} holds a JSON {_kind(data)}, not an object")
    return data


def config_from(raw: Any, where: str, *, stage: int | None = None) -> RunConfig:
    """The run config a model file carries, validated by the same pydantic models as every config."""
    if raw is None:
        raise ModelFileError(f"{where} carries no run config; the model cannot be rebuilt from it")
    if not isinstance(raw, dict):
        raise ModelFileError(f"{where}: 'config' is a JSON {_kind(raw)}, not an object of config sections")
    if stage is not None:
        raw = {**raw, "stage": stage}
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise ModelFileError(f"{where}: {format_validation_error(exc)}") from None


def whole_number(value: Any, where: str, name: str) -> int:
    """A count such as `step`, given as an int or its decimal text; anything else is one line."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 18:
        number = int(value.strip())
    else:
        raise ModelFileError(f"{where}: '{name}' is {_short(value)}, not a whole number")
    if number < 0:
        raise ModelFileError(f"{where}: '{name}' is {number}, not a whole number")
    return number


def missing_files(folder: Path, names: tuple[str, ...] = STAGE1_COMPONENTS) -> list[str]:
    """The JSON/safetensors files of `names` that `folder` lacks."""
    files = [f"{n}{ext}" for n in names for ext in (".json", ".safetensors")]
    return [name for name in files if not (Path(folder) / name).is_file()]


def require_bundle(folder: Path, names: tuple[str, ...] = STAGE1_COMPONENTS) -> None:
    """A model folder with every file of `names`, or one line naming what is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelFileError(f"model folder {folder} {'is not a folder' if folder.exists() else 'does not exist'}")
    missing = missing_files(folder, names)
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise ModelFileError(f"the model folder {folder} is incomplete: {', '.join(missing)} {verb} missing")


def component_info(folder: Path, name: str) -> tuple[dict[str, Any], RunConfig]:
    """A bundle component's JSON and the config it carries (stage-1 components are rebuilt as stage 1)."""
    path = Path(folder) / f"{name}.json"
    if not path.exists():
        raise ModelFileError(f"{folder} has no {name}.json; not a UL Studio model folder")
    info = read_json_object(path)
    if info.get("format") != BUNDLE_FORMAT:
        raise ModelFileError(f"{path} has format {_short(info.get('format'))}, expected {BUNDLE_FORMAT}")
    cfg = config_from(info.get("config"), str(path), stage=1 if name in STAGE1_COMPONENTS else None)
    if "step" in info and info["step"] is not None:
        whole_number(info["step"], str(path), "step")
    return info, cfg


def bundle_config(folder: Path) -> RunConfig:
    """The one config of a stage-1 bundle: every component's JSON is valid and they all carry the same config."""
    require_bundle(folder)
    configs = {name: component_info(folder, name)[1] for name in STAGE1_COMPONENTS}
    first = configs[STAGE1_COMPONENTS[0]]
    for name, cfg in configs.items():
        if cfg != first:
            raise ModelFileError(
                f"{Path(folder) / f'{name}.json'} carries another config than {STAGE1_COMPONENTS[0]}.json "
                f"({_first_config_difference(first.to_dict(), cfg.to_dict())}); a bundle holds one model"
            )
    return first


def checkpoint_config(header: io.Header) -> RunConfig:
    """The run config in a training checkpoint's metadata (its format checked first)."""
    where = f"{header.path} (metadata)"
    if header.metadata.get("format") != CHECKPOINT_FORMAT:
        if "config" not in header.metadata:
            raise ModelFileError(f"{header.path} carries no run config; not a UL Studio checkpoint")
        raise ModelFileError(
            f"{header.path} has format {_short(header.metadata.get('format'))}, expected {CHECKPOINT_FORMAT}"
        )
    return config_from(json_metadata(header, "config"), where)


def json_metadata(header: io.Header, key: str, default: Any = ...) -> Any:
    """A JSON value of a checkpoint's string metadata; absent without a default, or not JSON, is one line."""
    if key not in header.metadata:
        if default is ...:
            raise ModelFileError(f"{header.path} (metadata) has no '{key}'")
        return default
    try:
        return json.loads(header.metadata[key])
    except (json.JSONDecodeError, RecursionError):
        raise ModelFileError(f"{header.path} (metadata): '{key}' is not valid JSON") from None


# ----------------------------------------------------------------------------------------------
# 2–3. Header against the model, built on the meta device


def on_meta(build: Callable[[], nn.Module], source: str) -> nn.Module:
    """`build()` on the meta device: shapes and dtypes without a byte of parameter memory. A config that
    validates but still cannot be built (`source` says where it came from) is one line too."""
    import torch

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
# 4. The recorded sha256


def verify_sha256(path: Path, recorded: str | None) -> None:
    """The file's bytes are the ones the store recorded when it was written (skipped when nothing is recorded)."""
    if not recorded:
        return
    actual = io.sha256_file(Path(path))
    if actual != recorded:
        raise ModelFileError(
            f"{path} changed since it was written (sha256 {actual[:12]}…, recorded {recorded[:12]}…); not loaded"
        )


def verify_bundle_sha256(folder: Path, recorded: str | None) -> None:
    """The same for a bundle folder, whose record is one sha256 over its weight files (`demo.bundle_sha256`)."""
    if not recorded:
        return
    from ul_engine.core.demo import bundle_sha256

    actual = bundle_sha256(Path(folder))
    if actual != recorded:
        raise ModelFileError(
            f"the model folder {folder} changed since it was registered (sha256 {actual[:12]}…, "
            f"recorded {recorded[:12]}…); not loaded"
        )


def recorded_sha256(store: Any, run_id: int, path: Path) -> str | None:
    """The sha256 the store holds for the run's checkpoint file at `path` (None when it has no row)."""
    target = Path(path).resolve()
    for row in store.list_checkpoints(run_id):
        if Path(row.path).resolve() == target:
            return str(row.sha256)
    return None


# ----------------------------------------------------------------------------------------------
# 5. The data


def load_finite(header: io.Header, *, prefix: str | None = None) -> dict[str, torch.Tensor]:
    """Read the tensors under `prefix.` (keys without it); each must have its header's shape and be finite."""
    import torch
    from safetensors import safe_open

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


def load_component(path: Path, module_on_meta: nn.Module, *, source: str, recorded: str | None = None):
    """A bundle component's weights, checked against the meta-device module (steps 2–5)."""
    header = io.read_header(path)
    check_fits(header, module_on_meta.state_dict(), source=source)
    verify_sha256(path, recorded)
    return load_finite(header)


def checkpoint_ema(path: Path, stage: int, build: Callable[[RunConfig], nn.Module], recorded: str | None):
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
        raise ModelFileError(f"{where}: 'loop' is a JSON {_kind(loop)}, not an object")
    counters = {k: whole_number(loop.get(k, 0), where, f"loop.{k}") for k in _LOOP_COUNTERS}
    metrics = json_metadata(header, "metrics", {})
    if not isinstance(metrics, dict):
        raise ModelFileError(f"{where}: 'metrics' is a JSON {_kind(metrics)}, not an object")
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


def _first_config_difference(a: Any, b: Any, path: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return _first_config_difference(a.get(key), b.get(key), f"{path}.{key}" if path else key)
    return path or "config"


def _dtype_name(t: torch.Tensor) -> str:
    from safetensors.torch import _TYPES

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


def _kind(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
