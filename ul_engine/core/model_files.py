"""Model files are judged before anything is allocated: one path for bundles, checkpoints and resume.

Every loader of model weights (an exported bundle folder, the demo model, a run's checkpoint for inference,
a checkpoint to resume training from) goes through these steps, in this order, and stops at the first fault
with a `ModelFileError` naming the file and what is wrong:

1. the JSON: a bundle's `<component>.json`, or a checkpoint's metadata (read from its safetensors header
   without reading tensor data; a pickle is named as one), is an object whose `config` is an object that
   validates as a run config; on resume also `step`, `param_groups`, `loop` and `metrics`;
2. the header: every tensor's dtype, shape and byte range in the safetensors header are consistent
   (`ul_engine.core.io.read_header`);
3. the fit: the model built on the meta device is compared with the header (`ul_engine.weights`);
4. the record: the sha256 the store recorded for the checkpoint, when there is one, matches the file;
5. the data: only now are tensors read, and every one must be finite (`ul_engine.weights`).

This module holds the torch-free steps (1 and 4), which the GUI uses through `ul_engine.core.demo`; the steps that
need tensors live in `ul_engine.weights`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ul_engine.core import io
from ul_engine.core.config import RunConfig, format_validation_error
from ul_engine.core.errors import ModelFileError

if TYPE_CHECKING:  # the store imports the core at run time; the core names its types only
    from ul_engine.store import Store

BUNDLE_FORMAT = "ul-studio-bundle/1"
CHECKPOINT_FORMAT = "ul-studio-checkpoint/1"
STAGE1_COMPONENTS = ("encoder", "prior", "decoder")
MAX_JSON_BYTES = 16 * 1024 * 1024
"""A bundle JSON is a few KB; anything past this is not one (and is not read into memory)."""


# ----------------------------------------------------------------------------------------------
# 1. JSON and config


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
        raise ModelFileError(f"{path} holds a JSON {json_kind(data)}, not an object")
    return data


def config_from(raw: Any, where: str, *, stage: int | None = None) -> RunConfig:
    """The run config a model file carries, validated by the same pydantic models as every config."""
    if raw is None:
        raise ModelFileError(f"{where} carries no run config; the model cannot be rebuilt from it")
    if not isinstance(raw, dict):
        raise ModelFileError(f"{where}: 'config' is a JSON {json_kind(raw)}, not an object of config sections")
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
    """The same for a bundle folder, whose record is one sha256 over its weight files (`bundle_sha256`)."""
    if not recorded:
        return
    actual = bundle_sha256(Path(folder))
    if actual != recorded:
        raise ModelFileError(
            f"the model folder {folder} changed since it was registered (sha256 {actual[:12]}…, "
            f"recorded {recorded[:12]}…); not loaded"
        )


def bundle_sha256(folder: Path) -> str:
    """One sha256 for the whole bundle: over each weight file's name and sha256, so any changed file changes it.

    Remembered in this process while every file keeps its inode, size, mtime and ctime (any write or rename
    changes the ctime), so registering the demo and then loading it hashes its files once, not twice.
    """
    paths = sorted(Path(folder).glob("*.safetensors"))
    key = tuple((str(p.resolve()), *_signature(p)) for p in paths)
    if key in _BUNDLE_SHA:
        return _BUNDLE_SHA[key]
    h = hashlib.sha256()
    for path in paths:
        h.update(f"{path.name}:{io.sha256_file(path)}\n".encode())
    if len(_BUNDLE_SHA) > 16:
        _BUNDLE_SHA.clear()
    _BUNDLE_SHA[key] = h.hexdigest()
    return _BUNDLE_SHA[key]


_BUNDLE_SHA: dict[tuple[Any, ...], str] = {}


def _signature(path: Path) -> tuple[int, int, int, int, int]:
    st = io.regular_file(path)
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def recorded_sha256(store: Store, run_id: int, path: Path) -> str | None:
    """The sha256 the store holds for the run's checkpoint file at `path` (None when it has no row)."""
    target = Path(path).resolve()
    for row in store.list_checkpoints(run_id):
        if Path(row.path).resolve() == target:
            return str(row.sha256)
    return None


# ----------------------------------------------------------------------------------------------
# Wording


def _first_config_difference(a: Any, b: Any, path: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return _first_config_difference(a.get(key), b.get(key), f"{path}.{key}" if path else key)
    return path or "config"


def json_kind(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
