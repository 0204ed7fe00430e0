"""The Generate page's Qt-free model: a sampling job's chunks and progress label, which checkpoint a dropped
sample pins, which run made it, and the sampler menu read from the one list. Real files, no window."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from app.models import generate as model
from ul_engine.core.errors import ULError
from ul_engine.core.protocol import SampleImages, to_wire
from ul_engine.core.samplers import SAMPLERS


def _settings(**over: object) -> dict[str, object]:
    base = {"run": 2, "checkpoint": None, "n": 10, "seed": 5, "base_steps": 4, "decoder_steps": 4,
            "sampler": "ddim", "guidance": 1.0, "class": None}  # fmt: skip
    return {**base, **over}


def test_a_job_sends_its_seeds_a_chunk_at_a_time_and_its_bar_says_what_is_done(tmp_path: Path) -> None:
    job = model.SampleJob(1, _settings(), str(tmp_path / "out"), tmp_path)
    assert job.total == 10 and job.bar() == (0, "0 / 10")
    first = job.next_chunk()
    request = job.request(first)
    assert isinstance(request, SampleImages) and request.OP == "image.sample"
    assert first == [5, 6, 7, 8] and request.seeds == first and job.more()
    assert request.class_label is None and request.cancel_file == str(tmp_path / "cancel-1")
    wire = to_wire(request)
    assert wire["seeds"] == first and "progress_file" not in wire  # progress comes as events, not a file
    fraction = 3 / 4  # a Progress(done=3, total=4) event of the running chunk
    assert job.bar(fraction) == (0, "0 / 10 · next 4: 75 %")
    job.done = 4
    assert job.next_chunk() == [9, 10, 11, 12]
    assert job.bar(0.5) == (400, "4 / 10 · next 4: 50 %")
    job.done = 8
    assert job.next_chunk() == [13, 14] and not job.more()
    job.cancel()
    assert job.cancelled and job.cancel_file.exists()
    job.close()
    assert not job.cancel_file.exists()


def test_a_dropped_sample_pins_its_checkpoint_or_says_the_latest_is_used(tmp_path: Path) -> None:
    rows = [SimpleNamespace(step=s, sha256=f"{s:064d}") for s in (10, 20)]
    older = model.pin_checkpoint(rows, f"{10:064d}")
    assert (older.step, older.label) == (10, "checkpoint: step 10, from the PNG")
    latest = model.pin_checkpoint(rows, f"{20:064d}")
    assert (latest.step, latest.label) == (None, "checkpoint: step 20 (the latest), from the PNG")
    gone = model.pin_checkpoint(rows, "f" * 64)
    assert gone.step is None and "no longer on disk" in gone.note


def test_the_run_of_a_sample_is_found_by_id_then_by_name() -> None:
    runs = [SimpleNamespace(id=2, name="s2", config={"data": {"num_classes": 4}}),
            SimpleNamespace(id=3, name="other", config={})]  # fmt: skip
    found = {"run": 2, "run_name": "s2", "seed": 1, "params": {"class": 3}}
    assert model.run_of(found, runs, "x.png").id == 2
    assert model.run_of({**found, "run": 9, "run_name": "other"}, runs, "x.png").id == 3  # renumbered data folder
    with pytest.raises(ULError, match="made by gone, which is not a stage-2 run"):
        model.run_of({**found, "run": 9, "run_name": "gone"}, runs, "x.png")
    model.check_fits(found, runs[0], "x.png", 2**31 - 1)
    with pytest.raises(ULError, match="class 3 does not exist in run other"):
        model.check_fits(found, runs[1], "x.png", 2**31 - 1)
    with pytest.raises(ULError, match="largest seed"):
        model.check_fits({**found, "seed": 2**40}, runs[0], "x.png", 2**31 - 1)


def test_the_form_reads_the_run_and_names_every_sampler_once() -> None:
    assert [name for _label, name in model.sampler_choices()] == list(SAMPLERS)
    form = model.run_form({"sampling": {"base_steps": 7, "sampler": "dpmpp2m"}, "data": {"resolution": 32}})
    assert (form.base_steps, form.decoder_steps, form.sampler, form.resolution) == (7, 64, "dpmpp2m", 32)
    assert model.size_note(form, "r") == "Samples are 32×32 pixels: the size r was trained at."
    assert model.size_note(model.run_form({"data": {"resolution": 32}}, video=True), "v") == ""
