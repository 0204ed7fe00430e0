"""A folder of the user's own videos as a training source of fixed-length clips.

Every file (mp4, webm, mov, avi, mkv, searched recursively, sorted) is decoded once when the source is
built: that both counts its frames and finds files that fail to decode, wholly (not a video, header
gone) or in part (frames stop before the header's duration). Those are skipped, each with a logged line
naming the file and the reason (`skipped`: path → reason); a folder with no readable clip is a DataError.
Clips are `frames` frames taken every `frame_stride` frames, cut without overlap from the start of each
file; a clip is decoded again when served (memory holds one clip, not the folder).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import numpy as np

from ul_engine.core.errors import DataError
from ul_engine.core.media import VIDEO_EXTENSIONS, fit_square
from ul_engine.core.user_paths import check_folder
from ul_engine.core.video_io import read_video

log = logging.getLogger(__name__)


class VideoFolderSource:
    """Clips (frames, resolution, resolution, 3) uint8 with label 0, indexable 0 … len − 1."""

    def __init__(
        self,
        path: str | Path,
        resolution: int,
        frames: int,
        frame_stride: int = 1,
        crop: Literal["center", "random"] = "center",
        seed: int = 0,
    ) -> None:
        root = check_folder(Path(path).expanduser(), what="folder of videos")
        if frames < 1 or frame_stride < 1:
            raise DataError("clips need at least 1 frame and a frame stride of at least 1")
        self.root, self.resolution, self.frames = root, int(resolution), int(frames)
        self.stride, self.crop, self.seed = int(frame_stride), crop, int(seed)
        self.num_classes = 0
        self.skipped: dict[str, str] = {}
        self.clips: list[tuple[Path, int]] = []  # (file, first frame)
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
        span = (self.frames - 1) * self.stride + 1  # source frames one clip covers
        for file in files:
            try:
                count = read_video(file, keep=False)["frames"]
            except DataError as exc:
                self._skip(file, str(exc))
                continue
            if count < span:
                self._skip(file, f"{file.name}: {count} frames, a clip needs {span} (frames × stride)")
                continue
            hop = self.frames * self.stride
            self.clips.extend((file, start) for start in range(0, count - span + 1, hop))
        if not self.clips:
            detail = ""
            if self.skipped:
                detail = f"; skipped {len(self.skipped)} file(s), e.g. {next(iter(self.skipped.values()))}"
            raise DataError(
                f"no readable clip of {self.frames} frames (stride {self.stride}) in {root} "
                f"(looked for {', '.join(VIDEO_EXTENSIONS)}){detail}"
            )

    def _skip(self, file: Path, reason: str) -> None:
        self.skipped[str(file)] = reason
        log.warning("video-folder: skipping %s", reason)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        """Clip `index`, centre-cropped (the stage-2 latent cache and evaluation read clips this way)."""
        return self.load(index, crop="center")

    def load(
        self,
        index: int,
        rng: np.random.Generator | None = None,
        crop: Literal["center", "random"] | None = None,
    ) -> tuple[np.ndarray, int]:
        """Clip `index` fitted to squares of `resolution`; a random crop is one box for the whole clip."""
        file, start = self.clips[int(index)]
        mode = crop or self.crop
        crop_seed = int(rng.integers(2**63)) if (mode == "random" and rng is not None) else None
        if crop_seed is None:
            mode = "center"

        def fit(frame: np.ndarray) -> np.ndarray:
            frame_rng = np.random.default_rng(crop_seed) if crop_seed is not None else None
            return fit_square(frame, self.resolution, mode, frame_rng)

        clip = read_video(file, start=start, stride=self.stride, max_frames=self.frames, transform=fit)["array"]
        if clip is None or clip.shape[0] < self.frames:
            raise DataError(f"{file.name}: the clip at frame {start} is short (the file changed since the scan?)")
        return clip, 0
