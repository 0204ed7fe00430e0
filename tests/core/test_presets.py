"""A preset's description is what `ul presets`, the New run form and its tooltips show, so a step count it names
must be the budget the preset really trains: a changed `train.steps` fails here until the description follows.

The TOML files are parsed as they ship (no config validation in between), the way `load_preset` reads them.
"""

from __future__ import annotations

import re
import tomllib
from typing import Any

import pytest

from ul_engine.core.config import PRESETS_DIR

# "2,000 steps", "500,000 steps", "60 steps"; not the "2 steps" inside "0.2 steps per second".
STEP_COUNT = re.compile(r"(?<![\d.,])(\d{1,3}(?:,\d{3})+|\d+) steps\b")
MINUTES = re.compile(r"about (\d+) minutes")


def preset(name: str) -> dict[str, Any]:
    with (PRESETS_DIR / f"{name}.toml").open("rb") as f:
        return tomllib.load(f)


def step_counts(text: str) -> list[int]:
    return [int(m.replace(",", "")) for m in STEP_COUNT.findall(text)]


def test_step_counts_are_read_as_written() -> None:
    text = "5,000 steps; 60 steps; 500,000 steps: days (about 0.2 steps per second)"
    assert step_counts(text) == [5000, 60, 500000]


@pytest.mark.parametrize("name", sorted(p.stem for p in PRESETS_DIR.glob("*.toml")))
def test_every_step_count_a_description_names_is_its_budget(name: str) -> None:
    raw = preset(name)
    named = step_counts(raw["description"])
    assert set(named) <= {raw["train"]["steps"]}, (name, named, raw["train"]["steps"])


def test_shapes_32_names_its_budget_and_both_stages_durations() -> None:
    """The default preset promises a duration: its description names the step budget stage 1 and stage 2 train
    (stage 2 takes the preset's [train] section too) and a time for each."""
    raw = preset("shapes-32")
    text = raw["description"]
    steps = raw["train"]["steps"]
    assert steps > 0 and raw["train"].get("minutes", 0) == 0
    assert f"Stage 1: {steps:,} steps, about " in text, text
    assert re.search(rf"stage 2: the same {steps:,} steps, about \d+ minutes", text), text
    assert len(MINUTES.findall(text)) == 2, text
