"""The CLI's reconstruct / sample / eval work, on stored runs. The session worker reuses these."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ul_engine import bundle
from ul_engine.config import RunConfig, validate
from ul_engine.data import IMAGE_EXTENSIONS, fixed_validation_batch, load_image_rgb, make_source
from ul_engine.errors import ULError
from ul_engine.imaging import save_png
from ul_engine.model import LatentBase, UnifiedLatents
from ul_engine.pipeline import (
    base_from_checkpoint,
    image_to_model_input,
    reconstruct_batch,
    sample_images,
    stage1_from_checkpoint,
)

MAX_RECONSTRUCT_SIDE = 2048


@dataclass
class LoadedRun:
    """A run's models ready for inference, with where their weights came from."""

    run: Any
    cfg: RunConfig
    stage1: UnifiedLatents
    base: LatentBase | None
    checkpoint_step: int | None
    checkpoint_sha256: str | None


def _device() -> str:
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
    run = store.get_run(run_ref)
    device = _device()
    ckpt = _checkpoint(store, run, step)
    if run.stage == 1:
        if need_base:
            raise ULError(
                f"run {run.name} is a stage-1 run; sampling needs a stage-2 run "
                f"(ul train --stage 2 --from-run {run.name})"
            )
        stage1 = stage1_from_checkpoint(ckpt.path, device)
        return LoadedRun(run, stage1.cfg, stage1, None, ckpt.step, ckpt.sha256)
    stage1 = bundle.load_stage1(store.run_dir(run.id) / "stage1", device)
    base = base_from_checkpoint(ckpt.path, device)
    return LoadedRun(run, base.cfg, stage1, base, ckpt.step, ckpt.sha256)


def expand_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Files as given; folders searched recursively for images (sorted)."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS))
        else:
            out.append(p)
    return out


