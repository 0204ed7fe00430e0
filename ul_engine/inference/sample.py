"""Sampling a stage-2 run: the one image-sampling function (`generate`), a sample's trajectory, and what the
CLI, the worker and the evaluation draw with them (files on disk, or tensors for the generation metrics).

An image: the base model runs from λ_min to λ_z(0) and gives z0; the decoder turns it into pixels (Algorithm 2).
Sample i depends on its seed alone: the base model's noise comes from seed i, the decoder's from
seed i + SAMPLE_DECODER_SEED_OFFSET, whatever batch it is drawn in. Clips go through the same base model and
the windowed decoder of `clips`.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ul_engine.core import io
from ul_engine.core.errors import ULError
from ul_engine.core.imaging import save_png
from ul_engine.core.media import from_model_range
from ul_engine.core.sample_settings import RANDOM_CLASS, ClassChoice, class_choice
from ul_engine.core.user_paths import check_output_folder
from ul_engine.core.video_io import write_video
from ul_engine.data.loader import to_model_tensor
from ul_engine.diffusion import samplers
from ul_engine.inference.clips import Layout, decode_video, encode_video, report, require_video
from ul_engine.inference.files import Progress, hold_pad, load_clip, sample_png_meta
from ul_engine.inference.latents import decode_latents
from ul_engine.inference.loading import LoadedRun, load_run
from ul_engine.model import LatentBase, UnifiedLatents

SAMPLE_DECODER_SEED_OFFSET = 10_000_019  # decoder seeds = base seed + this (images and clips)
CLASS_SEED_OFFSET = 20_000_003  # RANDOM_CLASS draws a seed's class from seed + this (apart from its noise)


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


MAX_GUIDANCE = 50.0


def check_guidance(guidance: float) -> float:
    """The guidance scale, or a clear error: the one range every sampling entry point accepts."""
    if not 0.0 <= guidance <= MAX_GUIDANCE:
        raise ULError(f"guidance must be between 0 and {MAX_GUIDANCE:g}, not {guidance:g}")
    return guidance


def class_labels(base: LatentBase, class_label: int | None, n: int) -> Tensor | None:
    """Labels for a class-conditional base model (None: unconditional); a clear error when out of range."""
    if class_label is None:
        return None
    if not base.num_classes:
        raise ULError("this run is not class-conditional; leave the class unset")
    if not 0 <= int(class_label) < base.num_classes:
        raise ULError(f"class {class_label} is out of range: this run has classes 0–{base.num_classes - 1}")
    return torch.full((n,), int(class_label), dtype=torch.long, device=_device(base))


def seed_class(seed: int, num_classes: int) -> int:
    """The class RANDOM_CLASS gives `seed`: uniform over the classes, from the seed alone (not its batch)."""
    draw = torch.Generator().manual_seed(int(seed) + CLASS_SEED_OFFSET)
    return int(torch.randint(num_classes, (1,), generator=draw))


def seed_classes(base: LatentBase, choice: ClassChoice, seeds: Sequence[int]) -> list[int | None]:
    """The class of each seed's sample: None (unconditional), the one class asked for, or each seed's own draw."""
    choice = class_choice(choice)
    if choice == RANDOM_CLASS:
        if not base.num_classes:
            raise ULError(f"this run is not class-conditional; '{RANDOM_CLASS}' needs a run trained with classes")
        return [seed_class(s, base.num_classes) for s in seeds]
    class_labels(base, choice, 1)  # type: ignore[arg-type]  # the range check, with its message
    return [choice for _ in seeds]  # type: ignore[misc]


def sample_params(base: LatentBase, params: dict[str, Any], seeds: Sequence[int]) -> list[dict[str, Any]]:
    """Each sample's own `ul-params`: `params` with the class that seed got, so its PNG redraws it exactly."""
    return [{**params, "class": c} for c in seed_classes(base, params["class"], seeds)]


def _seed_labels(base: LatentBase, classes: Sequence[int | None]) -> Tensor | None:
    if not classes or classes[0] is None:
        return None
    return torch.tensor([int(c) for c in classes], dtype=torch.long, device=_device(base))  # type: ignore[arg-type]


def _cancel_callback(cancel: Callable[[], bool] | None, tick: Callable[[], None] | None) -> samplers.Callback:
    def callback(info: samplers.StepInfo) -> bool:
        if tick is not None:
            tick()
        return bool(cancel is not None and cancel())

    return callback


