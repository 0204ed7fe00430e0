"""The Generate page's rules, without Qt: what a run's config sets on the form, what a sample PNG's settings
restore (checked whole before anything changes), where a pinned checkpoint comes from, how a sampling job
advances a few seeds at a time and what its progress bar says, and copying samples out byte for byte.

The page (`app/pages/generate.py`) owns the widgets and the session requests.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ul_engine.core.errors import ULError
from ul_engine.core.protocol import SampleImages
from ul_engine.core.sample_settings import read_sample_settings
from ul_engine.core.samplers import SAMPLERS

CHUNK = 4  # samples per session request: the gallery fills at this granularity
SAMPLER_LABELS = {"ddim": "DDIM", "dpmpp2m": "DPM-Solver++ (2M)"}  # the menu's words; others show their name


def sampler_choices() -> list[tuple[str, str]]:
    """(label, name) of every sampler, in the one list's order (`ul_engine.core.samplers`)."""
    return [(SAMPLER_LABELS.get(name, name), name) for name in SAMPLERS]


def sample_settings(path: str | Path) -> dict[str, Any] | None:
    """The settings a sample PNG carries (ul-run, ul-run-name, ul-checkpoint-sha256, ul-seed, ul-params),
    validated as a whole (`ul_engine.core.sample_settings`); None when it carries none. Raises DataError when they
    are unusable (a seed out of range, steps the config refuses, an oversized or deeply nested chunk)."""
    found = read_sample_settings(path)
    if found is None:
        return None
    params = found.params.model_dump(by_alias=True, exclude_none=True)
    if "class" not in params:
        params["class"] = None
    return {
        "run": found.run,
        "run_name": found.run_name,
        "checkpoint_sha256": found.checkpoint_sha256,
        "seed": found.seed,
        "params": params,
    }


def copy_samples(
    paths: list[str], folder: Path, *, names: list[str] | None = None, overwrite: bool = False
) -> list[Path]:
    """Copy sample PNGs into `folder` byte for byte (their settings chunks travel with them); an existing file
    is kept and the copy gets " (2)", " (3)", … unless `overwrite` (the user confirmed it in the dialog)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i, src in enumerate(paths):
        target = folder / (names[i] if names else Path(src).name)
        k = 2
        while target.exists() and not overwrite and target.resolve() != Path(src).resolve():
            target = folder / f"{Path(target.name).stem.split(' (')[0]} ({k}){target.suffix}"
            k += 1
        if target.resolve() != Path(src).resolve():
            shutil.copyfile(src, target)
        written.append(target)
    return written


def saved_message(written: list[Path]) -> str:
    where = written[0] if len(written) == 1 else written[0].parent if written else None
    return f"Saved {len(written)} sample{'s' if len(written) != 1 else ''} to {where} (settings embedded)."


# ---- a run's form ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunForm:
    """What a run's config sets on the form."""

    base_steps: int = 64
    decoder_steps: int = 64
    sampler: str = "ancestral"
    guidance: float = 1.0
    classes: int = 0
    video: bool = False
    resolution: int = 0


def run_form(config: dict[str, Any] | None, *, video: bool = False) -> RunForm:
    """`video`: the run's model takes clips (the page's one video test decides it)."""
    cfg = dict(config or {})
    sampling, data = cfg.get("sampling") or {}, cfg.get("data") or {}
    return RunForm(
        base_steps=int(sampling.get("base_steps", 64)),
        decoder_steps=int(sampling.get("decoder_steps", 64)),
        sampler=str(sampling.get("sampler", "ancestral")),
        guidance=float(sampling.get("guidance", 1.0)),
        classes=int(data.get("num_classes", 0) or 0),
        video=video,
        resolution=int(data.get("resolution") or 0),
    )


def size_note(form: RunForm, run_name: str) -> str:
    """What size the samples come out: the run's training crop (nothing larger is generated, and no photo is
    involved: Reconstruct is where a photo of any size goes)."""
    if form.resolution < 1 or form.video:
        return ""
    r = form.resolution
    return f"Samples are {r}×{r} pixels: the size {run_name} was trained at."


# ---- a dropped sample's settings --------------------------------------------------------------------


