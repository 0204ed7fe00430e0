"""The reconstruction cache's keys, limits and exports, torch-free: the GUI and the CLI share them.

The cache is keyed by (sha256 of the file's bytes, checkpoint id, params hash): the same bytes under another name are
a hit; another checkpoint or another decoder setting is a miss. The torch work is `ul_engine.inference.reconstruct`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from io import StringIO
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ul_engine.core import io
from ul_engine.core.errors import ULError
from ul_engine.core.media import IMAGE_EXTENSIONS
from ul_engine.core.samplers import SAMPLERS
from ul_engine.core.user_paths import check_file

if TYPE_CHECKING:  # the store imports the core at run time; the core names its types only
    from ul_engine.store import Store

# Bump when anything that changes the files or metrics of a reconstruction changes (a new params hash
# then misses every old cache entry).
RECONSTRUCT_FORMAT = 3  # 2: tiled (demo) models decode blended windows; 3: SSIM as published
MAX_RECONSTRUCT_SIDE = 2048
"""Images with a longer side are downscaled to it (with a notice) before encoding; part of every params hash."""
MAX_SAMPLES = 64

# File names inside a cache folder, and beside a CLI output (prefix "<stem>.").
CACHE_NAMES = {
    "input": "input.png",
    "reconstruction": "reconstruction.png",
    "mean": "mean.png",
    "std": "std.npy",
    "std_png": "std.png",
}


def cli_names(stem: str, suffix: str = "") -> dict[str, str]:
    """`ul reconstruct` file names: <stem>.recon.png as before, the mean and std map beside it."""
    return {
        "input": "",  # the CLI does not copy inputs
        "reconstruction": f"{stem}.recon{suffix}.png",
        "mean": f"{stem}.mean{suffix}.png",
        "std": "",
        "std_png": f"{stem}.std{suffix}.png",
    }


class ReconstructCancelled(ULError):
    """The user cancelled; nothing of the cancelled image is cached."""


# ----------------------------------------------------------------------------------------------
# Keys


@dataclass(frozen=True)
class ReconstructParams:
    """Everything besides the image and the checkpoint that changes a reconstruction."""

    decoder_steps: int
    sampler: str = "ancestral"
    seed: int = 0
    samples: int = 1  # K decodes with seeds seed, seed+2, …; K ≥ 2 adds the mean and the std map
    rate_draws: int = 16

    def __post_init__(self) -> None:
        if not 1 <= int(self.decoder_steps) <= 4096:
            raise ULError(f"decoder steps must be between 1 and 4096, got {self.decoder_steps}")
        if self.sampler not in SAMPLERS:
            raise ULError(f"unknown sampler {self.sampler!r}; choose from {', '.join(SAMPLERS)}")
        if not 1 <= int(self.samples) <= MAX_SAMPLES:
            raise ULError(f"samples must be between 1 and {MAX_SAMPLES}, got {self.samples}")
        if not 1 <= int(self.rate_draws) <= 1024:
            raise ULError(f"rate draws must be between 1 and 1024, got {self.rate_draws}")
        if not 0 <= int(self.seed) < 2**62:
            raise ULError(f"the seed must be a non-negative integer, got {self.seed}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ReconstructParams:
        known = {k: d[k] for k in ("decoder_steps", "sampler", "seed", "samples", "rate_draws") if k in d}
        return cls(**known)

    def hash(self) -> str:
        """sha256 of the parameters, the output format and the side limit (the cache's third key)."""
        key = {**self.as_dict(), "format": RECONSTRUCT_FORMAT, "max_side": MAX_RECONSTRUCT_SIDE}
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def file_sha256(path: str | Path) -> str:
    """The cache key's sha256; the path is checked first (a FIFO or /dev/zero would never finish hashing)."""
    return io.sha256_file(check_file(path))


def cache_folder(home: Path, input_sha256: str, checkpoint_id: int, params_hash: str) -> Path:
    return Path(home) / "cache" / "reconstructions" / f"{input_sha256[:20]}-c{checkpoint_id}-{params_hash[:12]}"


def cached_entry(
    store: Store, input_sha256: str, checkpoint_id: int, params: ReconstructParams, input_path: str | Path
) -> dict[str, Any] | None:
    """The cached result for these keys (files resolved and checked), or None. Torch-free: the GUI's path."""
    hit = store.cache_get(input_sha256, checkpoint_id, params.hash())
    if hit is None or not isinstance(hit.get("metrics"), dict):
        return None
    entry = json.loads(json.dumps(hit["metrics"]))
    folder = Path(hit["path"]).parent
    files = {role: str(folder / name) for role, name in (entry.get("files") or {}).items() if name}
    if not all(Path(f).is_file() for f in files.values()):
        return None
    entry.update(files=files, input=str(input_path), name=Path(input_path).name, cached=True)
    return entry


# ----------------------------------------------------------------------------------------------
# Inputs


def iter_inputs(
    inputs: Iterable[str | Path], extensions: Sequence[str] | None = None, cancelled: Callable[[], bool] | None = None
) -> Iterator[Path]:
    """Files as given; folders walked recursively (sorted per folder) for image files, lazily, so a folder
    of thousands of files can report progress and be cancelled. Torch-free."""
    if extensions is None:
        extensions = IMAGE_EXTENSIONS
    exts = tuple(e.lower() for e in extensions)
    for item in inputs:
        p = Path(item)
        if not p.is_dir():
            yield p
            continue
        for root, dirs, names in os.walk(p):
            dirs.sort()
            for name in sorted(names):
                if cancelled is not None and cancelled():
                    return
                if name.lower().endswith(exts):
                    f = Path(root) / name
                    if f.is_file() or f.is_symlink():
                        yield f


# ----------------------------------------------------------------------------------------------
# Colour maps, strips and CSV (numpy + pillow; shared by the CLI and the app's export)

# Control points of matplotlib's "inferno" (perceptually uniform, dark = 0), interpolated linearly.
_INFERNO = np.array(
    [
        [0, 0, 4], [22, 11, 57], [66, 10, 104], [106, 23, 110], [147, 38, 103], [188, 55, 84],
        [221, 81, 58], [243, 120, 25], [252, 165, 10], [246, 215, 70], [252, 255, 164],
    ],
    dtype=np.float32,
)  # fmt: skip


def colormap(values: np.ndarray, vmax: float, vmin: float = 0.0) -> np.ndarray:
    """(H, W) float → (H, W, 3) uint8 with the inferno colour map over [vmin, vmax] (clipped)."""
    span = max(float(vmax) - float(vmin), 1e-12)
    t = np.clip((np.asarray(values, dtype=np.float32) - vmin) / span, 0.0, 1.0) * (len(_INFERNO) - 1)
    lo = np.floor(t).astype(np.int64)
    hi = np.minimum(lo + 1, len(_INFERNO) - 1)
    frac = (t - lo)[..., None]
    rgb = _INFERNO[lo] * (1 - frac) + _INFERNO[hi] * frac
    return np.rint(rgb).astype(np.uint8)


def colormap_lut(n: int = 256) -> np.ndarray:
    """(n, 3) uint8: the colour map's scale, for colour bars."""
    return colormap(np.linspace(0.0, 1.0, n, dtype=np.float32), 1.0)


def abs_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean absolute difference over RGB, in 0–255 pixel levels: (H, W) float32."""
    return np.abs(a.astype(np.float32) - b.astype(np.float32)).mean(axis=-1)


def heat_scale(values: np.ndarray) -> float:
    """The colour scale's top: the 99.5th percentile (one hot pixel must not wash the map out), at least 1."""
    if values.size == 0:
        return 1.0
    return max(1.0, float(np.percentile(values, 99.5)))


def comparison_strip(panels: Sequence[tuple[str, np.ndarray]], pad: int = 6, min_height: int = 96) -> np.ndarray:
    """Labelled panels side by side on white (RGB uint8); small images are enlarged with nearest neighbours."""
    h = max(p.shape[0] for _, p in panels)
    scale = max(1, math.ceil(min_height / max(h, 1)))
    tiles = []
    for label, arr in panels:
        img = Image.fromarray(np.ascontiguousarray(arr))
        if scale > 1:
            img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
        tiles.append((label, img))
    label_h = 18
    width = sum(t.width for _, t in tiles) + pad * (len(tiles) + 1)
    height = max(t.height for _, t in tiles) + label_h + 2 * pad
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    x = pad
    for label, tile in tiles:
        draw.text((x, pad // 2), label, fill=(20, 20, 20), font=font)
        canvas.paste(tile, (x, pad + label_h))
        x += tile.width + pad
    return np.asarray(canvas)


def entry_strip(entry: dict[str, Any], compare: dict[str, Any] | None = None) -> np.ndarray:
    """The comparison strip of one result: input | reconstruction | |difference| [| B | |A − B|] [| mean | std]."""
    def read(path: str) -> np.ndarray:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))

    files = entry["files"]
    original = read(files["input"])
    recon = read(files["reconstruction"])
    diff = abs_difference(original, recon)
    tag = entry.get("label") or "A"
    panels = [
        ("input", original),
        (f"{tag}: reconstruction", recon),
        (f"|input - {tag}|", colormap(diff, heat_scale(diff))),
    ]
    if compare is not None and compare.get("ok"):
        other = read(compare["files"]["reconstruction"])
        ab = abs_difference(recon, other)
        panels += [(f"{compare.get('label') or 'B'}: reconstruction", other), ("|A - B|", colormap(ab, heat_scale(ab)))]
    if files.get("mean") and files.get("std"):
        std = np.load(files["std"], allow_pickle=False)
        panels += [("mean of K", read(files["mean"])), ("std of K", colormap(std, heat_scale(std)))]
    return comparison_strip(panels)


CSV_FIELDS = (
    "file", "model", "run", "checkpoint_step", "width", "height", "decoder_steps", "sampler", "seed", "samples",
    "psnr_db", "ssim", "bits", "bits_per_pixel", "bits_per_dim", "decode_seconds", "psnr_mean_db", "ssim_mean",
    "std_mean", "cached", "error", "notices",
)  # fmt: skip


def csv_row(entry: dict[str, Any], model: str = "A") -> dict[str, Any]:
    m = entry.get("metrics") or {}
    p = entry.get("params") or {}
    return {
        "file": entry.get("input", ""), "model": model, "run": entry.get("run_name", ""),
        "checkpoint_step": entry.get("checkpoint_step", ""), "width": entry.get("width", ""),
        "height": entry.get("height", ""), "decoder_steps": p.get("decoder_steps", ""),
        "sampler": p.get("sampler", ""), "seed": p.get("seed", ""), "samples": p.get("samples", ""),
        "psnr_db": _fmt(m.get("psnr")), "ssim": _fmt(m.get("ssim")), "bits": _fmt(m.get("bits")),
        "bits_per_pixel": _fmt(m.get("bits_per_pixel")), "bits_per_dim": _fmt(m.get("bits_per_dim")),
        "decode_seconds": _fmt(m.get("decode_seconds")), "psnr_mean_db": _fmt(m.get("psnr_mean")),
        "ssim_mean": _fmt(m.get("ssim_mean")), "std_mean": _fmt(m.get("std_mean")),
        "cached": int(bool(entry.get("cached"))), "error": entry.get("error") or "",
        "notices": "; ".join(entry.get("notices") or []),
    }  # fmt: skip


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def write_metrics_csv(path: Path, rows: Iterable[dict[str, Any]]) -> Path:
    """One row per (file, model); `rows` are csv_row() dicts. Written atomically."""
    buf = StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    data = buf.getvalue().encode()
    io.atomic_write_bytes(Path(path), lambda f: f.write(data))
    return Path(path)