@torch.no_grad()
def generate(
    base: LatentBase,
    stage1: UnifiedLatents,
    seeds: Sequence[int],
    *,
    base_steps: int,
    decoder_steps: int,
    sampler: str = "ancestral",
    guidance: float = 1.0,
    class_label: ClassChoice = None,
    batch_size: int = 16,
    cancel: Callable[[], bool] | None = None,
    tick: Callable[[], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, Tensor]:
    """Images (N, H, W, 3) uint8 for `seeds`, and the base model's last clean prediction of each (its z_clean).

    `class_label`: None, a class, or RANDOM_CLASS (`seed_classes` says which class each seed gets).
    `batch_size` seeds go through the nets at once; `tick()` runs after every sampler step and `cancel()` is
    asked there (SamplingCancelled when true); `progress(done, total)` after every batch.
    """
    seeds = [int(s) for s in seeds]
    classes = seed_classes(base, class_label, seeds)
    stop = _cancel_callback(cancel, tick)
    images: list[np.ndarray] = []
    latents: list[Tensor] = []
    for start in range(0, len(seeds), max(1, int(batch_size))):
        chunk = seeds[start : start + max(1, int(batch_size))]
        labels = _seed_labels(base, classes[start : start + len(chunk)])
        last: dict[str, Tensor] = {}

        def on_base(info: samplers.StepInfo, last: dict[str, Tensor] = last) -> bool:
            last["x_hat"] = info.x_hat
            return bool(stop(info))

        z0 = base.sample(len(chunk), steps=base_steps, seeds=chunk, sampler=sampler, labels=labels,
                         guidance=guidance, device=_device(base), callback=on_base)  # fmt: skip
        x = stage1.decode(z0.to(_device(stage1)), steps=decoder_steps,
                          seeds=[s + SAMPLE_DECODER_SEED_OFFSET for s in chunk], sampler=sampler,
                          callback=stop)  # fmt: skip
        images.append(from_model_range(x))
        latents.append(last.get("x_hat", z0).float().cpu())
        if progress is not None:
            progress(start + len(chunk), len(seeds))
    return np.concatenate(images), torch.cat(latents)


@dataclass
class TrajectoryFrame:
    """One step of a sample's trajectory: the prediction after step `index` of `total` in `phase`."""

    phase: str  # "base" (the base model's clean-latent prediction, decoded) or "decoder" (its image prediction)
    index: int
    total: int
    logsnr: float
    image: np.ndarray  # (H, W, 3) uint8


@torch.no_grad()
def sample_trajectory(
    base: LatentBase,
    stage1: UnifiedLatents,
    *,
    seed: int,
    base_steps: int,
    decoder_steps: int,
    sampler: str = "ancestral",
    guidance: float = 1.0,
    class_label: ClassChoice = None,
    preview_steps: int = 4,
    cancel: Callable[[], bool] | None = None,
) -> tuple[list[TrajectoryFrame], np.ndarray]:
    """Every step of one sample: the base model's clean-latent predictions (each decoded with
    `preview_steps` decoder steps through fixed noise), then the decoder's image predictions. The last
    frame is the sample (the seeds of `generate`). Returns (frames, the final image)."""
    labels = _seed_labels(base, seed_classes(base, class_label, [seed]))
    stop = _cancel_callback(cancel, None)
    base_preds: list[tuple[int, int, float, Tensor]] = []

    def on_base(info: samplers.StepInfo) -> bool:
        base_preds.append((info.index, info.total, info.logsnr, info.x_hat[0].float().cpu()))
        return bool(stop(info))

    z0 = base.sample(1, steps=base_steps, seeds=[int(seed)], sampler=sampler, labels=labels, guidance=guidance,
                     device=_device(base), callback=on_base)  # fmt: skip
    frames: list[TrajectoryFrame] = []
    if base_preds:
        preds = torch.stack([p[3] for p in base_preds])
        images = decode_latents(stage1, preds, seed=int(seed), steps=max(1, int(preview_steps)), sampler=sampler)
        for (i, n, lam, _), img in zip(base_preds, images, strict=True):
            frames.append(TrajectoryFrame("base", i, n, lam, img))
    decoded: list[TrajectoryFrame] = []

    def on_decoder(info: samplers.StepInfo) -> bool:
        decoded.append(TrajectoryFrame("decoder", info.index, info.total, info.logsnr, from_model_range(info.x_hat)[0]))
        return bool(stop(info))

    x = stage1.decode(z0.to(_device(stage1)), steps=decoder_steps, seeds=[int(seed) + SAMPLE_DECODER_SEED_OFFSET],
                      sampler=sampler, callback=on_decoder)  # fmt: skip
    return frames + decoded, from_model_range(x)[0]


# ----------------------------------------------------------------------------------------------
# Clips: the base model window by window, the windowed decoder


def context_latent_frames(pixel_frames: int, time_down: int) -> int:
    """Latent frames that k given frames occupy: ⌈k / f⌉."""
    return math.ceil(pixel_frames / time_down)


@torch.no_grad()
def sample_latents(
    base: LatentBase,
    stage1: UnifiedLatents,
    n: int,
    *,
    frames: int,
    seed: int,
    steps: int,
    sampler: str = "ancestral",
    context: np.ndarray | None = None,
    context_frames: int = 0,
    progress: Progress | None = None,
) -> Tensor:
    """n noisy latents z0 (n, C, ⌈frames/f⌉, h, w) from the base model.

    The first window is unconditional, or conditioned on the encoded first `context_frames` frames of
    `context`; longer videos grow window by window, each conditioned on the last `model.base.context_frames`
    latent frames generated so far (needs a model trained with context).
    """
    lay = Layout.of(base.cfg)
    device = next(base.parameters()).device
    win = lay.latent_frames
    want = math.ceil(frames / lay.time_down)
    given = 0
    ctx: Tensor | None = None
    if context is not None and context_frames:
        if context.shape[0] < context_frames:
            raise ULError(f"--context-frames {context_frames}: the context clip has only {context.shape[0]} frames")
        given = context_latent_frames(context_frames, lay.time_down)
        if given >= min(win, want):
            raise ULError(
                f"--context-frames {context_frames} covers {given} latent frames; the model's window has {win} "
                f"and {want} are asked for, so nothing would be generated — give fewer context frames"
            )
        clip = hold_pad(context[:context_frames], lay.frames)
        ctx = encode_video(stage1, clip)[None].expand(n, -1, -1, -1, -1).contiguous()
    hop_context = base.context_frames
    if want > win and not hop_context:
        raise ULError(
            f"{frames} frames is longer than this model's clip ({lay.frames} frames), and it was trained without "
            "context (model.base.context_frames = 0), so it cannot continue a clip"
        )
    windows = 1 if want <= win else 1 + math.ceil((want - win) / (win - hop_context))
    seeds = list(range(seed, seed + n))
    done_steps = 0

    def tick(info: Any) -> bool:
        report(progress, done_steps + info.index + 1, windows * steps, "base")
        return False

    if ctx is None:
        ctx = torch.zeros((n, *base.cfg.latent_shape()))
    z = base.sample(n, steps=steps, seeds=seeds, sampler=sampler, device=device, callback=tick,
                    context=ctx if given else None, given_frames=given).cpu()  # fmt: skip
    if given:  # the given frames: exactly what the decoder would read for them
        z[:, :, :given] = stage1.noisy_latent(ctx[:, :, :given], _noise(ctx[:, :, :given].shape, seed + 31))
    out = z
    w = 1
    while out.shape[2] < want:
        done_steps = w * steps
        window_ctx = torch.zeros_like(z)
        window_ctx[:, :, :hop_context] = out[:, :, -hop_context:] / stage1.alpha0
        nxt = base.sample(n, steps=steps, seeds=[s + 104_729 * w for s in seeds], sampler=sampler, device=device,
                          callback=tick, context=window_ctx, given_frames=hop_context).cpu()  # fmt: skip
        out = torch.cat([out, nxt[:, :, hop_context:]], dim=2)
        w += 1
    return out[:, :, :want]


def _noise(shape: torch.Size, seed: int) -> Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(int(seed)))


