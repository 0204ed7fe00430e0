"""The New run form's decisions, without Qt: the values a preset (or a stage-1 parent) starts from, the flat
`section.field` view of a config the editors work on, the encoder/decoder shape a downsampling factor needs,
which field each of the engine's validation messages belongs to, and the texts the form shows.

The engine's own validation (`ul_engine.core.config.field_errors`) stays the only judge of a config.
"""

from __future__ import annotations

import ast
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from app import format as fmt
from ul_engine.core.config import RunConfig, load_preset

DOWNSAMPLING = (2, 4, 8, 16, 32)
STAGE1_ONLY = ("data.", "model.encoder.", "model.prior.", "model.decoder.", "model.latent_channels", "loss.")
STAGE2_LOSS = ("loss.base_sigmoid_bias", "loss.base_weighting")


# ---- flat config ---------------------------------------------------------------------------------------


def flatten(raw: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in raw.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, value in flat.items():
        node = out
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(base))
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = json.loads(json.dumps(value))
    return out


def value_text(value: Any) -> str:
    """A value as an editor shows it: TOML-like, so typing it back parses to the same value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return json.dumps(value)
    if isinstance(value, float):
        return repr(value)
    return "" if value is None else str(value)


def literal_choices(annotation: str) -> list[Any] | None:
    """The allowed values of a `typing.Literal[...]` field, else None."""
    m = re.match(r"typing\.Literal\[(.*)\]$", annotation)
    if not m:
        return None
    try:
        values = ast.literal_eval(f"[{m.group(1)}]")
    except (ValueError, SyntaxError):
        return None
    return list(values)


def field_tooltip(spec: dict[str, Any]) -> str:
    tip = spec["description"] or spec["path"]
    rng = spec.get("range") or ""
    if rng and "[-inf, inf]" not in rng:
        tip += f" ({rng})"
    return f"{tip}\n{spec['path']} · default {value_text(spec['default'])}"


# ---- starting values -----------------------------------------------------------------------------------


def preset_values(name: str) -> dict[str, Any]:
    """The schema defaults overlaid with a preset (valid or not: folder presets lack data.path).

    A folder preset's placeholder path (".") is cleared: the app's working folder means nothing to the
    user, who chooses the folder in the form."""
    raw = deep_merge(RunConfig().to_dict(), load_preset(name))
    if raw["data"].get("kind") == "image-folder" and raw["data"].get("path") in (".", "./"):
        raw["data"]["path"] = ""
    return raw


def stage2_values(parent_config: dict[str, Any], preset: str) -> dict[str, Any]:
    """Stage 2 keeps the stage-1 data and model; the preset supplies the base model and optimisation."""
    p = load_preset(preset)
    raw = deep_merge(RunConfig().to_dict(), parent_config)
    for section in ("optim", "ema", "train", "sampling"):
        if section in p:
            raw[section] = {**raw.get(section, {}), **p[section]}
    raw["model"]["base"] = {**raw["model"].get("base", {}), **p.get("model", {}).get("base", {})}
    raw["stage"] = 2
    raw["preset"] = preset
    return raw


def stage2_editable(path: str) -> bool:
    """Stage 2 trains on a frozen stage-1 model: its data, encoder, prior, decoder and loss stay as they are."""
    return not path.startswith(STAGE1_ONLY) or path in STAGE2_LOSS


# ---- knobs ---------------------------------------------------------------------------------------------


def downsampling_of(flat: dict[str, Any]) -> int | None:
    try:
        return int(flat["model.encoder.patch"]) * 2 ** (len(flat["model.encoder.channels"]) - 1)
    except (KeyError, TypeError, ValueError):
        return None


def with_downsampling(flat: dict[str, Any], factor: int) -> dict[str, Any]:
    """Encoder/decoder patch and stage lists giving `factor` pixels per latent position (both match)."""
    enc = list(flat.get("model.encoder.channels") or [32, 64, 96])
    dec = list(flat.get("model.decoder.channels") or [32, 64])
    stages = int(math.log2(factor)) + 1
    if stages <= len(enc):
        enc = enc[:stages] if stages < len(enc) else enc
        patch = 1
    else:
        patch = factor // 2 ** (len(enc) - 1)
    levels = len(enc) - 1
    while len(dec) < levels:
        dec.append(dec[-1] if dec else 32)
    dec = dec[:levels] if levels >= 1 else dec[:1]
    if levels == 0:  # a single encoder stage: the decoder still needs one level, so patch makes it up
        enc = enc[:2] if len(enc) >= 2 else [*enc, enc[0]]
        patch = max(1, factor // 2)
        dec = dec[:1]
    return {
        "model.encoder.channels": enc,
        "model.encoder.patch": patch,
        "model.decoder.channels": dec,
        "model.decoder.patch": patch,
    }


def budget_values(by_minutes: bool, steps: int, minutes: float) -> dict[str, Any]:
    """A budget in steps or in minutes: the other one is 0 (the engine's "no limit")."""
    if by_minutes:
        return {"train.steps": 0, "train.minutes": float(minutes)}
    return {"train.steps": int(steps), "train.minutes": 0.0}


def budget_is_minutes(values: dict[str, Any]) -> bool:
    steps, minutes = values.get("train.steps"), values.get("train.minutes")
    return isinstance(steps, int) and steps == 0 and isinstance(minutes, int | float) and minutes > 0


def device_setting(choice: str) -> str:
    """The config's train.device for a device choice ("auto", "cpu" or "cuda:N")."""
    return "auto" if choice == "auto" else "cpu" if choice == "cpu" else "cuda"


def latent_shape_text(values: dict[str, Any]) -> str:
    down, res, ch = downsampling_of(values), values.get("data.resolution"), values.get("model.latent_channels")
    if isinstance(res, int) and down and isinstance(ch, int) and res % down == 0:
        side = res // down
        return f"latent {side}×{side}×{ch} = {side * side * ch:,} numbers per image"
    return ""


def estimate_text(seconds_per_1000: float, device: str, steps: Any) -> str:
    """The measured speed, and this run's time when its budget is a number of steps (`steps`, else None)."""
    text = f"≈ {fmt.duration(seconds_per_1000)} per 1 000 steps on {device}"
    if isinstance(steps, int) and steps > 0:
        text += f" · this run ≈ {fmt.duration(seconds_per_1000 * steps / 1000)}"
    return text + " (measured)"


# ---- validation messages -------------------------------------------------------------------------------


@dataclass
class RoutedErrors:
    """The engine's messages sorted for the form: per field path, and the ones no field shows."""

    by_field: dict[str, str] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)


