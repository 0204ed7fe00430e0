"""The CLI's reconstruct / sample / eval work, on stored runs. The session worker reuses these."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ul_engine.core.config import RunConfig, validate
from ul_engine.core.errors import ULError
from ul_engine.core.imaging import save_png, tensor_to_uint8
from ul_engine.core.reconstruction import MAX_RECONSTRUCT_SIDE
from ul_engine.core.user_paths import check_file, check_output_folder
from ul_engine.data import IMAGE_EXTENSIONS, fixed_validation_batch, load_image_rgb, make_source
from ul_engine.eval.metrics.fidelity import psnr_uint8
from ul_engine.inference import bundle
from ul_engine.inference.pipeline import (
    base_from_checkpoint,
    image_to_model_input,
    reconstruct_batch,
    sample_images,
    stage1_from_checkpoint,
)
from ul_engine.model import LatentBase, UnifiedLatents


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
    from ul_engine.core import demo

    run = demo.get_run(store, run_ref)
    device = _device()
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
    stage1 = bundle.load_stage1(store.run_dir(run.id) / "stage1", device)
    base = base_from_checkpoint(ckpt.path, device, sha256=ckpt.sha256)
    return LoadedRun(run, base.cfg, stage1, base, ckpt.step, ckpt.sha256)


def _load_bundle_run(run: Any, ckpt: Any, device: str, need_base: bool) -> LoadedRun:
    """A run whose weights are an inference bundle folder (the shipped demo): the models come from the folder,
    the config from the run row (its data path is where `ul eval` finds held-out images)."""
    from ul_engine.inference.tiling import Tiled

    folder = ckpt.path.parent
    cfg = validate(run.config)
    # trained on small crops only: larger images go through it in tiles of that size, decoded as overlapping
    # windows blended at every step (see ul_engine/inference/tiling.py; measured: +0.3 to +1.5 dB on the sample photos)
    side, down = cfg.data.resolution, cfg.model.downsample()
    stage1 = Tiled(bundle.load_stage1(folder, device, sha256=ckpt.sha256), side, overlap=side // 4 // down * down)
    base = bundle.load_base(folder, device) if bundle.has_base(folder) else None
    if need_base and base is None:
        raise ULError(f"run {run.name} has no base model; sampling needs a stage-2 model")
    return LoadedRun(run, cfg, stage1, base, ckpt.step, ckpt.sha256)


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
    from ul_engine.core.config import apply_overrides, load_preset

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
        from ul_engine.ecosystem.latents import check_latents

        check_latents(cfg, ckpt.sha256)
    return cfg, ckpt


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
                psnr=psnr_uint8(image, recon),
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
    check_output_folder(out_dir)  # before sampling: a file where the folder goes fails now, not after the work
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


FD_REFERENCE_SEED = 8765  # the FD reference images: a validation stream apart from the reconstruction set's


def evaluate_run(
    store: Any,
    run_ref: int | str,
    *,
    n: int = 64,
    decoder_steps: int | None = None,
    step: int | None = None,
    fd: int = 0,
    prior_samples: bool = False,
    base_steps: int | None = None,
    inception_weights: str | Path | None = None,
    seed: int = 0,
    record: bool = True,
) -> dict[str, Any]:
    """PSNR, SSIM and the prior's bits on a fixed validation set (the same images every time).

    With `record`, a stage-1 run's result is stored on its checkpoint (`ul_engine.core.rate_distortion`), so the
    Runs table, the Monitor and the Rate–distortion view show it; `recorded` names the checkpoint row.

    fd > 0 adds generation metrics on `fd` samples against `fd` validation images: `fd_shapes` always (the
    shipped shapes classifier), and `fid_inception_v3` only from a local `inception_weights` file
    (otherwise reported as unavailable, with the reason); on a video run `fvd_bouncing` (the shipped
    bouncing-clip classifier) of `fd` clips, and `inception_weights` is refused (there is no I3D loader).
    The samples come from the stage-2 base model, or, with `prior_samples`, from the stage-1 prior (the
    unweighted-ELBO model stage 2 exists to beat).
    """
    if n < 1:
        raise ULError("--n must be at least 1")
    if fd < 0 or fd == 1:
        raise ULError("--fd needs at least 2 samples (a covariance)")
    if inception_weights:
        check_file(Path(inception_weights).expanduser())  # before hashing it: a FIFO or a device never ends
    loaded = load_run(store, run_ref, step=step)
    if fd and loaded.base is None and not prior_samples:
        raise ULError(
            f"run {loaded.run.name} is a stage-1 run: --fd needs a stage-2 run's samples, or --prior-samples "
            "to sample the stage-1 prior"
        )
    cfg = validate({**loaded.cfg.to_dict(), "stage": 1}) if loaded.cfg.stage == 2 else loaded.cfg
    steps = decoder_steps or cfg.sampling.decoder_steps
    source = make_source(cfg.data)
    x, _ = fixed_validation_batch(source, n, seed=4321)
    recs = []
    batch = reconstruct_batch
    if cfg.model.time_axis:  # clips: PSNR/SSIM averaged over frames, bits per pixel of the whole clip
        if inception_weights:
            raise ULError(
                "--inception-weights is for image runs: FVD needs an I3D network and there is no I3D loader "
                "here (not supported); on a video run --fd N computes FVD-bouncing"
            )
        from ul_engine.inference.clips import reconstruct_clip_batch as batch
    for start in range(0, n, 16):
        chunk = x[start : start + 16]
        seeds = list(range(start, start + chunk.shape[0]))
        recs.extend(batch(loaded.stage1, chunk, decoder_steps=steps, seeds=seeds))
    result: dict[str, Any] = {
        "n": n,
        "psnr": float(np.mean([r.psnr for r in recs])),
        "ssim": float(np.nanmean([r.ssim for r in recs])),
        "bits_per_pixel": float(np.mean([r.bits_per_pixel for r in recs])),
        "bits_per_dim": float(np.mean([r.bits_per_dim for r in recs])),
        "decoder_steps": steps,
        "checkpoint_step": loaded.checkpoint_step,
        "run": loaded.run.id,
    }
    if record and loaded.run.stage == 1 and loaded.checkpoint_step is not None:
        from ul_engine.core.rate_distortion import record_evaluation

        result["recorded"] = record_evaluation(
            store, loaded.run.id, loaded.checkpoint_step, loaded.checkpoint_sha256, result
        )
    if fd:
        result.update(
            generation_metrics(
                loaded,
                fd,
                prior_samples=prior_samples,
                base_steps=base_steps,
                decoder_steps=steps,
                inception_weights=inception_weights,
                seed=seed,
            )
        )
    return result


def generated_images(
    loaded: LoadedRun,
    n: int,
    *,
    prior_samples: bool = False,
    base_steps: int | None = None,
    decoder_steps: int | None = None,
    seed: int = 0,
    batch_size: int = 64,
) -> torch.Tensor:
    """n samples (N, 3, H, W) in [−1, 1], quantised to 8 bits as saved images are: stage-2 samples, or the
    stage-1 prior's z0 samples decoded by the same decoder (`prior_samples`)."""
    cfg = loaded.cfg
    b_steps = base_steps or cfg.sampling.base_steps
    d_steps = decoder_steps or cfg.sampling.decoder_steps
    if prior_samples:
        device = next(loaded.stage1.parameters()).device
        chunks = []
        for start in range(0, n, batch_size):
            seeds = list(range(seed + start, seed + min(n, start + batch_size)))
            z0 = loaded.stage1.sample_prior(len(seeds), steps=b_steps, seeds=seeds, device=device)
            dec_seeds = [s + 10_000_019 for s in seeds]
            chunks.append(loaded.stage1.decode(z0, steps=d_steps, seeds=dec_seeds, sampler=cfg.sampling.sampler))
        images = tensor_to_uint8(torch.cat(chunks))
    else:
        assert loaded.base is not None
        images = np.stack(
            sample_images(
                loaded.base,
                loaded.stage1,
                n,
                seed=seed,
                base_steps=b_steps,
                decoder_steps=d_steps,
                sampler=cfg.sampling.sampler,
                guidance=1.0,
                batch_size=batch_size,
            )
        )
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def generation_metrics(
    loaded: LoadedRun,
    n: int,
    *,
    prior_samples: bool = False,
    base_steps: int | None = None,
    decoder_steps: int | None = None,
    inception_weights: str | Path | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """{"fd_shapes": {...}, "fid_inception_v3": {...}} for n unguided samples against n validation images;
    for a video run {"fvd_bouncing": {...}} of n clips (there is no I3D loader for real FVD)."""
    from ul_engine.eval.metrics.generation import fd_shapes, fid_inception, fvd_bouncing

    cfg = validate({**loaded.cfg.to_dict(), "stage": 1})
    real, _ = fixed_validation_batch(make_source(cfg.data), n, seed=FD_REFERENCE_SEED)
    sampling = {"prior_samples": prior_samples, "base_steps": base_steps, "decoder_steps": decoder_steps, "seed": seed}
    samples = {
        "samples": "stage1_prior" if prior_samples else "stage2",
        "base_steps": base_steps or loaded.cfg.sampling.base_steps,
        "decoder_steps": decoder_steps or loaded.cfg.sampling.decoder_steps,
        "guidance": 1.0,
        "seed": seed,
    }
    if cfg.model.time_axis:
        from ul_engine.inference.video_commands import generated_clips

        fvd = {**fvd_bouncing(real, generated_clips(loaded, n, **sampling)), **samples}
        if cfg.data.kind != "bouncing":
            fvd["note"] = (
                "this run is not trained on the bouncing data: the bouncing classifier's embedding says little "
                "about these clips, and there is no I3D loader for real FVD"
            )
        return {"fvd_bouncing": fvd}
    fake = generated_images(loaded, n, **sampling)
    fd = {**fd_shapes(real, fake), **samples}
    if cfg.data.kind != "shapes":
        fd["note"] = (
            "this run is not trained on the shapes data: the shapes classifier's embedding says little about "
            "these images; use FID (--inception-weights) instead"
        )
    fid = fid_inception(real, fake, inception_weights)
    if fid.get("available"):
        fid.update(samples)
    return {"fd_shapes": fd, "fid_inception_v3": fid}