def sample_videos(
    base: LatentBase,
    stage1: UnifiedLatents,
    n: int,
    *,
    frames: int | None = None,
    seed: int = 0,
    base_steps: int,
    decoder_steps: int,
    sampler: str = "ancestral",
    context: np.ndarray | None = None,
    context_frames: int = 0,
    progress: Progress | None = None,
) -> list[np.ndarray]:
    """n clips, each uint8 (frames, H, W, 3): base model → z0 → chunked decoder."""
    lay = Layout.of(base.cfg)
    frames = frames or lay.frames
    if frames < 1 or n < 1:
        raise ULError("--frames and --n must be at least 1")
    z0 = sample_latents(base, stage1, n, frames=frames, seed=seed, steps=base_steps, sampler=sampler,
                        context=context, context_frames=context_frames, progress=progress)  # fmt: skip
    clips = []
    for i in range(n):

        def step(done: int, total: int, what: str, i: int = i) -> bool | None:
            return progress(i * total + done, n * total, "decode") if progress is not None else None

        clip = decode_video(stage1, z0[i], steps=decoder_steps, seed=seed + i + SAMPLE_DECODER_SEED_OFFSET,
                            sampler=sampler, progress=step)  # fmt: skip
        clips.append(clip[:frames])
    return clips


# ----------------------------------------------------------------------------------------------
# `ul sample` and the worker's sample op: files