def field_for(loc: str, paths: list[str]) -> str | None:
    """The form field an error location belongs to: itself, else the longest field path it lies under."""
    if loc in paths:
        return loc
    best = None
    for p in paths:
        if loc.startswith(p + ".") and (best is None or len(p) > len(best)):
            best = p
    return best


def route_errors(errors: dict[str, str], paths: list[str]) -> RoutedErrors:
    """Each message to its field; a config-wide message to every field it names and to the banner."""
    routed = RoutedErrors()
    for loc, message in errors.items():
        target = field_for(loc, paths)
        if target is not None:
            routed.by_field[target] = message
            continue
        mentioned = [p for p in re.findall(r"[a-z_]+(?:\.[a-z_]+)+", message) if p in paths]
        for p in mentioned:
            routed.by_field.setdefault(p, message)
        if loc == "checkpoint":
            continue
        routed.general.append(message if loc == "config" else f"{loc}: {message}")
    return routed


def shape_error(by_field: dict[str, str]) -> str | None:
    """The first encoder/decoder message: the downsampling knob sets those fields."""
    return next((by_field[p] for p in by_field if p.startswith(("model.encoder.", "model.decoder."))), None)


def hidden_errors(by_field: dict[str, str], knob_paths: list[str]) -> list[str]:
    """Rejected fields that only the Advanced section shows (no knob, budget or shape control shows them)."""
    shown = ("train.", "model.encoder", "model.decoder")
    return [p for p in by_field if p not in knob_paths and not p.startswith(shown)]
