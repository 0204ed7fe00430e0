"""Image grids and PNG writing for previews, samples and docs (pillow; no Qt)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

from ul_engine.core import io


def tensor_to_uint8(x: object) -> np.ndarray:
    """(B,3,H,W) in [-1,1] (torch or numpy) → (B,H,W,3) uint8, clipped and rounded."""
    arr = x.detach().float().cpu().numpy() if hasattr(x, "detach") else np.asarray(x, dtype=np.float32)
    arr = np.clip((arr + 1.0) * 127.5, 0, 255).round().astype(np.uint8)
    return arr.transpose(0, 2, 3, 1)


def grid(images: np.ndarray, cols: int | None = None, pad: int = 2, fill: int = 255) -> np.ndarray:
    """(N,H,W,3) uint8 → one (rows·H, cols·W, 3) image with `pad` pixels between tiles."""
    n, h, w, c = images.shape
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    out = np.full((rows * h + (rows - 1) * pad, cols * w + (cols - 1) * pad, c), fill, np.uint8)
    for i, img in enumerate(images):
        r, k = divmod(i, cols)
        out[r * (h + pad) : r * (h + pad) + h, k * (w + pad) : k * (w + pad) + w] = img
    return out


def save_png(path: Path, image: np.ndarray, text: dict[str, str] | None = None, scale: int = 1) -> None:
    """Write an RGB uint8 image atomically, with optional PNG text chunks (run, seed, parameters)."""
    img = Image.fromarray(image)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    info = PngImagePlugin.PngInfo()
    for k, v in (text or {}).items():
        info.add_text(k, v)
    io.atomic_write_bytes(Path(path), lambda f: img.save(f, format="PNG", pnginfo=info))