def sample_files(
    store: Any,
    run_ref: int | str,
    out_dir: Path,
    *,
    n: int,
    step: int | None = None,
    seed: int = 0,
    base_steps: int | None = None,
    decoder_steps: int | None = None,
    sampler: str | None = None,
    guidance: float | None = None,
    class_label: ClassChoice = None,
    progress: bool = False,
) -> list[str]:
    """Generate n images; each PNG carries run, checkpoint sha256, seed and parameters in its metadata."""
    if n < 1:
        raise ULError("--n must be at least 1")
    check_output_folder(out_dir)  # before sampling: a file where the folder goes fails now, not after the work
    loaded = load_run(store, run_ref, need_base=True, step=step)
    assert loaded.base is not None
    cfg = loaded.cfg
    params: dict[str, Any] = {
        "base_steps": base_steps or cfg.sampling.base_steps,
        "decoder_steps": decoder_steps or cfg.sampling.decoder_steps,
        "sampler": sampler or cfg.sampling.sampler,
        "guidance": cfg.sampling.guidance if guidance is None else guidance,
        "class": class_label,
    }
    bar = None
    if progress and sys.stdout.isatty():
        from tqdm import tqdm  # why: only a terminal shows a bar

        bar = tqdm(total=n, unit="img")

    def tick(done: int, total: int) -> None:
        if bar is not None:
            bar.n = done
            bar.refresh()

    seeds = list(range(seed, seed + n))
    images, _ = generate(loaded.base, loaded.stage1, seeds, base_steps=params["base_steps"],
                         decoder_steps=params["decoder_steps"], sampler=params["sampler"],
                         guidance=params["guidance"], class_label=class_label, progress=tick)  # fmt: skip
    if bar is not None:
        bar.close()
    out_dir = Path(out_dir)
    outputs = []
    for s, image, own in zip(seeds, images, sample_params(loaded.base, params, seeds), strict=True):
        path = out_dir / f"{loaded.run.name}-seed{s:06d}.png"
        save_png(path, image, sample_png_meta(loaded, s, own))
        store.add_artifact(loaded.run.id, kind="sample", path=path.resolve(), step=loaded.checkpoint_step, seed=s,
                           params=own)  # fmt: skip
        outputs.append(str(path))
    return outputs


