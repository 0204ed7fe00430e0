"""Inference bundles: one safetensors + one JSON per component, loadable without the training code.

A bundle folder holds encoder/prior/decoder (stage 1) and base (stage 2) files. Each JSON carries the
resolved run config, so the nets can be rebuilt from the folder alone; nothing is unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ul_engine import io
from ul_engine.config import RunConfig
from ul_engine.errors import CheckpointError

FORMAT = "ul-studio-bundle/1"
STAGE1_COMPONENTS = ("encoder", "prior", "decoder")


def export_module(
    module: nn.Module, out_dir: Path, *, config: RunConfig, info: dict[str, Any], dtype: torch.dtype | None = None
) -> list[Path]:
    """Write each component of `module` (UnifiedLatents → 3 files, LatentBase → base) to `out_dir`."""
    out_dir = Path(out_dir)
    names = STAGE1_COMPONENTS if hasattr(module, "encoder") else ("base",)
    written = []
    for name in names:
        sub = module.net if name == "base" else getattr(module, name)
        tensors = {k: (v.to(dtype) if dtype and v.is_floating_point() else v) for k, v in sub.state_dict().items()}
        meta = {"format": FORMAT, "component": name, "config": config.to_dict(), **info}
        io.save_tensors(out_dir / f"{name}.safetensors", tensors, {"format": FORMAT, "component": name})
        io.write_json(out_dir / f"{name}.json", meta)
        written += [out_dir / f"{name}.safetensors", out_dir / f"{name}.json"]
    return written


def read_component_info(folder: Path, name: str) -> dict[str, Any]:
    path = Path(folder) / f"{name}.json"
    if not path.is_file():
        raise CheckpointError(f"{folder} has no {name}.json; not a UL Studio model folder")
    try:
        info = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc})") from None
    if info.get("format") != FORMAT:
        raise CheckpointError(f"{path} has format {info.get('format')!r}, expected {FORMAT}")
    return info


def _load_into(sub: nn.Module, folder: Path, name: str) -> None:
    tensors, _ = io.load_tensors(Path(folder) / f"{name}.safetensors")
    state = sub.state_dict()
    missing = set(state) - set(tensors)
    if missing:
        raise CheckpointError(f"{name}.safetensors lacks {len(missing)} tensors (e.g. {sorted(missing)[0]})")
    sub.load_state_dict({k: v.to(state[k].dtype) for k, v in tensors.items() if k in state})


def load_stage1(folder: Path, device: str | torch.device = "cpu"):
    """Rebuild the stage-1 model (EMA weights) from a bundle folder, in eval mode."""
    from ul_engine.model import UnifiedLatents

    info = read_component_info(folder, "encoder")
    cfg = RunConfig.model_validate({**info["config"], "stage": 1})
    model = UnifiedLatents(cfg)
    for name in STAGE1_COMPONENTS:
        _load_into(getattr(model, name), folder, name)
    return model.to(device).eval()


def init_stage1_from(model: nn.Module, folder: Path) -> None:
    """Copy a bundle's encoder/prior/decoder weights into a freshly built model (fine-tuning's starting point).

    The nets must have the same shapes: a clear error names the first tensor that differs.
    """
    for name in STAGE1_COMPONENTS:
        read_component_info(folder, name)
        tensors, _ = io.load_tensors(Path(folder) / f"{name}.safetensors")
        state = getattr(model, name).state_dict()
        for key, value in state.items():
            if key not in tensors:
                raise CheckpointError(f"train.init_from: {folder} has no {name} tensor {key}; the nets differ")
            if tensors[key].shape != value.shape:
                raise CheckpointError(
                    f"train.init_from: {name}.{key} is {tuple(tensors[key].shape)} in {folder} but "
                    f"{tuple(value.shape)} here; use the same model sizes as the bundle"
                )
        _load_into(getattr(model, name), folder, name)


def load_base(folder: Path, device: str | torch.device = "cpu"):
    from ul_engine.model import LatentBase

    info = read_component_info(folder, "base")
    cfg = RunConfig.model_validate(info["config"])
    model = LatentBase(cfg)
    _load_into(model.net, folder, "base")
    return model.to(device).eval()


def has_base(folder: Path) -> bool:
    return (Path(folder) / "base.json").is_file()
