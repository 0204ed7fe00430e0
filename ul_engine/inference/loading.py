"""A run or a bundle folder → models ready for inference; and the bundle format itself.

Models load from safetensors only: a training checkpoint's EMA tensors, or an inference bundle folder (one
safetensors + one JSON per component: encoder/prior/decoder for stage 1, base for stage 2). Each JSON carries the
resolved run config, so the nets can be rebuilt from the folder alone; nothing is unpickled, and nothing is
allocated before `ul_engine.core.model_files` and `ul_engine.weights` have checked the files against the model the
config describes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ul_engine import weights
from ul_engine.core import demo, io, model_files
from ul_engine.core.config import RunConfig, apply_overrides, load_preset, validate
from ul_engine.core.errors import CheckpointError, ModelFileError, ULError
from ul_engine.ecosystem.latents import check_latents
from ul_engine.inference.tiling import Tiled
from ul_engine.model import LatentBase, UnifiedLatents

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


def load_stage1(folder: Path, device: str | torch.device = "cpu", *, sha256: str | None = None) -> UnifiedLatents:
    """Rebuild the stage-1 model (EMA weights) from a bundle folder, in eval mode.

    Everything is checked before the model is allocated (see `ul_engine.core.model_files` and `ul_engine.weights`):
    the JSONs and their one config, each file's tensors against the model built on the meta device, then `sha256`
    (the store's record of the folder, when given); weights are read last and must be finite.
    """
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


def load_base(folder: Path, device: str | torch.device = "cpu") -> LatentBase:
    """A bundle's stage-2 base model, checked like `load_stage1` (the folder's sha256 is checked there)."""
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


# ----------------------------------------------------------------------------------------------
# Training checkpoints


def _from_checkpoint(
    path: Path, stage: int, device: str | torch.device, sha256: str | None = None
) -> torch.nn.Module:
    """The stage's model with the EMA weights of a full training checkpoint, in eval mode.

    The checkpoint's metadata, its tensors against the model built on the meta device, and `sha256` (the
    store's record, when given) are checked before the model is allocated (`ul_engine.core.model_files` and
    `ul_engine.weights`).
    """
    build = UnifiedLatents if stage == 1 else LatentBase
    cfg, tensors = weights.checkpoint_ema(Path(path), stage, build, sha256)
    model = build(cfg)
    weights.assign(model, tensors)
    return model.to(device).eval()


def stage1_from_checkpoint(
    path: Path, device: str | torch.device = "cpu", *, sha256: str | None = None
) -> UnifiedLatents:
    return _from_checkpoint(path, 1, device, sha256)  # type: ignore[return-value]


def base_from_checkpoint(path: Path, device: str | torch.device = "cpu", *, sha256: str | None = None) -> LatentBase:
    return _from_checkpoint(path, 2, device, sha256)  # type: ignore[return-value]


def ema_copy(module: torch.nn.Module, ema: object) -> torch.nn.Module:
    """An eval-mode copy of `module` carrying the EMA weights (for previews and exports)."""
    clone = copy.deepcopy(module)
    ema.copy_to(clone)  # type: ignore[attr-defined]
    return clone.eval()


# ----------------------------------------------------------------------------------------------
# Runs


@dataclass
class LoadedRun:
    """A run's models ready for inference, with where their weights came from."""

    run: Any
    cfg: RunConfig
    stage1: UnifiedLatents
    base: LatentBase | None
    checkpoint_step: int | None
    checkpoint_sha256: str | None


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _checkpoint(store: Any, run: Any, step: int | None = None) -> Any:
    """The run's checkpoint at `step` (default: the latest) that is still on disk."""
    on_disk = [c for c in store.list_checkpoints(run.id) if c.path.is_file()]
    if not on_disk:
        raise ULError(f"run {run.name} has no checkpoint on disk yet; train it first (ul resume {run.name})")
    if step is None:
        return max(on_disk, key=lambda c: c.step)
    for c in on_disk:
        if c.step == step:
            return c
    steps = ", ".join(str(c.step) for c in sorted(on_disk, key=lambda c: c.step))
    raise ULError(f"run {run.name} has no checkpoint at step {step}; on disk: {steps}")