def sample_clips(
    store: Any,
    loaded: Any,
    out_dir: Path,
    *,
    n: int,
    frames: int | None = None,
    seed: int = 0,
    base_steps: int | None = None,
    decoder_steps: int | None = None,
    sampler: str | None = None,
    context: str | Path | None = None,
    context_frames: int | None = None,
    fmt: str = "mp4",
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Generate n clips with a stage-2 video run (optionally continuing a given clip); one file each."""
    require_video(loaded)
    if loaded.base is None:
        raise ULError(f"run {loaded.run.name} is a stage-1 run; sampling needs a stage-2 run")
    if n < 1:
        raise ULError("--n must be at least 1")
    if fmt not in ("mp4", "gif"):
        raise ULError(f"unknown format {fmt!r}; use mp4 or gif")
    cfg = loaded.cfg
    ctx = None
    k = 0
    if context is not None:
        k = int(context_frames or 0)
        if k < 1:
            raise ULError("--context needs --context-frames k ≥ 1 (how many of its first frames to keep)")
        ctx, _ = load_clip(context, cfg.data.resolution, max_frames=k)
    elif context_frames:
        raise ULError("--context-frames needs --context VIDEO")
    params: dict[str, Any] = {
        "frames": frames or cfg.data.frames,
        "base_steps": base_steps or cfg.sampling.base_steps,
        "decoder_steps": decoder_steps or cfg.sampling.decoder_steps,
        "sampler": sampler or cfg.sampling.sampler,
        "context": str(context) if context is not None else None,
        "context_frames": k,
    }
    clips = sample_videos(
        loaded.base, loaded.stage1, n, frames=params["frames"], seed=seed, base_steps=params["base_steps"],
        decoder_steps=params["decoder_steps"], sampler=params["sampler"], context=ctx, context_frames=k,
        progress=progress,
    )  # fmt: skip
    out_dir = Path(out_dir)
    outputs = []
    fps = float(cfg.data.fps)
    for i, clip in enumerate(clips):
        path = out_dir / f"{loaded.run.name}-seed{seed + i:06d}.{fmt}"
        fps = write_video(path, list(clip), fps=cfg.data.fps)["fps"]  # what the file holds (GIF: 100/k)
        io.write_json(path.with_suffix(path.suffix + ".json"), {
            "run": loaded.run.id, "run_name": loaded.run.name, "checkpoint_sha256": loaded.checkpoint_sha256,
            "seed": seed + i, **params,
        })  # fmt: skip
        if store is not None:
            store.add_artifact(loaded.run.id, kind="sample", path=path.resolve(), step=loaded.checkpoint_step,
                               seed=seed + i, params=params)  # fmt: skip
        outputs.append(str(path))
    return {"outputs": outputs, "frames": params["frames"], "fps": fps, "context_frames": k}


# ----------------------------------------------------------------------------------------------
# Samples as tensors, for the generation metrics


def generated_samples(
    loaded: LoadedRun,
    n: int,
    *,
    prior_samples: bool = False,
    base_steps: int | None = None,
    decoder_steps: int | None = None,
    seed: int = 0,
    batch_size: int = 64,
    labels: Sequence[int] | None = None,
    guidance: float = 1.0,
) -> Tensor:
    """n samples in [−1, 1], quantised to 8 bits as saved files are: images (N, 3, H, W) or, on a video
    run, clips (N, 3, T, H, W). Stage-2 samples, or the stage-1 prior's z0 decoded by the same decoder
    (`prior_samples`). Unconditional unless `labels` (one class per sample) is given: then sample i is drawn
    for class labels[i] with classifier-free `guidance`, and its seeds are the unconditional sample i's."""
    if labels is not None:
        return _labelled_samples(loaded, n, labels, guidance=guidance, base_steps=base_steps,
                                 decoder_steps=decoder_steps, seed=seed, batch_size=batch_size)  # fmt: skip
    cfg = loaded.cfg
    b_steps = base_steps or cfg.sampling.base_steps
    d_steps = decoder_steps or cfg.sampling.decoder_steps
    sampler = cfg.sampling.sampler
    video = bool(cfg.model.time_axis)
    batch_size = 16 if video else batch_size
    if prior_samples:
        device = next(loaded.stage1.parameters()).device
        out: list[np.ndarray] = []
        for start in range(0, n, batch_size):
            seeds = list(range(seed + start, seed + min(n, start + batch_size)))
            z0 = loaded.stage1.sample_prior(len(seeds), steps=b_steps, seeds=seeds, device=device)
            dec_seeds = [s + SAMPLE_DECODER_SEED_OFFSET for s in seeds]
            if video:
                out.extend(decode_video(loaded.stage1, z.cpu(), steps=d_steps, seed=s, sampler=sampler)
                           for z, s in zip(z0, dec_seeds, strict=True))  # fmt: skip
            else:
                out.extend(from_model_range(loaded.stage1.decode(z0, steps=d_steps, seeds=dec_seeds, sampler=sampler)))
        samples = np.stack(out)
    elif video:
        assert loaded.base is not None
        samples = np.stack(sample_videos(loaded.base, loaded.stage1, n, seed=seed, base_steps=b_steps,
                                         decoder_steps=d_steps, sampler=sampler))  # fmt: skip
    else:
        assert loaded.base is not None
        samples, _ = generate(loaded.base, loaded.stage1, range(seed, seed + n), base_steps=b_steps,
                              decoder_steps=d_steps, sampler=sampler, guidance=1.0, batch_size=batch_size)  # fmt: skip
    return to_model_tensor(samples)


def _labelled_samples(
    loaded: LoadedRun,
    n: int,
    labels: Sequence[int],
    *,
    guidance: float,
    base_steps: int | None,
    decoder_steps: int | None,
    seed: int,
    batch_size: int,
) -> Tensor:
    """Class-conditional image samples, one class per sample, drawn class by class (one label per batch)."""
    if len(labels) != n:
        raise ULError(f"{len(labels)} class labels for {n} samples")
    if loaded.base is None or loaded.cfg.model.time_axis:
        raise ULError("class-conditional samples need a stage-2 image run")
    cfg = loaded.cfg
    out: list[np.ndarray | None] = [None] * n
    for label in sorted({int(c) for c in labels}):
        index = [i for i, c in enumerate(labels) if int(c) == label]
        images, _ = generate(loaded.base, loaded.stage1, [seed + i for i in index],
                             base_steps=base_steps or cfg.sampling.base_steps,
                             decoder_steps=decoder_steps or cfg.sampling.decoder_steps, sampler=cfg.sampling.sampler,
                             guidance=guidance, class_label=label, batch_size=batch_size)  # fmt: skip
        for i, image in zip(index, images, strict=True):
            out[i] = image
    return to_model_tensor(np.stack(out))  # type: ignore[arg-type]
