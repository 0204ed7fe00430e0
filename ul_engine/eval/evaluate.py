"""`ul eval`: a run's reconstruction fidelity and rate on a fixed validation set, and optionally the generation
metrics of its samples (FD-shapes, FID with local Inception weights, FVD-bouncing on video runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ul_engine.core.config import validate
from ul_engine.core.errors import ULError
from ul_engine.core.rate_distortion import record_evaluation
from ul_engine.core.user_paths import check_file
from ul_engine.data import fixed_validation_batch, make_source
from ul_engine.diffusion.precision import sampling_precision
from ul_engine.eval.metrics.generation import fd_shapes, fid_inception, fvd_bouncing
from ul_engine.inference.loading import LoadedRun, load_run
from ul_engine.inference.reconstruct import reconstruct_batch
from ul_engine.inference.sample import check_guidance, generated_samples

FD_REFERENCE_SEED = 8765  # the FD reference images: a validation stream apart from the reconstruction set's
FD_RECONSTRUCTED_SEED = 8766  # --reconstructions: the images reconstructed for FD, apart from the reference ones
VALIDATION_SEED = 4321  # the reconstruction set: the same images every time
EVAL_BATCH = 16


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
    guidance: float | None = None,
    reconstructions: bool = False,
) -> dict[str, Any]:
    """PSNR, SSIM and the prior's bits on a fixed validation set (the same images every time).

    With `record`, a stage-1 run's result is stored on its checkpoint (`ul_engine.core.rate_distortion`), so the
    Runs table, the Monitor and the Rate–distortion view show it; `recorded` names the checkpoint row.

    fd > 0 adds generation metrics on `fd` samples against `fd` validation images: `fd_shapes` always (the
    shipped shapes classifier), and `fid_inception_v3` only from a local `inception_weights` file
    (otherwise reported as unavailable, with the reason); on a video run `fvd_bouncing` (the shipped
    bouncing-clip classifier) of `fd` clips, and `inception_weights` is refused (there is no I3D loader).
    The samples come from the stage-2 base model, or, with `prior_samples`, from the stage-1 prior (the
    unweighted-ELBO model stage 2 exists to beat). With `guidance` (a class-conditional stage-2 image run),
    each sample is drawn for its reference image's class with that classifier-free guidance scale, and
    `class_agreement` says how often the shapes classifier reads the requested class back. With
    `reconstructions` (image runs, stage 1 or 2) the "samples" are stage-1 reconstructions of other validation
    images: stage 2 samples through the same decoder, so this FD is what a perfect base model would score, and
    on a class-conditional run `class_agreement` (each round trip read against its image's class) is the ceiling
    of a guided one.
    """
    if n < 1:
        raise ULError("--n must be at least 1")
    if fd < 0 or fd == 1:
        raise ULError("--fd needs at least 2 samples (a covariance)")
    if inception_weights:
        check_file(Path(inception_weights).expanduser())  # before hashing it: a FIFO or a device never ends
    if reconstructions and not fd:
        raise ULError("--reconstructions needs --fd N (how many images to reconstruct and compare)")
    if reconstructions and (prior_samples or guidance is not None):
        raise ULError("--reconstructions replaces the samples: leave out --prior-samples and --guidance")
    loaded = load_run(store, run_ref, step=step)
    if reconstructions and loaded.cfg.model.time_axis:
        raise ULError("--reconstructions is for image runs (FD-shapes); a video run's clips are not supported")
    if guidance is not None:
        _check_guided(loaded, guidance, fd=fd, prior_samples=prior_samples)
    if fd and loaded.base is None and not (prior_samples or reconstructions):
        raise ULError(
            f"run {loaded.run.name} is a stage-1 run: --fd needs a stage-2 run's samples, or --prior-samples "
            "to sample the stage-1 prior"
        )
    cfg = validate({**loaded.cfg.to_dict(), "stage": 1}) if loaded.cfg.stage == 2 else loaded.cfg
    if cfg.model.time_axis and inception_weights:
        raise ULError(
            "--inception-weights is for image runs: FVD needs an I3D network and there is no I3D loader "
            "here (not supported); on a video run --fd N computes FVD-bouncing"
        )
    steps = decoder_steps or cfg.sampling.decoder_steps
    x, _ = fixed_validation_batch(make_source(cfg.data), n, seed=VALIDATION_SEED)
    recs = []
    for start in range(0, n, EVAL_BATCH):  # clips: PSNR/SSIM averaged over frames, bits per pixel of the whole clip
        chunk = x[start : start + EVAL_BATCH]
        seeds = list(range(start, start + chunk.shape[0]))
        recs.extend(reconstruct_batch(loaded.stage1, chunk, decoder_steps=steps, seeds=seeds))
    result: dict[str, Any] = {
        "n": n,
        "psnr": float(np.mean([r.psnr for r in recs])),
        "ssim": float(np.nanmean([r.ssim for r in recs])),
        "bits_per_pixel": float(np.mean([r.bits_per_pixel for r in recs])),
        "bits_per_dim": float(np.mean([r.bits_per_dim for r in recs])),
        "decoder_steps": steps,
        "sampling_precision": sampling_precision(next(loaded.stage1.parameters()).device),
        "checkpoint_step": loaded.checkpoint_step,
        "run": loaded.run.id,
    }
    if record and loaded.run.stage == 1 and loaded.checkpoint_step is not None:
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
                guidance=guidance,
                reconstructions=reconstructions,
            )
        )
    return result


def _check_guided(loaded: LoadedRun, guidance: float, *, fd: int, prior_samples: bool) -> None:
    """Refuse a guided evaluation that could not mean what it says, before any sampling."""
    if not fd:
        raise ULError("--guidance needs --fd N (the samples it conditions)")
    if prior_samples:
        raise ULError("--guidance is for the stage-2 base model; the stage-1 prior is unconditional")
    if loaded.base is None or not loaded.base.num_classes:
        raise ULError(f"run {loaded.run.name} has no class-conditional base model: --guidance needs one")
    if loaded.cfg.model.time_axis:
        raise ULError("--guidance is for image runs (FVD-bouncing samples are unconditional)")
    check_guidance(guidance)


def generation_metrics(
    loaded: LoadedRun,
    n: int,
    *,
    prior_samples: bool = False,
    base_steps: int | None = None,
    decoder_steps: int | None = None,
    inception_weights: str | Path | None = None,
    seed: int = 0,
    guidance: float | None = None,
    reconstructions: bool = False,
) -> dict[str, Any]:
    """{"fd_shapes": {...}, "fid_inception_v3": {...}} for n samples against n validation images;
    for a video run {"fvd_bouncing": {...}} of n clips (there is no I3D loader for real FVD). Unconditional
    samples, or with `guidance` one per reference image, drawn for its class."""
    cfg = validate({**loaded.cfg.to_dict(), "stage": 1})
    real, real_labels = fixed_validation_batch(make_source(cfg.data), n, seed=FD_REFERENCE_SEED)
    labels = None if guidance is None else [int(c) for c in real_labels]
    if reconstructions:
        others, other_labels = fixed_validation_batch(make_source(cfg.data), n, seed=FD_RECONSTRUCTED_SEED)
        fake = reconstructed_images(loaded, others, decoder_steps or cfg.sampling.decoder_steps, seed)
        if cfg.data.num_classes:  # a round trip's class is its image's: the ceiling of a guided agreement
            labels = [int(c) for c in other_labels]
    else:
        fake = generated_samples(loaded, n, prior_samples=prior_samples, base_steps=base_steps,
                                 decoder_steps=decoder_steps, seed=seed, labels=labels,
                                 guidance=1.0 if guidance is None else guidance)  # fmt: skip
    kind = "stage1_reconstructions" if reconstructions else "stage1_prior" if prior_samples else "stage2"
    samples = {
        "samples": kind,
        "base_steps": base_steps or loaded.cfg.sampling.base_steps,
        "decoder_steps": decoder_steps or loaded.cfg.sampling.decoder_steps,
        "conditional": guidance is not None,
        "guidance": 1.0 if guidance is None else float(guidance),
        "seed": seed,
    }
    if cfg.model.time_axis:
        fvd = {**fvd_bouncing(real, fake), **samples}
        if cfg.data.kind != "bouncing":
            fvd["note"] = (
                "this run is not trained on the bouncing data: the bouncing classifier's embedding says little "
                "about these clips, and there is no I3D loader for real FVD"
            )
        return {"fvd_bouncing": fvd}
    fd = {**fd_shapes(real, fake, labels=labels, real_labels=[int(c) for c in real_labels]), **samples}
    if cfg.data.kind != "shapes":
        fd["note"] = (
            "this run is not trained on the shapes data: the shapes classifier's embedding says little about "
            "these images; use FID (--inception-weights) instead"
        )
    fid = fid_inception(real, fake, inception_weights)
    if fid.get("available"):
        fid.update(samples)
    return {"fd_shapes": fd, "fid_inception_v3": fid}


def reconstructed_images(loaded: LoadedRun, x: torch.Tensor, decoder_steps: int, seed: int) -> torch.Tensor:
    """Stage-1 round trips of `x` ((N, 3, H, W) in [−1, 1]) in the same layout, image i with seed `seed` + i."""
    out = []
    for start in range(0, x.shape[0], EVAL_BATCH):
        chunk = x[start : start + EVAL_BATCH]
        seeds = list(range(seed + start, seed + start + chunk.shape[0]))
        recs = reconstruct_batch(loaded.stage1, chunk, decoder_steps=decoder_steps, seeds=seeds, rate_draws=1)
        out.extend(torch.from_numpy(r.reconstruction).permute(2, 0, 1).float() / 127.5 - 1.0 for r in recs)
    return torch.stack(out)
