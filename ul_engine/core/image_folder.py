"""A folder of the user's own images as a training source, tolerant of the odd bad file.

Why lazy validation: opening every file of a 100 000-image folder before step 1 would cost
minutes, and one corrupt JPEG must not end a day-long run. Files are checked when first served;
a file that fails is recorded in `skipped` (path → reason) and the next readable file is served
in its place. `scan()` gives the counts up front, from headers only, for the CLI and the app.

With `class_subfolders`, the label is the image's top-level subfolder (sorted names, as
torchvision's ImageFolder does). Files lying directly in the root folder have no class: they are
left out (counted in `unlabelled`) rather than given a made-up one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from ul_engine.core.errors import DataError
from ul_engine.core.media import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, fit_square, load_image_rgb, probe_image
from ul_engine.core.user_paths import check_folder


@dataclass
class ScanReport:
    """Result of a header-only pass: how many files look readable, and why the others do not."""

    readable: int
    skipped: dict[str, str] = field(default_factory=dict)


class ImageFolderSource:
    """Images found recursively under `path` (sorted, so the order is the same on every machine),
    served as uint8 (resolution, resolution, 3) with an int label (0 unless class_subfolders)."""

    def __init__(
        self,
        path: str | Path,
        resolution: int,
        crop: Literal["center", "random"] = "center",
        class_subfolders: bool = False,
        seed: int = 0,
        *,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        root = check_folder(Path(path).expanduser(), what="folder of images")
        self.root = root
        self.resolution = int(resolution)
        self.crop = crop
        self.class_subfolders = bool(class_subfolders)
        self.seed = int(seed)
        self.max_pixels = int(max_pixels)
        self.skipped: dict[str, str] = {}
        self.unlabelled = 0  # files directly in the root, left out when class_subfolders is on

        files = _find_images(root)
        if self.class_subfolders:
            labelled = [f for f in files if len(f.relative_to(root).parts) > 1]
            self.unlabelled = len(files) - len(labelled)
            self.classes: list[str] = sorted({f.relative_to(root).parts[0] for f in labelled})
            index = {name: i for i, name in enumerate(self.classes)}
            self.files = labelled
            self.labels = [index[f.relative_to(root).parts[0]] for f in labelled]
        else:
            self.classes = []
            self.files = files
            self.labels = [0] * len(files)
        if not self.files:
            hint = ""
            if self.unlabelled:
                hint = f" ({self.unlabelled} files directly in the folder are ignored because class_subfolders is on)"
            elif self.class_subfolders:
                hint = " (class_subfolders is on: put each class's images in its own subfolder)"
            raise DataError(f"no readable images in {root}{hint}; looked for {', '.join(IMAGE_EXTENSIONS)}")

    @property
    def num_classes(self) -> int:
        """Number of distinct labels (0 when labels are not used)."""
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        """Image `index` with the folder's crop; a random crop is seeded by (seed, index)."""
        return self.load(index, np.random.default_rng([self.seed, int(index) % len(self.files)]))

    def load(
        self,
        index: int,
        rng: np.random.Generator | None = None,
        crop: Literal["center", "random"] | None = None,
    ) -> tuple[np.ndarray, int]:
        """File `index` (or the next readable one) fitted to a square; `rng` drives a random crop,
        `crop` overrides the folder's crop (previews always use the centre)."""
        n = len(self.files)
        for step in range(n):
            i = (int(index) + step) % n
            path = self.files[i]
            if str(path) in self.skipped:
                continue
            try:
                return self.read(i, rng, crop)
            except DataError as exc:
                self.skipped[str(path)] = _reason_only(exc, path)
        example = next(iter(self.skipped.items()))
        raise DataError(f"none of the {n} image files in {self.root} could be read (e.g. {example[0]}: {example[1]})")

    def read(
        self,
        index: int,
        rng: np.random.Generator | None = None,
        crop: Literal["center", "random"] | None = None,
    ) -> tuple[np.ndarray, int]:
        """File `index` itself fitted to a square, or a DataError naming it (`ul encode` lists, never substitutes)."""
        crop, i = crop or self.crop, int(index)
        loaded = load_image_rgb(self.files[i], max_pixels=self.max_pixels, min_size=self.resolution)
        return fit_square(loaded.array, self.resolution, crop, rng if crop == "random" else None), self.labels[i]

    def scan(self, limit: int | None = None) -> ScanReport:
        """Open the header of each file (the first `limit` if given): missing, empty, non-image and
        oversized files are found without decoding pixels. Found problems join `skipped`."""
        files = self.files if limit is None else self.files[:limit]
        readable = 0
        found: dict[str, str] = {}
        for path in files:
            key = str(path)
            if key in self.skipped:
                found[key] = self.skipped[key]
                continue
            try:
                probe_image(path, max_pixels=self.max_pixels)
            except DataError as exc:
                found[key] = self.skipped[key] = _reason_only(exc, path)
                continue
            readable += 1
        return ScanReport(readable=readable, skipped=found)


def _find_images(root: Path) -> list[Path]:
    """Image files under root, recursively, sorted by relative path. Hidden files and folders
    (names starting with '.', e.g. macOS '._x.jpg' resource forks, '.thumbnails') are left out."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS):
                found.append(Path(dirpath) / name)
    found.sort(key=lambda p: p.relative_to(root).as_posix())
    return found


def _reason_only(exc: DataError, path: Path) -> str:
    """The reason part of a reader message ('<path>: <reason>'), since the dict key is the path."""
    text = str(exc)
    prefix = f"{path}: "
    return text[len(prefix) :] if text.startswith(prefix) else text
