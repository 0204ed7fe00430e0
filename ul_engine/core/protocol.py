"""The JSON-lines protocol between the GUI (or any parent) and worker processes. Torch-free.

Training workers print one event per line on stdout: {"event": "status"|"progress"|"metrics"|
"checkpoint"|"preview"|"error", "run": N, ...}.

The session worker answers typed requests. Each request is a dataclass below whose `OP` names it
("<family>.<verb>", e.g. "image.reconstruct") and whose `RESULT` is the dataclass of its answer. On the wire a
request is {"id": K, "op": OP, **fields}, the answer {"id": K, "ok": true, "result": {**fields}} or
{"id": K, "ok": false, "error": "..."}. Before its answer a request may stream interim events, one channel for
all: {"id": K, "event": "progress", "done", "total", "what"} and, for image reconstructions, {"id": K,
"event": "partial", "model", "entry"}. A long request is cancelled the same way everywhere: the parent
creates the request's `cancel_file`; the op checks it between steps. Big payloads travel as files named in
the request or result, never inline.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TextIO, TypeVar

from ul_engine.core.errors import ULError

EVENTS = ("status", "progress", "metrics", "checkpoint", "preview", "error", "heartbeat")

T = TypeVar("T")
R = TypeVar("R")
RunRef = int | str  # a run by id or name


def encode(message: dict[str, Any]) -> str:
    return json.dumps(message, default=str, separators=(",", ":"))


def decode(line: str) -> dict[str, Any] | None:
    """One line → a message, or None for a line that is not a JSON object (e.g. a library's print)."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def write(message: dict[str, Any], stream: TextIO | None = None) -> None:
    out = stream or sys.stdout
    out.write(encode(message) + "\n")
    out.flush()


def to_wire(message: Any) -> dict[str, Any]:
    """A request, result or event dataclass → its JSON fields (shallow: field values are JSON already)."""
    return {f.name: getattr(message, f.name) for f in dataclasses.fields(message)}


def from_wire(cls: type[T], data: Mapping[str, Any]) -> T:
    """The dataclass `cls` from a wire dict; keys it does not know (id, op) are ignored, a missing required
    field is one clear ULError."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    required = [
        f.name
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [n for n in required if data.get(n) is None]
    if missing:
        what = getattr(cls, "OP", cls.__name__)
        raise ULError(f"{what} needs {', '.join(repr(n) for n in missing)}")
    return cls(**{k: v for k, v in data.items() if k in names})


# ---- events (interim lines of a request) ------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """How far a request is: `done` of `total` steps of the phase `what`."""

    done: int
    total: int
    what: str = ""
    EVENT: ClassVar[str] = "progress"


@dataclass(frozen=True)
class Partial:
    """An image reconstruction's images for model `model` (0 = A, 1 = B), shown before its bits arrive."""

    model: int
    entry: dict[str, Any]
    EVENT: ClassVar[str] = "partial"


Event = Progress | Partial


def event_message(event: Event) -> dict[str, Any]:
    return {"event": event.EVENT, **to_wire(event)}


def parse_event(message: Mapping[str, Any]) -> Event | None:
    """An interim line → its event, or None for an event this protocol does not know."""
    kind = message.get("event")
    if kind == Progress.EVENT:
        return Progress(int(message.get("done", 0)), int(message.get("total", 0)), str(message.get("what") or ""))
    if kind == Partial.EVENT:
        return Partial(int(message.get("model", 0)), dict(message.get("entry") or {}))
    return None


# ---- requests and their results ---------------------------------------------------------------------------

REQUESTS: dict[str, type[Request[Any]]] = {}
"""Every request type by its op name: what the session worker accepts."""


class Request(Generic[R]):
    """A session request: a dataclass with the op's parameters; `OP` is its name, `RESULT` its answer's type."""

    OP: ClassVar[str]
    RESULT: ClassVar[type]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        REQUESTS[cls.OP] = cls

    def to_message(self, rid: int) -> dict[str, Any]:
        return {"id": rid, "op": self.OP, **to_wire(self)}

    def result(self, data: Mapping[str, Any]) -> R:
        """This request's answer from the wire."""
        return from_wire(self.RESULT, data)


def parse_request(message: Mapping[str, Any]) -> Request[Any]:
    """A wire message → its typed request; an unknown op or a missing field is a ULError."""
    name = str(message.get("op"))
    cls = REQUESTS.get(name)
    if cls is None:
        raise ULError(f"unknown op {name!r}; known: {', '.join(sorted(REQUESTS))}")
    return from_wire(cls, message)


@dataclass(frozen=True)
class Done:
    """The answer of a request that only acknowledges."""


@dataclass(frozen=True)
class DeviceInfo:
    """What this machine can train on: {"threads", "cores"} and the GPUs' names."""

    cpu: dict[str, Any]
    gpus: list[str]


@dataclass(frozen=True)
class Devices(Request[DeviceInfo]):
    OP: ClassVar[str] = "session.devices"
    RESULT: ClassVar[type] = DeviceInfo


@dataclass(frozen=True)
class Shutdown(Request[Done]):
    OP: ClassVar[str] = "session.shutdown"
    RESULT: ClassVar[type] = Done


@dataclass(frozen=True)
class ImageReconstruction:
    """`entry` per ul_engine.inference.reconstruct (files, metrics, ok/error); `compare`: model B's, if asked."""

    entry: dict[str, Any] | None
    compare: dict[str, Any] | None = None


@dataclass(frozen=True)
class ReconstructImage(Request[ImageReconstruction]):
    """One image through a checkpoint (by id, or `run` + `checkpoint` step), and optionally through a second
    (`compare` = {"checkpoint_id"}), so the GUI drives a batch and cancels it by not sending the next image.
    `params`: decoder_steps, sampler, seed, samples, rate_draws (None: the run's defaults)."""

    OP: ClassVar[str] = "image.reconstruct"
    RESULT: ClassVar[type] = ImageReconstruction
    path: str
    checkpoint_id: int | None = None
    run: RunRef | None = None
    checkpoint: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    compare: dict[str, Any] | None = None
    cancel_file: str | None = None
    use_cache: bool = True


@dataclass(frozen=True)
class VideoReconstruction:
    original: str  # mp4 of the frames used, at the model's resolution
    reconstruction: str  # mp4
    frames: int
    fps: float
    psnr_per_frame: list[float]
    psnr: float
    bits_per_pixel: float
    bits_per_dim: float
    cached: bool
    decoder_steps: int | None = None
    seed: int | None = None
    checkpoint_step: int | None = None


@dataclass(frozen=True)
class ReconstructVideo(Request[VideoReconstruction]):
    """A video file through a video run; `params`: decoder_steps, seed, max_frames. Cached in the store."""

    OP: ClassVar[str] = "video.reconstruct"
    RESULT: ClassVar[type] = VideoReconstruction
    path: str
    run: RunRef
    checkpoint: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    cancel_file: str | None = None


@dataclass(frozen=True)
class VideoSamples:
    outputs: list[str]
    frames: int
    fps: float
    context_frames: int


@dataclass(frozen=True)
class SampleVideos(Request[VideoSamples]):
    """`n` clips from a stage-2 video run, optionally continuing the first `context_frames` of `context`.
    Without `out_dir` they go to runs/<id>/video-samples/."""

    OP: ClassVar[str] = "video.sample"
    RESULT: ClassVar[type] = VideoSamples
    run: RunRef
    checkpoint: int | None = None
    n: int = 1
    frames: int | None = None
    steps: int | None = None
    decoder_steps: int | None = None
    seed: int = 0
    context: str | None = None
    context_frames: int | None = None
    out_dir: str | None = None
    cancel_file: str | None = None


@dataclass(frozen=True)
class LatentAnalysis:
    run: int
    stage: int
    latent: str  # .npy
    source: str  # "encoded" | "generated" (a sample's own latent)
    input: str
    decoded: str
    tiles: list[str]
    scale: float
    stats: list[dict[str, Any]]
    pca: str
    rate_map: str
    rate_map_values: list[list[float]]
    rate_max: float
    rate: dict[str, Any]
    shape: list[int]
    image_size: list[int]
    decoder_steps: int
    sampler: str
    num_classes: int
    notices: list[str]


@dataclass(frozen=True)
class AnalyzeLatent(Request[LatentAnalysis]):
    """An image (fitted to the run's resolution) → its latent, channel tiles, PCA picture, rate map and a
    decode, all written under `out`."""

    OP: ClassVar[str] = "latents.analyze"
    RESULT: ClassVar[type] = LatentAnalysis
    run: RunRef
    image: str
    out: str
    checkpoint: int | None = None
    seed: int = 0
    draws: int = 16
    decoder_steps: int | None = None
    sampler: str | None = None
    use_sidecar: bool = True


@dataclass(frozen=True)
class LatentFrames:
    images: list[str]
    values: list[float]
    kind: str
    steps: int
    seconds: float
    ms_per_frame: float
    denoiser: str | None = None
    denoiser_steps: list[int] | None = None
    logsnr_range: list[float] | None = None


@dataclass(frozen=True)
class DecodeFrames(Request[LatentFrames]):
    """One scrub decoded at several `values`, one PNG each under `out` (see ul_engine.worker.ops.latents)."""

    OP: ClassVar[str] = "latents.frames"
    RESULT: ClassVar[type] = LatentFrames
    run: RunRef
    latent: str
    out: str
    checkpoint: int | None = None
    kind: str = "plain"  # plain | interpolate | noise | channel
    values: list[float] = field(default_factory=lambda: [0.0])
    prefix: str | None = None
    seed: int = 0
    steps: int | None = None
    sampler: str | None = None
    latent_b: str | None = None
    mode: str = "slerp"
    denoiser: str = "prior"
    guidance: float | None = None
    class_label: int | str | None = None  # a class, "random" (one per seed) or None
    prior_steps: int | None = None
    edit: str = "offset"
    channel: int = 0
    scale: float = 1.0
    offset: float = 0.0


@dataclass(frozen=True)
class ImageSamples:
    outputs: list[dict[str, Any]]  # {"path", "seed", "latent"}
    cancelled: bool
    seconds: float
    params: dict[str, Any]
    samples_per_s: float | None = None
    checkpoint_sha256: str | None = None
    checkpoint_step: int | None = None


@dataclass(frozen=True)
class SampleImages(Request[ImageSamples]):
    """Samples of a stage-2 run for `seeds` (or `seed` … `seed + n - 1`), as `ul sample` draws them."""

    OP: ClassVar[str] = "image.sample"
    RESULT: ClassVar[type] = ImageSamples
    run: RunRef
    out: str
    checkpoint: int | None = None
    seeds: list[int] | None = None
    seed: int = 0
    n: int = 1
    base_steps: int | None = None
    decoder_steps: int | None = None
    sampler: str | None = None
    guidance: float | None = None
    class_label: int | str | None = None  # a class, "random" (one per seed) or None
    cancel_file: str | None = None


@dataclass(frozen=True)
class Trajectory:
    frames: list[dict[str, Any]]  # {"image", "phase", "index", "total", "logsnr"}
    cancelled: bool
    final: str | None = None
    seed: int | None = None
    params: dict[str, Any] | None = None
    preview_steps: int | None = None
    seconds: float | None = None


@dataclass(frozen=True)
class TraceSample(Request[Trajectory]):
    """One sample's trajectory: a PNG per base-model step and per decoder step; the last is the sample."""

    OP: ClassVar[str] = "latents.trajectory"
    RESULT: ClassVar[type] = Trajectory
    run: RunRef
    out: str
    checkpoint: int | None = None
    seed: int = 0
    preview_steps: int | None = None
    base_steps: int | None = None
    decoder_steps: int | None = None
    sampler: str | None = None
    guidance: float | None = None
    class_label: int | str | None = None  # a class, "random" (one per seed) or None
    cancel_file: str | None = None


@dataclass(frozen=True)
class ExportedFrames:
    mp4: dict[str, Any] | None = None  # {path, frames, size, fps}
    gif: dict[str, Any] | None = None


@dataclass(frozen=True)
class ExportFrames(Request[ExportedFrames]):
    """Frame PNGs → an MP4 and/or a GIF at `fps`, enlarged to at least `min_side` pixels."""

    OP: ClassVar[str] = "frames.export"
    RESULT: ClassVar[type] = ExportedFrames
    frames: list[str]
    fps: float = 12.0
    min_side: int | None = None
    mp4: str | None = None
    gif: str | None = None
