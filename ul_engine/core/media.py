"""One robust image reader, shared by training and the app's reconstruct page.

Why one reader: a user's folder holds whatever cameras, scanners and editors wrote (16-bit PNGs,
CMYK JPEGs, float TIFFs, animated GIFs, half-copied files). Every caller gets the same sRGB uint8
(H, W, 3) array, the same one-line `DataError` for a file it cannot use, and a list of notices
saying what was converted, so a training run and the GUI never disagree about an image.

Choices, stated once:
- Transparency is composited onto **white** (what browsers and viewers show for a transparent
  logo or scan); a notice says so.
- 16-bit samples are mapped to 8 bits by round(v / 257), which maps 0 → 0 and 65535 → 255 exactly.
- Float images are taken as [0, 1] when their values lie there, otherwise min-max scaled (noticed).
- Embedded ICC profiles other than sRGB are converted to sRGB (CMYK always needs this).
- EXIF orientation is applied, so photos come out the way viewers show them.
- Only the first frame of an animated image (or the first page of a TIFF) is used.

This module is torch-free (the GUI imports it); cv2 is imported only where it is needed.
"""

from __future__ import annotations

import io
import re
import struct
import threading
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageCms, ImageFile, UnidentifiedImageError

from ul_engine.core.errors import DataError
from ul_engine.core.user_paths import check_file

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mov", ".avi", ".mkv")


def is_video_path(path: str | Path) -> bool:
    """The one image-or-video decision for a user's file: by its extension, before anything reads it."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS

DEFAULT_MAX_PIXELS = 64_000_000
BACKGROUND = 255  # transparent pixels become white

_TRUNCATION_LOCK = threading.Lock()
_ORIENTATION_TAG = 0x0112


@dataclass
class LoadedImage:
    """A decoded image: `array` is sRGB uint8 (H, W, 3); `notices` say what was converted and why."""

    array: np.ndarray
    notices: list[str] = field(default_factory=list)
    source_mode: str = ""  # format and colour mode as stored, e.g. "PNG I;16", "JPEG CMYK", "TIFF RGB;16"


# ----------------------------------------------------------------------------------------------
# Public entry points


def probe_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """(width, height) from the header only; raises DataError for anything load_image_rgb would refuse
    before decoding (missing, empty, not an image, decompression bomb). Cheap enough to scan folders."""
    p = _check_path(path)
    try:
        return _probe(p, max_pixels)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{p}: cannot read the header ({_reason(exc)})") from None


def load_image_rgb(
    path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS, min_size: int | None = None
) -> LoadedImage:
    """Decode `path` to sRGB uint8 (H, W, 3). Raises DataError (naming the file) for anything unusable.

    `max_pixels` is checked against the header before any pixel is decoded. `min_size` lets JPEGs
    decode at a reduced scale (1/2, 1/4, 1/8) as long as both sides stay >= min_size: training at
    64×64 from 24-megapixel photos is then several times faster, with no visible difference after
    the area downscale.
    """
    p = _check_path(path)
    try:
        return _load(p, max_pixels, min_size)
    except DataError:
        raise
    except MemoryError:
        raise DataError(f"{p}: not enough memory to decode this image") from None
    except Exception as exc:  # PIL, OS and codec errors all become one actionable line
        raise DataError(f"{p}: cannot decode ({_reason(exc)})") from None


def to_model_range(arr: np.ndarray) -> np.ndarray:
    """uint8 (..., H, W, 3) → float32 (..., 3, H, W) in [-1, 1], the range the model sees."""
    x = np.asarray(arr, dtype=np.float32) * np.float32(1 / 127.5) - np.float32(1.0)
    return np.ascontiguousarray(np.moveaxis(x, -1, -3))


def from_model_range(x: Any) -> np.ndarray:
    """float (..., 3, H, W) in [-1, 1] (numpy array or torch tensor) → uint8 (..., H, W, 3).

    Values outside [-1, 1] are clipped (samplers overshoot); rounding, not truncation, so that
    to_model_range → from_model_range is the identity on uint8.
    """
    if hasattr(x, "detach"):  # a torch tensor, without importing torch here
        x = x.detach().float().cpu().numpy()
    x = np.asarray(x, dtype=np.float32)
    x = np.clip(np.rint((x + 1.0) * 127.5), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.moveaxis(x, -3, -1))


def fit_square(
    arr: np.ndarray,
    resolution: int,
    crop: Literal["center", "random"] = "center",
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Resize so the shorter side is `resolution`, then crop a square: uint8 (resolution, resolution, 3).

    INTER_AREA when shrinking (no aliasing), INTER_CUBIC when enlarging. A random crop needs an
    explicit `rng` so that every crop is reproducible from the caller's seeds.
    """
    import cv2  # lazy: OpenCV costs ~0.1 s to import and only 16-bit/float TIFFs and resizing need it

    if crop not in ("center", "random"):
        raise ValueError(f"crop must be 'center' or 'random', got {crop!r}")
    if crop == "random" and rng is None:
        raise ValueError("a random crop needs an rng (reproducibility)")
    h, w = arr.shape[:2]
    scale = resolution / min(h, w)
    if h <= w:
        new_h, new_w = resolution, max(resolution, round(w * scale))
    else:
        new_h, new_w = max(resolution, round(h * scale)), resolution
    if (new_h, new_w) != (h, w):
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
        arr = cv2.resize(np.ascontiguousarray(arr), (new_w, new_h), interpolation=interp)
    if crop == "center":
        top, left = (new_h - resolution) // 2, (new_w - resolution) // 2
    else:
        assert rng is not None
        top = int(rng.integers(0, new_h - resolution + 1))
        left = int(rng.integers(0, new_w - resolution + 1))
    return np.ascontiguousarray(arr[top : top + resolution, left : left + resolution])


