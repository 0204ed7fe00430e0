"""Inference bundles: one safetensors + one JSON per component, loadable without the training code.

A bundle folder holds encoder/prior/decoder (stage 1) and base (stage 2) files. Each JSON carries the
resolved run config, so the nets can be rebuilt from the folder alone; nothing is unpickled, and nothing is
allocated before `ul_engine.core.model_files` and `ul_engine.weights` have checked the files against the model
the config describes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ul_engine import weights
from ul_engine.core import io, model_files
from ul_engine.core.config import RunConfig
from ul_engine.core.errors import CheckpointError, ModelFileError

FORMAT = model_files.BUNDLE_FORMAT
STAGE1_COMPONENTS = model_files.STAGE1_COMPONENTS


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
        weights.save_tensors(out_dir / f"{name}.safetensors", tensors, {"format": FORMAT, "component": name})
        io.write_json(out_dir / f"{name}.json", meta)
        written += [out_dir / f"{name}.safetensors", out_dir / f"{name}.json"]
    return written


def load_stage1(folder: Path, device: str | torch.device = "cpu", *, sha256: str | None = None):
    """Rebuild the stage-1 model (EMA weights) from a bundle folder, in eval mode.

    Everything is checked before the model is allocated (see `ul_engine.core.model_files` and `ul_engine.weights`):
    the JSONs and their one config, each file's tensors against the model built on the meta device, then `sha256`
    (the store's record of the folder, when given); weights are read last and must be finite.
    """
    from ul_engine.model import UnifiedLatents

    folder = Path(folder)
    cfg = model_files.bundle_config(folder)
    source = f"the config in {folder / 'encoder.json'}"
    meta = weights.on_meta(lambda: UnifiedLatents(cfg), source)
    headers = {}
    for name in STAGE1_COMPONENTS:
        headers[name] = io.read_header(folder / f"{name}.safetensors")
        weights.check_fits(headers[name], getattr(meta, name).state_dict(), source=source)
    model_files.verify_bundle_sha256(folder, sha256)
    tensors = {name: weights.load_finite(header) for name, header in headers.items()}
    model = UnifiedLatents(cfg)
    for name in STAGE1_COMPONENTS:
        weights.assign(getattr(model, name), tensors[name])
    return model.to(device).eval()


def init_stage1_from(model: nn.Module, folder: Path) -> None:
    """Copy a bundle's encoder/prior/decoder weights into a freshly built model (fine-tuning's starting point).

    The nets must have the same shapes: a clear error names the first tensor that differs.
    """
    folder = Path(folder)
    source = "this run's model (use the bundle's model sizes)"
    name = "bundle"
    try:
        model_files.bundle_config(folder)
        headers = {}
        for name in STAGE1_COMPONENTS:  # every file is checked before any weight is copied
            headers[name] = io.read_header(folder / f"{name}.safetensors")
            weights.check_fits(headers[name], getattr(model, name).state_dict(), source=source)
        tensors = {}
        for name in STAGE1_COMPONENTS:
            tensors[name] = weights.load_finite(headers[name])
    except CheckpointError as exc:
        raise ModelFileError(f"train.init_from: {name}: {exc}") from None
    for name in STAGE1_COMPONENTS:
        weights.assign(getattr(model, name), tensors[name])


def load_base(folder: Path, device: str | torch.device = "cpu"):
    """A bundle's stage-2 base model, checked like `load_stage1` (the folder's sha256 is checked there)."""
    from ul_engine.model import LatentBase

    folder = Path(folder)
    model_files.require_bundle(folder, ("base",))
    _, cfg = model_files.component_info(folder, "base")
    source = f"the config in {folder / 'base.json'}"
    meta = weights.on_meta(lambda: LatentBase(cfg), source)
    tensors = weights.load_component(folder / "base.safetensors", meta.net, source=source)
    model = LatentBase(cfg)
    weights.assign(model.net, tensors)
    return model.to(device).eval()


def has_base(folder: Path) -> bool:
    return (Path(folder) / "base.json").is_file()