def load_run(store: Any, run_ref: int | str, *, need_base: bool = False, step: int | None = None) -> LoadedRun:
    """A stored run's models at `step` (default: its latest checkpoint on disk), from a checkpoint or a bundle."""
    run = demo.get_run(store, run_ref)
    device = default_device()
    ckpt = _checkpoint(store, run, step)
    if ckpt.kind == demo.BUNDLE_KIND:
        return _load_bundle_run(run, ckpt, device, need_base)
    if run.stage == 1:
        if need_base:
            raise ULError(
                f"run {run.name} is a stage-1 run; sampling needs a stage-2 run "
                f"(ul train --stage 2 --from-run {run.name})"
            )
        stage1 = stage1_from_checkpoint(ckpt.path, device, sha256=ckpt.sha256)
        return LoadedRun(run, stage1.cfg, stage1, None, ckpt.step, ckpt.sha256)
    stage1 = load_stage1(store.run_dir(run.id) / "stage1", device)
    base = base_from_checkpoint(ckpt.path, device, sha256=ckpt.sha256)
    return LoadedRun(run, base.cfg, stage1, base, ckpt.step, ckpt.sha256)


def _load_bundle_run(run: Any, ckpt: Any, device: str, need_base: bool) -> LoadedRun:
    """A run whose weights are an inference bundle folder (the shipped demo): the models come from the folder,
    the config from the run row (its data path is where `ul eval` finds held-out images)."""
    folder = ckpt.path.parent
    cfg = validate(run.config)
    # trained on small crops only: larger images go through it in tiles of that size, decoded as overlapping
    # windows blended at every step (see ul_engine/inference/tiling.py; measured: +0.3 to +1.5 dB on the sample photos)
    side, down = cfg.data.resolution, cfg.model.downsample()
    stage1 = Tiled(load_stage1(folder, device, sha256=ckpt.sha256), side, overlap=side // 4 // down * down)
    base = load_base(folder, device) if has_base(folder) else None
    if need_base and base is None:
        raise ULError(f"run {run.name} has no base model; sampling needs a stage-2 model")
    return LoadedRun(run, cfg, stage1, base, ckpt.step, ckpt.sha256)  # type: ignore[arg-type]


def create_stage2_run(store: Any, name: str | None, preset: str, cfg: RunConfig, checkpoint: Any) -> Any:
    """Register a stage-2 run from `stage2_config`'s answer, pinned to the stage-1 checkpoint it models."""
    return store.create_run(
        name=name,
        stage=2,
        preset=preset,
        config=cfg.to_dict(),
        total_steps=cfg.train.steps or None,
        parent_run_id=checkpoint.run_id,
        parent_checkpoint_id=checkpoint.id,
        parent_checkpoint_sha256=checkpoint.sha256,
    )


def stage2_config(
    store: Any,
    parent_ref: int | str,
    preset: str,
    overrides: list[str],
    *,
    steps: int | None = None,
    minutes: float | None = None,
    checkpoint: int | None = None,
) -> tuple[RunConfig, Any]:
    """The config of a stage-2 run on `parent_ref`'s checkpoint (default: its latest), and that checkpoint.

    Stage 2 keeps the stage-1 data and model shapes (and ablation switches); the preset supplies the base
    model, optimiser, budget and sampling; `overrides` come last.
    """
    parent = store.get_run(parent_ref)
    if parent.stage != 1:
        raise ULError(f"--from-run {parent.name} is a stage-{parent.stage} run; stage 2 needs a stage-1 run")
    checkpoints = [c for c in store.list_checkpoints(parent.id) if c.path.is_file()]
    if checkpoint is not None:
        checkpoints = [c for c in checkpoints if c.step == checkpoint]
    if not checkpoints:
        which = f" at step {checkpoint}" if checkpoint is not None else ""
        raise ULError(f"run {parent.name} has no checkpoint{which} on disk; train it first")
    ckpt = max(checkpoints, key=lambda c: c.step)
    raw_preset = load_preset(preset)
    raw = dict(parent.config)
    for section in ("optim", "ema", "train", "sampling"):
        if section in raw_preset:
            raw[section] = {**raw.get(section, {}), **raw_preset[section]}
    base = {**raw["model"].get("base", {}), **raw_preset.get("model", {}).get("base", {})}
    raw["model"] = {**raw["model"], "base": base}
    raw["stage"] = 2
    raw = apply_overrides(raw, overrides)
    if steps is not None:
        raw["train"] = {**raw["train"], "steps": steps}
    if minutes is not None and steps is None:
        raw["train"] = {**raw["train"], "minutes": minutes, "steps": 0}
    cfg = validate(raw)
    if cfg.data.kind == "latents":  # a folder from `ul encode`: its shape, its z_clean and its checkpoint
        check_latents(cfg, ckpt.sha256)
    return cfg, ckpt