# ----------------------------------------------------------------------------------------------
# Path and header checks


def _check_path(path: str | Path) -> Path:
    """A regular, non-empty file, checked before anything opens it (a FIFO or /dev/zero would hang a read)."""
    return check_file(path)


def _open(p: Path) -> ImageFile.ImageFile:
    """Image.open reads only the header. Pillow's own bomb check (at 2× MAX_IMAGE_PIXELS) is kept
    as a second line; its warning is silenced because we apply our own, stricter limit."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            return Image.open(p)
        except Image.DecompressionBombError as exc:
            m = re.search(r"\((\d+) pixels\)", str(exc))
            claimed = f"{int(m.group(1)):,} pixels" if m else "too many pixels"
            raise DataError(f"{p}: header claims {claimed}; refused as a possible decompression bomb") from None
        except PermissionError:
            raise DataError(f"{p}: permission denied") from None


def _probe(p: Path, max_pixels: int) -> tuple[int, int]:
    try:
        im = _open(p)
    except UnidentifiedImageError:
        if _is_tiff(p):
            return _check_size(p, _tiff_header_size(p), max_pixels)
        raise DataError(f"{p}: not an image file (unrecognised format)") from None
    with im:
        return _check_size(p, im.size, max_pixels)


def _check_size(p: Path, size: tuple[int, int], max_pixels: int) -> tuple[int, int]:
    w, h = size
    if w <= 0 or h <= 0:
        raise DataError(f"{p}: header claims an empty image ({w}×{h})")
    if w * h > max_pixels:
        raise DataError(
            f"{p}: header claims {w}×{h} = {w * h:,} pixels, above the limit of {max_pixels:,}; "
            "refused as a possible decompression bomb"
        )
    return w, h


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "truncated" in text.lower():
        return "file is truncated or incomplete"
    return text


def _is_tiff(p: Path) -> bool:
    with p.open("rb") as f:
        return f.read(4) in (b"II*\x00", b"MM\x00*")


def _tiff_header_size(p: Path) -> tuple[int, int]:
    """Width and height from a classic TIFF's first IFD, for TIFFs Pillow cannot decode (float RGB):
    the bomb check must still come before OpenCV allocates anything."""
    with p.open("rb") as f:
        head = f.read(8)
        endian = "<" if head[:2] == b"II" else ">"
        (ifd,) = struct.unpack(endian + "I", head[4:8])
        f.seek(ifd)
        (count,) = struct.unpack(endian + "H", f.read(2))
        entries = f.read(12 * count)
    dims: dict[int, int] = {}
    for i in range(count):
        tag, typ, _n = struct.unpack(endian + "HHI", entries[12 * i : 12 * i + 8])
        if tag in (256, 257):
            fmt = "H" if typ == 3 else "I"
            dims[tag] = struct.unpack(endian + fmt, entries[12 * i + 8 : 12 * i + 8 + struct.calcsize(fmt)])[0]
    if 256 not in dims or 257 not in dims:
        raise DataError(f"{p}: TIFF header has no image size")
    return dims[256], dims[257]


# ----------------------------------------------------------------------------------------------
# Decoding


def _load(p: Path, max_pixels: int, min_size: int | None) -> LoadedImage:
    try:
        im = _open(p)
    except UnidentifiedImageError:
        if _is_tiff(p):
            return _load_with_cv2(p, max_pixels)
        raise DataError(f"{p}: not an image file (unrecognised format)") from None
    with im:
        _check_size(p, im.size, max_pixels)
        notices: list[str] = []
        frames = getattr(im, "n_frames", 1)
        if frames > 1:
            what = "multi-page: first of {} pages used" if im.format == "TIFF" else "animated: first of {} frames used"
            notices.append(what.format(frames))
            im.seek(0)
        if min_size and im.format == "JPEG":
            im.draft(None, (min_size, min_size))
        source_mode = f"{im.format} {im.mode}"
        rawmode = _tile_rawmode(im)
        _load_strict(im)
        orientation = _orientation(im)
        if ";16" in rawmode and im.mode in ("RGB", "RGBA", "LA"):
            # Pillow keeps only the high byte of 16-bit colour; OpenCV gives the full samples.
            source_mode = f"{im.format} {im.mode};16"
            notices.append("16-bit samples mapped to 8 bits (v / 257)")
            rgb = _cv2_array_to_rgb(_cv2_decode(p), notices)
        else:
            rgb = _pil_to_rgb(im, notices)
    rgb = _apply_orientation(rgb, orientation, notices)
    return LoadedImage(np.ascontiguousarray(rgb), notices, source_mode)


def _load_strict(im: Image.Image) -> None:
    """Decode all pixels, refusing truncated data even if some other code enabled
    LOAD_TRUNCATED_IMAGES (which would silently return a half-grey image)."""
    with _TRUNCATION_LOCK:
        saved = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            im.load()
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = saved


def _tile_rawmode(im: ImageFile.ImageFile) -> str:
    if not im.tile:
        return ""
    args = im.tile[0].args if hasattr(im.tile[0], "args") else im.tile[0][-1]
    raw = args[0] if isinstance(args, tuple) and args else args
    return raw if isinstance(raw, str) else ""


def _orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(_ORIENTATION_TAG, 1))
    except Exception:  # a broken EXIF block must not cost the image
        return 1


def _apply_orientation(rgb: np.ndarray, orientation: int, notices: list[str]) -> np.ndarray:
    """EXIF orientation 2–8, the same transforms as PIL.ImageOps.exif_transpose."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
        8: lambda a: np.rot90(a, 1),
    }
    if orientation not in ops:
        return rgb
    notices.append(f"EXIF orientation {orientation} applied")
    return ops[orientation](rgb)


