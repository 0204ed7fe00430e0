"""Data sources, the one image reader, and seeded batches.

The readers, shapes and folder sources are torch-free, so the GUI can import
`ul_engine.core.media` without pulling in torch; the batch loader (torch) is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ul_engine.core.image_folder import ImageFolderSource, ScanReport
from ul_engine.core.media import (
    IMAGE_EXTENSIONS,
    LoadedImage,
    fit_square,
    from_model_range,
    load_image_rgb,
    probe_image,
    to_model_range,
)
from ul_engine.data.shapes import SHAPE_KINDS, ShapesSource, render_shapes

if TYPE_CHECKING:
    from ul_engine.data.loader import BatchStream, fixed_validation_batch, make_source

_LAZY = {"BatchStream", "fixed_validation_batch", "make_source"}

__all__ = [
    "IMAGE_EXTENSIONS",
    "SHAPE_KINDS",
    "BatchStream",
    "ImageFolderSource",
    "LoadedImage",
    "ScanReport",
    "ShapesSource",
    "fit_square",
    "fixed_validation_batch",
    "from_model_range",
    "load_image_rgb",
    "make_source",
    "probe_image",
    "render_shapes",
    "to_model_range",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from ul_engine.data import loader  # why: the loader imports torch; the rest of `data` is torch-free

        return getattr(loader, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
