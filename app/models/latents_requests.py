"""Every request the Latents page sends to the session worker, without Qt: analyse an image, decode scrub frames
and the film strip, record a trajectory, and export a scrub as MP4 and GIF. The files they write go to numbered
folders under the page's temporary folder.

An export decodes its frames a few at a time, then asks the worker to write both files; the steps are reported as
they happen ("Decoding frames 8 / 24…", then "Writing x.mp4 and x.gif…"), so the page's bar counts frames instead
of sitting still for a long export."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from app.models.latents import EXPORT_CHUNK
from ul_engine.core.protocol import (
    AnalyzeLatent,
    DecodeFrames,
    ExportedFrames,
    ExportFrames,
    LatentAnalysis,
    LatentFrames,
    Request,
    TraceSample,
    Trajectory,
    to_wire,
)

Answer = Callable[[bool, Any], None]
R = TypeVar("R")


class Requester(Protocol):
    """The session worker's client, as far as the Latents page uses it."""

    def call(self, request: Request[R], callback: Callable[[bool, R | str], None] | None = None) -> int: ...


@dataclass
class ExportReport:
    """Where an export stands: `step(done, total, text)` per decoded chunk, `writing(n, text)` once, then
    `finished(text, result)` (result None: it failed, and the text says why)."""

    step: Callable[[int, int, str], None]
    writing: Callable[[int, str], None]
    finished: Callable[[str, dict[str, Any] | None], None]


@dataclass
class ExportJob:
    session: Requester
    mp4: Path
    fps: int
    report: ExportReport

    @property
    def gif(self) -> Path:
        return self.mp4.with_suffix(".gif")

    def decode_then_write(self, values: Sequence[float], *, prefix: str, params: dict[str, Any], **decode: Any) -> None:
        """Decode one frame per value (`latents.frames` with `params` and `decode`: run, out, steps, seed), then
        write the files."""
        n = len(values)
        images: list[str] = []

        def next_chunk() -> None:
            start = len(images)
            self.report.step(start, n, f"Decoding frames {start} / {n}…")
            request = DecodeFrames(values=list(values[start : start + EXPORT_CHUNK]), prefix=f"{prefix}-{start:04d}",
                                   **decode, **params)  # fmt: skip
            self.session.call(request, decoded)

        def decoded(ok: bool, result: LatentFrames | str) -> None:
            if not isinstance(result, LatentFrames):
                self.report.finished(f"Export failed: {result}", None)
                return
            images.extend(result.images)
            if len(images) < n:
                next_chunk()
            else:
                self.write(images)

        next_chunk()

    def write(self, frames: list[str]) -> None:
        """Write the frames (PNG files) as the MP4 and the GIF beside it."""
        mp4, gif = self.mp4, self.gif

        def written(ok: bool, result: ExportedFrames | str) -> None:
            if not isinstance(result, ExportedFrames) or result.mp4 is None:
                self.report.finished(f"Export failed: {result}", None)
                return
            m = result.mp4
            size = f"{m['size'][0]}×{m['size'][1]}"
            self.report.finished(f"Wrote {mp4.name} and {gif.name}: {m['frames']} frames, {size}", to_wire(result))

        self.report.writing(len(frames), f"Writing {mp4.name} and {gif.name}…")
        self.session.call(ExportFrames(frames=frames, mp4=str(mp4), gif=str(gif), fps=self.fps), written)


class LatentsRequests:
    """The page's requests: `run` and `out` filled in, and each answer handed to the given callback."""

    def __init__(self, session_of: Callable[[], Requester | None], prefix: str = "ul-latents-") -> None:
        self.session_of = session_of  # the session worker may start (or restart) after the page
        self.tmp = Path(tempfile.mkdtemp(prefix=prefix))
        self._counter = 0

    @property
    def session(self) -> Requester:
        session = self.session_of()
        if session is None:
            raise RuntimeError("no session worker: the page checks for one before it asks")
        return session

    def cleanup(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def next_dir(self, name: str) -> str:
        self._counter += 1
        path = self.tmp / f"{self._counter:05d}-{name}"
        path.mkdir(parents=True, exist_ok=True)
        return str(path)

    def analyze(self, answer: Answer, *, run: int, image: str, slot: str, decoder_steps: int, seed: int) -> None:
        """The image's latent, tiles, PCA picture, rate map and full decode; the answer carries them as a dict
        (the page keeps it as the slot's result)."""

        def analyzed(ok: bool, result: LatentAnalysis | str) -> None:
            if isinstance(result, LatentAnalysis):
                answer(True, to_wire(result))
            else:
                answer(False, result)

        request = AnalyzeLatent(run=run, image=image, out=self.next_dir(f"analyze-{slot}"),
                                decoder_steps=decoder_steps, seed=seed)  # fmt: skip
        self.session.call(request, analyzed)

    def frame(self, answer: Answer, *, run: int, **params: Any) -> None:
        """One scrub frame (`params`: values=[v], steps, seed and the scrub's parameters); the answer carries
        its PNG as "image". Frames share one folder: a scrub writes one per slider move."""

        def one(ok: bool, result: LatentFrames | str) -> None:
            if isinstance(result, LatentFrames):
                answer(True, {**to_wire(result), "image": result.images[0]})
            else:
                answer(False, result)

        self._counter += 1
        request = DecodeFrames(run=run, out=str(self.tmp / "frames"), prefix=f"{self._counter:06d}", **params)
        self.session.call(request, one)

    def strip(self, answer: Callable[[bool, LatentFrames | str], None], *, run: int, **params: Any) -> None:
        """The film strip's full decodes (`params`: values, steps, seed, the interpolation)."""
        self.session.call(DecodeFrames(run=run, out=self.next_dir("strip"), prefix="strip", **params), answer)

    def trajectory(self, answer: Callable[[bool, Trajectory | str], None], *, run: int, **params: Any) -> None:
        """A sample with every step's prediction (`params`: TraceSample's seed, base/decoder/preview steps and
        sampling settings)."""
        self.session.call(TraceSample(run=run, out=self.next_dir("trajectory"), **params), answer)

    def export(self, mp4: Path, fps: int, report: ExportReport) -> ExportJob:
        return ExportJob(self.session, mp4, fps, report)

    def export_dir(self, kind: str) -> str:
        return self.next_dir(f"export-{kind}")