def _pil_to_rgb(im: Image.Image, notices: list[str]) -> np.ndarray:
    mode = im.mode
    name = getattr(im, "filename", "") or "image"  # a converted copy has no file name
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        return _gray(_int_to_u8(np.asarray(im), mode, notices))
    if mode == "F":
        return _gray(_float_to_u8(np.asarray(im, dtype=np.float32), notices))
    if mode == "1":
        return _gray(np.asarray(im.convert("L")))
    if mode == "L":
        return _gray(np.asarray(im))
    im = _to_srgb(im, notices)
    if mode == "CMYK":
        notices.append("CMYK converted to RGB")
    if im.mode == "P":
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
    if im.mode in ("LA", "La", "PA", "RGBa", "RGBA"):
        return _composite(np.asarray(im.convert("RGBA")), notices)
    if im.mode != "RGB":
        try:
            im = im.convert("RGB")
        except ValueError:
            raise DataError(f"{name}: unsupported colour mode {mode}") from None
    return np.asarray(im)


def _gray(a: np.ndarray) -> np.ndarray:
    return np.repeat(a[..., None], 3, axis=-1)


def _int_to_u8(a: np.ndarray, mode: str, notices: list[str]) -> np.ndarray:
    a = a.astype(np.int64)
    lo, hi = int(a.min()), int(a.max())
    if lo >= 0 and hi <= 65535:
        notices.append("16-bit samples mapped to 8 bits (v / 257)")
        return np.rint(a / 257.0).astype(np.uint8)
    notices.append(f"{mode} samples scaled from [{lo}, {hi}] to [0, 255]")
    return np.rint((a - lo) * (255.0 / max(hi - lo, 1))).astype(np.uint8)


