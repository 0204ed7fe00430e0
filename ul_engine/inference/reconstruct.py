"""Reconstruct images one at a time through a loaded run, cached in the store; what `ul reconstruct`, the
session worker and the app's Reconstruct page share.

Per image: read (the one robust reader) → fit (downscale above MAX_RECONSTRUCT_SIDE, with a notice) → pad
to the downsampling multiple by edge replication → encode → the prior's rate → K decodes with seeds →
crop back → the first decode is "the" reconstruction; with K ≥ 2 also their mean and a per-pixel standard
deviation map (what the decoder invents rather than reads from the latent) → PSNR/SSIM (torchmetrics) on
the cropped image.

No tiling: every net is convolutional, and the transformers (prior, decoder) build their 2-D sin/cos
position embeddings for whatever grid they get, so any multiple of the downsampling runs as one piece at
the image's own resolution. Memory grows with the pixel count; the bound is the side limit of
`core.reconstruction.MAX_RECONSTRUCT_SIDE` (2048, images above it are downscaled with a notice) and the reader's
64-megapixel header check (larger claims are refused before any pixel is decoded).

The cache is keyed by (sha256 of the file's bytes, checkpoint id, params hash): the same bytes under
another name are a hit; another checkpoint or another decoder setting is a miss.

This module is torch-free at import: the GUI uses its keys, cache lookups, colour maps and exports; the
torch work imports the pipeline inside the functions that need it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ul_engine.core import io
from ul_engine.core.errors import ULError
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
from ul_engine.eval.metrics import SSIM_WINDOW

# ----------------------------------------------------------------------------------------------
# The torch part


def _finite(v: float) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


def _fidelity(reference: np.ndarray, estimate: np.ndarray) -> tuple[float | None, float | None]:
    """PSNR (dB) and SSIM of two (H, W, 3) uint8 images, via the pipeline's torchmetrics functions."""
    import torch

    from ul_engine.inference.pipeline import psnr_ssim

    def to_model(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(a, dtype=np.uint8)).permute(2, 0, 1)[None].float().div(127.5).sub(1.0)

    psnrs, ssims = psnr_ssim(to_model(reference), to_model(estimate))
    return _finite(psnrs[0]), _finite(ssims[0])


ProgressFn = Callable[[int, int, str], None]  # (done, total, what)


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
            "input": str(path), "name": path.name, "label": self.label, "ok": False, "error": None,
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
        progress: ProgressFn | None = None,
        cancelled: Callable[[], bool] | None = None,
        partial: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """One image → a result entry; a bad input gives `ok: false` and a one-line `error` (never raises,
        except ReconstructCancelled). Without `out_dir` the files go to the store's cache folder.

        Order: encode, the K decodes, the files and PSNR/SSIM — then `partial(entry)` (the images are ready,
        the bits are still None) — then the prior's rate, which at 256 px costs about as much as the decodes."""
        from ul_engine.core.media import load_image_rgb

        path = Path(path)
        entry = self._base_entry(path, params)
        try:
            try:
                sha = file_sha256(path)  # DataError (one line) for a missing, special or empty file
            except PermissionError:
                load_image_rgb(path)  # raises the reader's own message
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
        progress: ProgressFn | None,
        cancelled: Callable[[], bool] | None,
        partial: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        import torch

        from ul_engine.core.imaging import save_png, tensor_to_uint8
        from ul_engine.core.media import load_image_rgb
        from ul_engine.inference.commands import _fit_for_reconstruction
        from ul_engine.inference.pipeline import image_to_model_input
        from ul_engine.model import LN2

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

        loaded_image = load_image_rgb(path)
        notices = list(loaded_image.notices)
        src_h, src_w = loaded_image.array.shape[:2]
        image = _fit_for_reconstruction(loaded_image.array, notices)
        h, w = image.shape[:2]
        # The deepest feature maps must stay at least 2×2 (a 1×1 map has one value per normalisation group):
        # sides are padded to ≥ 2 × the downsampling, then to its multiple, both by edge replication.
        min_side = getattr(self.model, "input_min_side", None) or 2 * self.multiple
        padded = np.array(image, dtype=np.uint8)  # a writable copy
        if h < min_side or w < min_side:
            padded = np.pad(padded, ((0, max(0, min_side - h)), (0, max(0, min_side - w)), (0, 0)), mode="edge")
        x, _ = image_to_model_input(padded, self.multiple)
        ph, pw = x.shape[-2:]
        if (ph, pw) != (h, w):
            notices.append(
                f"padded from {w}×{h} to {pw}×{ph} by repeating the edge pixels (the model needs sides that are "
                f"multiples of {self.multiple} and at least {min_side}); cropped back after decoding"
            )
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
                noise = torch.randn(z_clean.shape[1:], generator=torch.Generator().manual_seed(seed_k))
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
        psnr, ssim = _fidelity(image, recon)
        metrics: dict[str, Any] = {
            "psnr": psnr,
            "ssim": ssim,
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
            psnr_mean, ssim_mean = _fidelity(image, mean_u8)
            metrics.update(
                psnr_mean=psnr_mean,
                ssim_mean=ssim_mean,
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


def compare_image(
    reconstructors: Sequence[Reconstructor], path: str | Path, params: ReconstructParams, **kwargs: Any
) -> list[dict[str, Any]]:
    """The same image through several runs/checkpoints (A, B, …), with the same parameters and seeds."""
    return [r.image(path, params, **kwargs) for r in reconstructors]


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
