"""Smoke models for the Latents and Generate page tests: a stage-1 run `s1` (20 steps) and a stage-2 run `s2`
on it (20 steps), trained once per pytest session with the `ul` command and copied into each module's home."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from ul_testkit import shared_home

EXPLORE_RUNS = (
    ("train", "--preset", "smoke", "--steps", "20", "--name", "s1"),
    ("train", "--preset", "smoke", "--stage", "2", "--from-run", "s1", "--steps", "20", "--name", "s2"),
)


def trained_home(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A private copy of the shared smoke home (runs s1 = 1 and s2 = 2)."""
    return shared_home(tmp_path_factory, "ul-explore-smoke", EXPLORE_RUNS, name)


def write_image(path: Path, seed: int, size: tuple[int, int] = (16, 16)) -> Path:
    """A picture with structure (a disc on a gradient), different per seed."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    cx, cy, r = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h, rng.uniform(0.2, 0.35) * min(w, h)
    img = np.zeros((h, w, 3), np.float32)
    img[..., 0] = xx / max(w - 1, 1)
    img[..., 2] = yy / max(h - 1, 1)
    img[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = rng.uniform(0.2, 1.0, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((img * 255).astype(np.uint8)).save(path)
    return path