def _float_to_u8(a: np.ndarray, notices: list[str]) -> np.ndarray:
    if not np.isfinite(a).all():
        notices.append("non-finite float values set to 0")
        a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(a.min()), float(a.max())
    if lo >= 0.0 and hi <= 1.0:
        notices.append("float samples taken as [0, 1]")
        return np.rint(a * 255.0).astype(np.uint8)
    if hi - lo < 1e-12:
        notices.append(f"constant float image ({lo:.4g}) clipped to [0, 1]")
        return np.full(a.shape, round(min(max(lo, 0.0), 1.0) * 255), np.uint8)
    notices.append(f"float samples scaled from [{lo:.4g}, {hi:.4g}] to [0, 255]")
    return np.rint((a - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _composite(rgba: np.ndarray, notices: list[str]) -> np.ndarray:
    alpha = rgba[..., 3:4]
    if alpha.min() == 255:
        return np.ascontiguousarray(rgba[..., :3])
    notices.append("transparency composited onto white")
    a = alpha.astype(np.float32) * np.float32(1 / 255)
    out = rgba[..., :3].astype(np.float32) * a + np.float32(BACKGROUND) * (1 - a)
    return np.rint(out).astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# Colour management


@lru_cache(maxsize=16)
def _srgb_transform(icc: bytes, in_mode: str, out_mode: str) -> tuple[ImageCms.ImageCmsTransform, str] | None:
    """Built once per distinct profile: building a transform costs milliseconds, applying it little."""
    src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    name = (ImageCms.getProfileDescription(src) or "").strip()
    if "srgb" in name.lower().replace(" ", "") and in_mode != "CMYK":
        return None
    dst = ImageCms.createProfile("sRGB")
    transform = ImageCms.buildTransform(src, dst, in_mode, out_mode, renderingIntent=ImageCms.Intent.PERCEPTUAL)
    return transform, name or "unnamed"


def _to_srgb(im: Image.Image, notices: list[str]) -> Image.Image:
    icc = im.info.get("icc_profile")
    if not icc or im.mode not in ("RGB", "RGBA", "CMYK"):
        return im
    out_mode = "RGBA" if im.mode == "RGBA" else "RGB"
    try:
        built = _srgb_transform(bytes(icc), im.mode, out_mode)
        if built is None:
            return im
        transform, name = built
        converted = ImageCms.applyTransform(im, transform)
    except Exception:
        notices.append("embedded ICC profile unreadable; colours used as stored")
        return im
    if converted is None:
        return im
    notices.append(f"colours converted from embedded ICC profile '{name}' to sRGB")
    return converted


# ----------------------------------------------------------------------------------------------
# OpenCV path: 16-bit colour and float colour TIFFs, which Pillow reduces or cannot open


def _cv2_decode(p: Path) -> np.ndarray:
    import cv2  # lazy: OpenCV costs ~0.1 s to import and only 16-bit/float TIFFs and resizing need it

    data = np.fromfile(p, dtype=np.uint8)
    arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise DataError(f"{p}: cannot decode (unsupported or corrupt image data)")
    return arr


def _load_with_cv2(p: Path, max_pixels: int) -> LoadedImage:
    _check_size(p, _tiff_header_size(p), max_pixels)
    arr = _cv2_decode(p)
    notices: list[str] = []
    rgb = _cv2_array_to_rgb(arr, notices)
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    return LoadedImage(np.ascontiguousarray(rgb), notices, f"TIFF {arr.dtype}×{channels}")


def _cv2_array_to_rgb(arr: np.ndarray, notices: list[str]) -> np.ndarray:
    """OpenCV's BGR(A)/gray array of any depth → RGB uint8."""
    if arr.ndim == 2:
        arr = arr[..., None]
    channels = arr.shape[2]
    if arr.dtype == np.uint8:
        u8 = arr
    elif arr.dtype == np.uint16:
        u8 = np.rint(arr / 257.0).astype(np.uint8)
    elif arr.dtype.kind == "f":
        u8 = _float_to_u8(arr.astype(np.float32), notices)
    else:
        u8 = _int_to_u8(arr, str(arr.dtype), notices)
    if channels == 1:
        return _gray(u8[..., 0])
    if channels == 2:  # gray + alpha
        return _composite(np.concatenate([_gray(u8[..., 0]), u8[..., 1:2]], axis=-1), notices)
    rgb = u8[..., 2::-1]
    if channels >= 4:
        return _composite(np.concatenate([rgb, u8[..., 3:4]], axis=-1), notices)
    return np.ascontiguousarray(rgb)