def _fit_for_reconstruction(image: np.ndarray, notices: list[str]) -> np.ndarray:
    import cv2

    h, w = image.shape[:2]
    side = max(h, w)
    if side <= MAX_RECONSTRUCT_SIDE:
        return image
    scale = MAX_RECONSTRUCT_SIDE / side
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    notices.append(f"downscaled from {w}×{h} to {size[0]}×{size[1]} to bound memory")
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def reconstruct_files(
    store: Any,
    run_ref: int | str,
    inputs: Iterable[str | Path],
    out_dir: Path,
    *,
    decoder_steps: int | None = None,
    seed: int = 0,
    sampler: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Each input at its own resolution (padded to the downsampling); a bad input gets `error`, others go on."""
    loaded = load_run(store, run_ref)
    cfg, model = loaded.cfg, loaded.stage1
    steps = decoder_steps or cfg.sampling.decoder_steps
    sampler = sampler or cfg.sampling.sampler
    multiple = cfg.model.downsample()
    out_dir = Path(out_dir)
    results: list[dict[str, Any]] = []
    files = expand_inputs(inputs)
    if not files:
        raise ULError("no input images found")
    for i, path in enumerate(files):
        entry: dict[str, Any] = {
            "input": str(path),
            "output": None,
            "psnr": None,
            "ssim": None,
            "bits_per_pixel": None,
            "bits_per_dim": None,
            "error": None,
        }
        try:
            loaded_image = load_image_rgb(path)
            notices = list(loaded_image.notices)
            image = _fit_for_reconstruction(loaded_image.array, notices)
            x, (h, w) = image_to_model_input(image, multiple)
            [rec] = reconstruct_batch(model, x, decoder_steps=steps, seeds=[seed], sampler=sampler)
            recon = rec.reconstruction[:h, :w]
            out = out_dir / f"{path.stem}.recon.png"
            meta = {
                "run": str(loaded.run.id),
                "checkpoint_sha256": loaded.checkpoint_sha256 or "",
                "seed": str(seed),
                "decoder_steps": str(steps),
                "sampler": sampler,
                "source": str(path),
            }
            save_png(out, recon, meta)
            entry.update(
                output=str(out),
                psnr=_psnr(image, recon),
                ssim=rec.ssim,
                bits_per_pixel=rec.bits_per_pixel,
                bits_per_dim=rec.bits_per_dim,
                notices=notices,
                decode_seconds=rec.decode_seconds,
            )
        except ULError as exc:
            entry["error"] = str(exc)
        except (OSError, ValueError, RuntimeError) as exc:
            entry["error"] = f"{path}: {exc}"
        results.append(entry)
        if progress is not None:
            progress(i + 1, len(files))
    return results


def _psnr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """PSNR on the cropped (unpadded) image, in dB."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    ref = torch.from_numpy(reference.astype(np.float32) / 255.0)
    est = torch.from_numpy(estimate.astype(np.float32) / 255.0)
    return float(peak_signal_noise_ratio(est, ref, data_range=1.0))


def sample_files(
    store: Any,
    run_ref: int | str,
    out_dir: Path,
    *,
    n: int,
    seed: int = 0,
    base_steps: int | None = None,
    decoder_steps: int | None = None,
    sampler: str | None = None,
    guidance: float | None = None,
    class_label: int | None = None,
    progress: bool = False,
) -> list[str]:
    """Generate n images; each PNG carries run, checkpoint sha256, seed and parameters in its metadata."""
    if n < 1:
        raise ULError("--n must be at least 1")
    loaded = load_run(store, run_ref, need_base=True)
    assert loaded.base is not None
    cfg = loaded.cfg
    params = {
        "base_steps": base_steps or cfg.sampling.base_steps,
        "decoder_steps": decoder_steps or cfg.sampling.decoder_steps,
        "sampler": sampler or cfg.sampling.sampler,
        "guidance": cfg.sampling.guidance if guidance is None else guidance,
        "class": class_label,
    }
    bar = None
    if progress:
        import sys

        if sys.stdout.isatty():
            from tqdm import tqdm

            bar = tqdm(total=n, unit="img")

    def tick(done: int, total: int) -> None:
        if bar is not None:
            bar.n = done
            bar.refresh()

    images = sample_images(
        loaded.base,
        loaded.stage1,
        n,
        seed=seed,
        base_steps=params["base_steps"],
        decoder_steps=params["decoder_steps"],
        sampler=params["sampler"],
        guidance=params["guidance"],
        class_label=class_label,
        progress=tick,
    )
    if bar is not None:
        bar.close()
    out_dir = Path(out_dir)
    outputs = []
    for i, image in enumerate(images):
        path = out_dir / f"{loaded.run.name}-seed{seed + i:06d}.png"
        meta = {
            "ul-run": str(loaded.run.id),
            "ul-run-name": loaded.run.name,
            "ul-checkpoint-sha256": loaded.checkpoint_sha256 or "",
            "ul-seed": str(seed + i),
            "ul-params": json.dumps(params),
        }
        save_png(path, image, meta)
        store.add_artifact(
            loaded.run.id, kind="sample", path=path.resolve(), step=loaded.checkpoint_step, seed=seed + i, params=params
        )
        outputs.append(str(path))
    return outputs


def evaluate_run(
    store: Any, run_ref: int | str, *, n: int = 64, decoder_steps: int | None = None, step: int | None = None
) -> dict[str, Any]:
    """PSNR, SSIM and the prior's bits on a fixed validation set (the same images every time)."""
    if n < 1:
        raise ULError("--n must be at least 1")
    loaded = load_run(store, run_ref, step=step)
    cfg = validate({**loaded.cfg.to_dict(), "stage": 1}) if loaded.cfg.stage == 2 else loaded.cfg
    steps = decoder_steps or cfg.sampling.decoder_steps
    source = make_source(cfg.data)
    x, _ = fixed_validation_batch(source, n, seed=4321)
    recs = []
    for start in range(0, n, 16):
        chunk = x[start : start + 16]
        seeds = list(range(start, start + chunk.shape[0]))
        recs.extend(reconstruct_batch(loaded.stage1, chunk, decoder_steps=steps, seeds=seeds))
    return {
        "n": n,
        "psnr": float(np.mean([r.psnr for r in recs])),
        "ssim": float(np.nanmean([r.ssim for r in recs])),
        "bits_per_pixel": float(np.mean([r.bits_per_pixel for r in recs])),
        "bits_per_dim": float(np.mean([r.bits_per_dim for r in recs])),
        "decoder_steps": steps,
        "checkpoint_step": loaded.checkpoint_step,
        "run": loaded.run.id,
    }