def run_of(found: dict[str, Any], infos: Iterable[Any], name: str) -> Any:
    """The stage-2 run a sample was made by: by id when its name agrees, else by name."""
    runs = {info.id: info for info in infos}
    run_id = found["run"]
    info = runs.get(run_id) if run_id is not None else None
    if info is None or (found["run_name"] and info.name != found["run_name"]):
        by_name = [r for r in runs.values() if r.name == found["run_name"]]
        info = by_name[0] if by_name else None
    if info is None:
        run = found["run_name"] or f"run {run_id}"
        raise ULError(f"{name} was made by {run}, which is not a stage-2 run in this data folder.")
    return info


def check_fits(found: dict[str, Any], info: Any, name: str, seed_max: int) -> None:
    """What the record asks that this run or this form cannot do."""
    if found["seed"] > seed_max:
        raise ULError(f"{name}: ul-seed {found['seed']} is above {seed_max:,}, the largest seed "
                      f"Generate draws (ul sample --seed takes it)")  # fmt: skip
    cls = found["params"].get("class")
    classes = run_form(dict(info.config)).classes
    if cls is not None and cls >= classes:
        raise ULError(f"{name}: class {cls} does not exist in run {info.name} ({classes} classes)")


@dataclass(frozen=True)
class Pin:
    """The checkpoint a dropped sample names: its step (None: the latest), the form's label, the status's note."""

    step: int | None
    label: str
    note: str


def pin_checkpoint(checkpoints: list[Any], sha: str | None) -> Pin:
    """`checkpoints`: the run's checkpoint rows whose files exist."""
    latest = max(checkpoints, key=lambda c: c.step) if checkpoints else None
    match = [c for c in checkpoints if sha and c.sha256 == sha]
    if not match:
        return Pin(None, "checkpoint: latest (the PNG's is not on disk)",
                   "Its checkpoint is no longer on disk: the latest is used, so the image may differ.")  # fmt: skip
    step = None if latest and match[0].step == latest.step else match[0].step
    label = f"step {match[0].step}" + (" (the latest)" if step is None else "")
    return Pin(step, f"checkpoint: {label}, from the PNG", "Generate draws the same image.")


# ---- a sampling job -------------------------------------------------------------------------------


@dataclass
class SampleJob:
    """Seeds drawn `CHUNK` at a time; `done` counts samples that arrived, `next` the seeds sent so far."""

    token: int
    settings: dict[str, Any]
    out: str
    tmp: Path
    seeds: list[int] = field(default_factory=list)
    next: int = 0
    done: int = 0
    chunk: int = 0
    cancelled: bool = False
    started: float = field(default_factory=time.perf_counter)

    def __post_init__(self) -> None:
        first, n = int(self.settings["seed"]), int(self.settings["n"])
        self.seeds = list(range(first, first + n))

    @property
    def cancel_file(self) -> Path:
        return self.tmp / f"cancel-{self.token}"

    @property
    def total(self) -> int:
        return len(self.seeds)

    def next_chunk(self) -> list[int]:
        """The next seeds to send."""
        chunk = self.seeds[self.next : self.next + CHUNK]
        self.next += len(chunk)
        self.chunk = len(chunk)
        return chunk

    def more(self) -> bool:
        return self.next < self.total

    def request(self, chunk: list[int]) -> SampleImages:
        """The `image.sample` request of one chunk; its Progress events say how far the chunk is."""
        s = self.settings
        return SampleImages(
            run=s["run"], checkpoint=s["checkpoint"], seeds=chunk, base_steps=s["base_steps"],
            decoder_steps=s["decoder_steps"], sampler=s["sampler"], guidance=s["guidance"], class_label=s["class"],
            out=self.out, cancel_file=str(self.cancel_file),
        )  # fmt: skip

    def bar(self, chunk_fraction: float = 0.0) -> tuple[int, str]:
        """The bar's value (of 1000) and its label: the bar shows what its label says (samples done)."""
        text = f"{self.done} / {self.total}"
        if self.next > self.done and chunk_fraction > 0:
            text += f" · next {self.chunk}: {100 * min(1.0, chunk_fraction):.0f} %"
        return round(1000 * self.done / self.total), text

    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def summary(self) -> str:
        seconds = self.seconds()
        rate = self.done / seconds if seconds > 0 else 0.0
        return f"{self.done} samples in {seconds:.1f} s ({rate:.2f} samples/s), saved in {self.out}."

    def cancel(self) -> None:
        self.cancelled = True
        self.cancel_file.touch()

    def close(self) -> None:
        self.cancel_file.unlink(missing_ok=True)
