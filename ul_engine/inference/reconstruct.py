"""The one reconstruction path: images one at a time through a loaded run, cached in the store (what
`ul reconstruct`, the session worker's ops and the app's Reconstruct page share); video files through the
windowed clip model; and batches of validation tensors for `ul eval` and the study.

Per image: read (the one robust reader) → fit (downscale above MAX_RECONSTRUCT_SIDE, with a notice) → pad
to the downsampling multiple by edge replication → encode → K decodes with seeds → crop back → the first
decode is "the" reconstruction; with K ≥ 2 also their mean and a per-pixel standard deviation map (what the
decoder invents rather than reads from the latent) → PSNR/SSIM on the cropped image → the prior's rate.
A video file: read fitted to the model's square size → encode, decode and rate in clip-length windows
(`clips`) → per-frame PSNR. Both give one entry shape: {"input", "ok", "error", "notices", "run", "run_name",
"checkpoint_step", "params", "files": {"input", "reconstruction", ...}, "metrics": {"psnr", "ssim", "bits",
"bits_per_pixel", "bits_per_dim", ...}}; `flat_result` is the CLI's (and the simple ops') flat view of it.

No tiling for a trained run: every net is convolutional, and the transformers (prior, decoder) build their 2-D
sin/cos position embeddings for whatever grid they get, so any multiple of the downsampling runs as one piece
at the image's own resolution. Memory grows with the pixel count; the bound is the side limit of
`core.reconstruction.MAX_RECONSTRUCT_SIDE` (2048, images above it are downscaled with a notice) and the reader's
64-megapixel header check (larger claims are refused before any pixel is decoded).

The image cache is keyed by (sha256 of the file's bytes, checkpoint id, params hash): the same bytes under
another name are a hit; another checkpoint or another decoder setting is a miss.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ul_engine.core import io
from ul_engine.core.errors import ULError
from ul_engine.core.imaging import save_png, tensor_to_uint8
from ul_engine.core.reconstruction import (
    CACHE_NAMES,
    ReconstructCancelled,
    ReconstructParams,
    cache_folder,
    cached_entry,
    cli_names,
    colormap,
    file_sha256,
    heat_scale,
)
from ul_engine.core.user_paths import check_file
from ul_engine.eval.metrics import SSIM_WINDOW
from ul_engine.eval.metrics.fidelity import psnr_ssim
from ul_engine.inference.clips import Layout, decode_video, encode_video, require_video, video_rate
from ul_engine.inference.files import ImageMedia, Progress, VideoMedia, image_to_model_input
from ul_engine.model import LN2, UnifiedLatents

# ----------------------------------------------------------------------------------------------
# Batches of validation tensors (`ul eval`, the study)


@dataclass
class Reconstruction:
    """One image's (or clip's) round trip through the latent, with its cost and fidelity."""

    reconstruction: np.ndarray  # (H,W,3) uint8; empty for clips
    psnr: float
    ssim: float
    rate_nats: float
    bits_per_pixel: float
    bits_per_dim: float
    decode_seconds: float
    extras: dict[str, float] = field(default_factory=dict)


def _seeded_noise(shape: Sequence[int], seed: int) -> torch.Tensor:
    return torch.randn(tuple(shape), generator=torch.Generator().manual_seed(int(seed)))


@torch.no_grad()
def reconstruct_batch(
    model: UnifiedLatents,
    x: torch.Tensor,
    *,
    decoder_steps: int,
    seeds: Sequence[int],
    sampler: str = "ancestral",
    rate_draws: int = 16,
) -> list[Reconstruction]:
    """Images (B,3,H,W) or clips of the model's length (B,3,T,H,W) in [-1,1] → reconstructions with PSNR/SSIM
    and the prior's bits. The latent noise of example i comes from seeds[i], the decoder's from seeds[i] + 1 (as
    `Reconstructor` draws its first decode); a clip's PSNR and SSIM are means over its frames, its bits per pixel
    of the whole clip."""
    device = next(model.parameters()).device
    x = x.to(device)
    z_clean = model.encode(x)
    noise = torch.stack([_seeded_noise(z_clean.shape[1:], s) for s in seeds])
    z0 = model.noisy_latent(z_clean, noise.to(device))
    start = time.perf_counter()
    x_hat = model.decode(z0, steps=decoder_steps, seeds=[s + 1 for s in seeds], sampler=sampler)
    seconds = (time.perf_counter() - start) / x.shape[0]
    rate = model.estimate_rate(z_clean, draws=rate_draws).cpu()
    clips = x.dim() == 5
    frames = x.shape[2] if clips else 1
    if clips:  # every frame is an image for PSNR/SSIM
        psnrs, ssims = psnr_ssim(x.transpose(1, 2).flatten(0, 1).cpu(), x_hat.transpose(1, 2).flatten(0, 1).cpu())
        images = np.zeros((x.shape[0], 0), np.uint8)
    else:
        psnrs, ssims = psnr_ssim(x.cpu(), x_hat.cpu())
        images = tensor_to_uint8(x_hat)
    pixels = frames * x.shape[-2] * x.shape[-1]
    dims = z_clean[0].numel()
    return [
        Reconstruction(
            reconstruction=images[i],
            psnr=float(np.mean(psnrs[i * frames : (i + 1) * frames])),
            ssim=float(np.mean(ssims[i * frames : (i + 1) * frames])),
            rate_nats=float(rate[i]),
            bits_per_pixel=float(rate[i]) / LN2 / pixels,
            bits_per_dim=float(rate[i]) / LN2 / dims,
            decode_seconds=0.0 if clips else seconds,
        )
        for i in range(x.shape[0])
    ]


# ----------------------------------------------------------------------------------------------
# Image files, one at a time


class Reconstructor:
    """One loaded run at one checkpoint, reconstructing images one by one (cache-aware when it has a store)."""

    def __init__(self, loaded: Any, store: Any = None, checkpoint_id: int | None = None, label: str = "A") -> None:
        self.loaded = loaded
        self.store = store
        self.label = label
        self.model = loaded.stage1
        # a tiled model (ul_engine/inference/tiling.py) takes whole tiles; any other the downsampling's multiples
        self.multiple = getattr(self.model, "input_multiple", None) or loaded.cfg.model.downsample()
        if checkpoint_id is None and store is not None:
            checkpoint_id = _checkpoint_id(store, loaded)
        self.checkpoint_id = checkpoint_id

    def default_params(self, **overrides: Any) -> ReconstructParams:
        s = self.loaded.cfg.sampling
        values = {"decoder_steps": s.decoder_steps, "sampler": s.sampler}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return ReconstructParams(**values)

    def _base_entry(self, path: Path, params: ReconstructParams) -> dict[str, Any]:
        run = self.loaded.run
        return {
            "input": str(path), "name": path.name, "kind": "image", "label": self.label, "ok": False, "error": None,
            "notices": [], "sha256": None, "run": run.id, "run_name": run.name,
            "checkpoint_id": self.checkpoint_id, "checkpoint_step": self.loaded.checkpoint_step,
            "params": params.as_dict(), "params_hash": params.hash(), "files": {}, "metrics": {},
            "cached": False,
        }  # fmt: skip

    def image(
        self,
        path: str | Path,
        params: ReconstructParams,
        *,
        out_dir: Path | None = None,
        names: dict[str, str] | None = None,
        use_cache: bool = True,
        progress: Progress | None = None,
        cancelled: Callable[[], bool] | None = None,
        partial: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """One image → a result entry; a bad input gives `ok: false` and a one-line `error` (never raises,
        except ReconstructCancelled). Without `out_dir` the files go to the store's cache folder.

        Order: encode, the K decodes, the files and PSNR/SSIM — then `partial(entry)` (the images are ready,
        the bits are still None) — then the prior's rate, which at 256 px costs about as much as the decodes."""
        path = Path(path)
        entry = self._base_entry(path, params)
        try:
            try:
                sha = file_sha256(path)  # DataError (one line) for a missing, special or empty file
            except PermissionError:
                ImageMedia().read(path)  # raises the reader's own message
                raise
            entry["sha256"] = sha
            caching = self.store is not None and self.checkpoint_id is not None
            if caching and use_cache and out_dir is None:
                hit = cached_entry(self.store, sha, self.checkpoint_id, params, path)
                if hit is not None:
                    hit["label"] = self.label
                    return hit
            if out_dir is None:
                if not caching:
                    raise ULError("no output folder and no store to cache into")
                out_dir = cache_folder(self.store.home, sha, self.checkpoint_id, params.hash())
                names = CACHE_NAMES
            self._run(path, params, entry, Path(out_dir), names or CACHE_NAMES, progress, cancelled, partial)
            if caching and names is CACHE_NAMES:
                stored = {**entry, "files": {k: Path(v).name for k, v in entry["files"].items()}}
                stored.pop("input", None)
                self.store.cache_put(
                    sha, self.checkpoint_id, params.hash(), path=entry["files"]["reconstruction"], metrics=stored
                )
        except ReconstructCancelled:
            raise
        except ULError as exc:  # the reader's DataError included: one line naming the file
            entry["error"] = str(exc)
        except MemoryError:
            entry["error"] = f"{path}: not enough memory to reconstruct this image"
        except (OSError, ValueError, RuntimeError) as exc:
            entry["error"] = f"{path}: {exc}"
        return entry

    def _run(
        self,
        path: Path,
        params: ReconstructParams,
        entry: dict[str, Any],
        out_dir: Path,
        names: dict[str, str],
        progress: Progress | None,
        cancelled: Callable[[], bool] | None,
        partial: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        started = time.perf_counter()
        k_total = params.samples
        units = 2 + k_total * params.decoder_steps  # encode, K × steps decoder steps, the rate
        done = 0

        def tick(what: str, n: int = 1) -> None:
            nonlocal done
            done += n
            if cancelled is not None and cancelled():
                raise ReconstructCancelled(f"{path.name}: cancelled")
            if progress is not None:
                progress(done, units, what)

        media = ImageMedia()
        source = media.read(path)
        src_w, src_h = source.size
        fitted = media.fit(source)
        image = fitted.frames[0]
        h, w = image.shape[:2]
        # The deepest feature maps must stay at least 2×2 (a 1×1 map has one value per normalisation group):
        # sides are padded to ≥ 2 × the downsampling and to its multiple.
        min_side = getattr(self.model, "input_min_side", None) or 2 * self.multiple
        windowed = media.window(fitted, self.multiple, min_side)
        notices = list(windowed.notices)
        x, _ = image_to_model_input(np.array(windowed.frames[0], dtype=np.uint8), self.multiple)
        ph, pw = x.shape[-2:]
        if min(h, w) < SSIM_WINDOW:
            notices.append(f"no SSIM: the image is smaller than SSIM's {SSIM_WINDOW}×{SSIM_WINDOW} window")

        model = self.model
        device = next(model.parameters()).device
        x = x.to(device)
        with torch.no_grad():
            z_clean = model.encode(x)
            tick("encoded")
            total = torch.zeros((3, h, w), dtype=torch.float64)
            total_sq = torch.zeros((3, h, w), dtype=torch.float64)
            first: np.ndarray | None = None
            decode_seconds = 0.0
            for k in range(k_total):
                seed_k = params.seed + 2 * k  # k = 0 matches `reconstruct_batch` (noise seed, decode seed + 1)
                noise = _seeded_noise(z_clean.shape[1:], seed_k)
                z0 = model.noisy_latent(z_clean, noise[None].to(device))

                def step(info: Any, k: int = k) -> None:
                    tick(f"decode {k + 1}/{k_total}, step {info.index + 1}/{info.total}")

                t0 = time.perf_counter()
                x_hat = model.decode(z0, steps=params.decoder_steps, seeds=[seed_k + 1], sampler=params.sampler,
                                     callback=step)  # fmt: skip
                decode_seconds += time.perf_counter() - t0
                x_hat = x_hat[..., :h, :w].clamp(-1, 1)
                if first is None:
                    first = tensor_to_uint8(x_hat)[0]
                pixels = (x_hat[0].double().cpu() + 1.0) * 127.5
                total += pixels
                total_sq += pixels * pixels
        assert first is not None
        recon = first
        out_dir.mkdir(parents=True, exist_ok=True)
        files: dict[str, str] = {}
        meta = {
            "ul-run": str(self.loaded.run.id),
            "ul-run-name": self.loaded.run.name,
            "ul-checkpoint-sha256": self.loaded.checkpoint_sha256 or "",
            "ul-params": json.dumps(params.as_dict()),
            "ul-source": str(path),
        }
        if names.get("input"):
            files["input"] = str(out_dir / names["input"])
            save_png(Path(files["input"]), image)
        files["reconstruction"] = str(out_dir / names["reconstruction"])
        save_png(Path(files["reconstruction"]), recon, meta)
        metrics: dict[str, Any] = {
            **media.metrics(image[None], recon[None]),
            "bits": None,
            "bits_per_pixel": None,
            "bits_per_dim": None,
            "decode_seconds": decode_seconds / k_total,
        }
        if k_total >= 2:
            mean = total / k_total
            var = ((total_sq - k_total * mean * mean) / (k_total - 1)).clamp_min(0.0)  # unbiased, per channel
            std_map = var.mean(dim=0).sqrt().float().numpy()  # RMS over RGB: (H, W) in pixel levels
            mean_u8 = np.clip(np.rint(mean.permute(1, 2, 0).numpy()), 0, 255).astype(np.uint8)
            files["mean"] = str(out_dir / names["mean"])
            save_png(Path(files["mean"]), mean_u8, {**meta, "ul-what": f"mean of {k_total} decodes"})
            if names.get("std"):
                files["std"] = str(out_dir / names["std"])
                io.atomic_write_bytes(Path(files["std"]), lambda f: np.save(f, std_map, allow_pickle=False))
            scale = heat_scale(std_map)
            files["std_png"] = str(out_dir / names["std_png"])
            save_png(
                Path(files["std_png"]),
                colormap(std_map, scale),
                {**meta, "ul-what": f"per-pixel std of {k_total} decodes, inferno, 0 to {scale:.4g} pixel levels"},
            )
            mean_metrics = media.metrics(image[None], mean_u8[None])
            metrics.update(
                psnr_mean=mean_metrics["psnr"],
                ssim_mean=mean_metrics["ssim"],
                std_mean=float(std_map.mean()),
                std_max=float(std_map.max()),
                std_scale=scale,
            )
        entry.update(
            ok=True,
            notices=notices,
            files=files,
            metrics=metrics,
            width=w,
            height=h,
            source_width=src_w,
            source_height=src_h,
            padded=[pw, ph],
        )
        if partial is not None:  # the images are ready: show them while the bits are measured
            partial(json.loads(json.dumps(entry)))
        if cancelled is not None and cancelled():
            raise ReconstructCancelled(f"{path.name}: cancelled")
        if progress is not None:
            progress(done, units, "measuring the latent's bits")
        # The rate: `rate_draws` prior evaluations at stratified t, seeded so the same image gives the same bits.
        fork_devices = [device] if device.type == "cuda" else []
        with torch.no_grad(), torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(params.seed)
            rate_nats = float(model.estimate_rate(z_clean, draws=params.rate_draws)[0])
        tick("measured the latent's bits")
        bits = rate_nats / LN2
        metrics.update(bits=bits, bits_per_pixel=bits / (ph * pw), bits_per_dim=bits / z_clean[0].numel())
        metrics["seconds"] = time.perf_counter() - started


def _checkpoint_id(store: Any, loaded: Any) -> int | None:
    """The store's id of the checkpoint a LoadedRun came from (matched by step and sha256)."""
    rows = [c for c in store.list_checkpoints(loaded.run.id) if c.step == loaded.checkpoint_step]
    for c in rows:
        if loaded.checkpoint_sha256 and c.sha256 == loaded.checkpoint_sha256:
            return c.id
    return rows[0].id if rows else None


def reconstruct_many(
    reconstructor: Reconstructor,
    paths: Iterable[str | Path],
    params: ReconstructParams,
    *,
    compare: Reconstructor | None = None,
    out_dir: Path | None = None,
    progress: Callable[[int, dict[str, Any]], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    step_progress: Callable[[Path, int, int, str], None] | None = None,
) -> list[dict[str, Any]]:
    """Each path in turn (a bad one gets its error, the others go on); stops between images — or inside
    one, discarding it — once `cancelled()` is true. With `out_dir`, files go there with CLI names.
    `step_progress(path, done, total, what)` is called inside each image (encode, every decoder step, the rate)."""
    results: list[dict[str, Any]] = []
    stems: dict[str, int] = {}
    for i, p in enumerate(paths):
        if cancelled is not None and cancelled():
            break
        p = Path(p)
        kwargs: dict[str, Any] = {"cancelled": cancelled}
        if step_progress is not None:
            step_progress(p, 0, 0, "reading")  # the image's clock starts before it is read
            kwargs["progress"] = lambda done, total, what, p=p: step_progress(p, done, total, what)
        kwargs_b = dict(kwargs)
        if out_dir is not None:
            stem = p.stem
            stems[stem] = stems.get(stem, 0) + 1
            if stems[stem] > 1:
                stem = f"{stem}-{stems[stem]}"
            kwargs.update(out_dir=out_dir, names=cli_names(stem))
            if compare is not None:
                tag = f".{compare.loaded.run.name}-step{compare.loaded.checkpoint_step}"
                kwargs_b.update(out_dir=out_dir, names=cli_names(stem, tag))
        try:
            entry = reconstructor.image(p, params, **kwargs)
            if compare is not None:
                entry["compare"] = compare.image(p, params, **kwargs_b)
        except ReconstructCancelled:
            break
        results.append(entry)
        if progress is not None:
            progress(i + 1, entry)
    return results


# ----------------------------------------------------------------------------------------------
# Video files: the clip model in windows


@dataclass
class VideoReconstruction:
    original: np.ndarray  # (N, H, W, 3) uint8: the frames used, at the model's size
    reconstruction: np.ndarray  # (N, H, W, 3) uint8
    metrics: dict[str, Any]  # frames, psnr_per_frame, psnr (mean over frames), ssim, bits, bits_per_pixel, …

    @property
    def psnr(self) -> float:
        return float(self.metrics["psnr"])

    @property
    def psnr_per_frame(self) -> list[float]:
        return list(self.metrics["psnr_per_frame"])

    @property
    def bits_per_pixel(self) -> float:
        return float(self.metrics["bits_per_pixel"])

    @property
    def bits_per_dim(self) -> float:
        return float(self.metrics["bits_per_dim"])


def reconstruct_video(
    model: UnifiedLatents,
    frames: np.ndarray,
    *,
    decoder_steps: int,
    seed: int = 0,
    sampler: str = "ancestral",
    rate_draws: int = 16,
    progress: Progress | None = None,
) -> VideoReconstruction:
    """Encode → z0 = α0·z + σ0·ε (seeded) → decode, in windows; PSNR per frame and the prior's bits
    (per pixel of the whole clip, per latent dimension)."""
    n = frames.shape[0]
    z_clean = encode_video(model, frames, progress=progress)
    g = torch.Generator().manual_seed(int(seed))
    z0 = model.noisy_latent(z_clean, torch.randn(z_clean.shape, generator=g))
    started = time.perf_counter()
    recon = decode_video(model, z0, steps=decoder_steps, seed=seed + 1, sampler=sampler, progress=progress)[:n]
    decode_seconds = time.perf_counter() - started
    bits = video_rate(model, z_clean, rate_draws) / LN2
    metrics = {
        **VideoMedia().metrics(frames, recon),
        "bits": bits,
        "bits_per_pixel": bits / (n * frames.shape[1] * frames.shape[2]),
        "bits_per_dim": bits / z_clean.numel(),
        "decode_seconds": decode_seconds,
    }
    return VideoReconstruction(original=frames, reconstruction=recon, metrics=metrics)


def reconstruct_clip(
    loaded: Any,
    path: str | Path,
    out_dir: Path,
    *,
    decoder_steps: int | None = None,
    seed: int = 0,
    sampler: str | None = None,
    max_frames: int | None = None,
    names: tuple[str, str] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Reconstruct one video file → an entry shaped as an image's; the frames used and their reconstruction
    are written as MP4s in out_dir (files "input" and "reconstruction")."""
    require_video(loaded)
    cfg = loaded.cfg
    media = VideoMedia()
    clip = media.fit(media.read(path, max_frames=max_frames, resolution=cfg.data.resolution), cfg.data.resolution)
    steps = decoder_steps or cfg.sampling.decoder_steps
    sampler = sampler or cfg.sampling.sampler
    rec = reconstruct_video(loaded.stage1, clip.frames, decoder_steps=steps, seed=seed, sampler=sampler,
                            progress=progress)  # fmt: skip
    stem = Path(path).stem
    original_name, recon_name = names or (f"{stem}.original.mp4", f"{stem}.recon.mp4")
    out_dir = Path(out_dir)
    files = {
        "input": media.write(out_dir / original_name, rec.original, fps=clip.fps),
        "reconstruction": media.write(out_dir / recon_name, rec.reconstruction, fps=clip.fps),
    }
    n, side = rec.original.shape[0], Layout.of(cfg).resolution
    return {
        "input": str(path), "name": Path(path).name, "kind": media.kind, "ok": True, "error": None,
        "notices": clip.notices, "run": loaded.run.id, "run_name": loaded.run.name,
        "checkpoint_step": loaded.checkpoint_step,
        "params": {"decoder_steps": steps, "sampler": sampler, "seed": seed, "max_frames": max_frames},
        "files": files, "metrics": rec.metrics, "frames": n, "fps": clip.fps, "width": side, "height": side,
    }  # fmt: skip


VIDEO_CACHE_FORMAT = 2  # 2: the entry shape shared with images (files / metrics nested)


def cache_key(store: Any, loaded: Any, path: str | Path, params: dict[str, Any]) -> tuple[str, int, str]:
    """(sha256 of the file, the checkpoint's id, the params hash): the store's reconstruction-cache keys, so
    other bytes, another checkpoint or other params miss. The file is checked before it is hashed (a FIFO or
    /dev/zero would never finish)."""
    digest = io.sha256_file(check_file(path))
    checkpoint_id = _checkpoint_id(store, loaded)
    if checkpoint_id is None:
        raise ULError(f"run {loaded.run.name} has no stored checkpoint at step {loaded.checkpoint_step}")
    blob = json.dumps({**params, "media": "video", "format": VIDEO_CACHE_FORMAT}, sort_keys=True)
    return digest, checkpoint_id, hashlib.sha256(blob.encode()).hexdigest()


def reconstruct_cached(
    store: Any,
    loaded: Any,
    path: str | Path,
    params: dict[str, Any],
    *,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The session op's video reconstruction, cached in the store like an image's: a row keyed by (file bytes,
    checkpoint, params) whose files live in runs/<id>/video-cache/; a row whose files are gone is a miss."""
    require_video(loaded)
    digest, checkpoint_id, params_hash = cache_key(store, loaded, path, params)
    hit = store.cache_get(digest, checkpoint_id, params_hash)
    if hit is not None and hit["metrics"]:
        cached = hit["metrics"]
        if all(Path(f).is_file() for f in (cached.get("files") or {"": ""}).values()):
            return {**cached, "cached": True}
    folder = store.run_dir(loaded.run.id) / "video-cache" / f"{digest[:20]}-c{checkpoint_id}-{params_hash[:12]}"
    result = reconstruct_clip(
        loaded, path, folder, decoder_steps=params.get("decoder_steps"), seed=int(params.get("seed") or 0),
        max_frames=params.get("max_frames"), names=("original.mp4", "reconstruction.mp4"), progress=progress,
    )  # fmt: skip
    store.cache_put(digest, checkpoint_id, params_hash, path=result["files"]["reconstruction"], metrics=result)
    return {**result, "cached": False}


# ----------------------------------------------------------------------------------------------
# The flat view


def flat_result(entry: dict[str, Any]) -> dict[str, Any]:
    """An entry (image or video) as the CLI's JSON reports it: one flat record per input, the same keys for
    both kinds (`output` is the reconstruction), plus the mean/std files of K decodes and a video's frames."""
    m, f, p = entry.get("metrics") or {}, entry.get("files") or {}, entry.get("params") or {}
    out = {
        "input": entry["input"], "output": f.get("reconstruction"), "run": entry.get("run_name"),
        "checkpoint_step": entry.get("checkpoint_step"), "psnr": m.get("psnr"), "ssim": m.get("ssim"),
        "bits_per_pixel": m.get("bits_per_pixel"), "bits_per_dim": m.get("bits_per_dim"),
        "decode_seconds": m.get("decode_seconds"), "error": entry.get("error"), "notices": entry.get("notices", []),
    }  # fmt: skip
    if f.get("mean"):
        out.update(mean=f["mean"], std_map=f.get("std_png"), psnr_mean=m.get("psnr_mean"),
                   std_mean=m.get("std_mean"), std_scale=m.get("std_scale"))  # fmt: skip
    if entry.get("kind") == "video":
        out.update(original=f.get("input"), reconstruction=f.get("reconstruction"), frames=m.get("frames"),
                   psnr_per_frame=m.get("psnr_per_frame"), fps=entry.get("fps"), decoder_steps=p.get("decoder_steps"),
                   sampler=p.get("sampler"), seed=p.get("seed"))  # fmt: skip
    return out
