"""`ul bench --quality`: three contenders trained for the same CPU budget and scored the same way."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from ul_engine.bench.quality import describe, quality_comparison
from ul_engine.core.errors import ULError


def test_each_contender_trains_for_its_budget_and_is_scored(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "ul_engine.cli", "--home", str(tmp_path), "bench", "--quality", "--preset", "smoke",
         "--minutes", "0.03", "--samples", "8", "--set", "train.latent_cache_size=64", "--json",
         "--partial", str(tmp_path / "partial.json")],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1], parse_constant=lambda c: pytest.fail(f"JSON holds {c}"))
    q = result["quality"]
    assert set(q["contenders"]) == {"ul", "pixel", "ldm"}
    ul, pixel, ldm = (q["contenders"][k] for k in ("ul", "pixel", "ldm"))
    budget = 0.03 * 60
    assert ul["stage1"]["steps"] > 0 and pixel["train"]["steps"] > 0 and ldm["autoencoder"]["steps"] > 0
    assert ul["stage1"]["cpu_seconds"] >= 0.6 * budget and pixel["train"]["cpu_seconds"] >= budget
    # Equal sizes: the peers are matched to UL's parameter count (pixel: both stages; the KL autoencoder: stage 1).
    assert abs(pixel["parameters"] / ul["parameters"] - 1) < 0.15
    assert abs(ldm["parameters"] / ul["parameters"] - 1) < 0.15
    for c in (ul, pixel, ldm):
        assert math.isfinite(c["fd_shapes"]["value"]) and c["fd_shapes"]["n"] == 8
    assert 0 < ul["reconstruction_psnr_db"] < 60 and ul["rate_bits_per_pixel"] > 0
    assert 0 < ldm["reconstruction_psnr_db"] < 60
    partial = json.loads((tmp_path / "partial.json").read_text())  # rewritten after each contender
    assert partial["finished"] is False and set(partial["contenders"]) == {"ul", "pixel", "ldm"}
    assert partial["contenders"]["ul"]["fd_shapes"] == ul["fd_shapes"]
    assert "ul: FD-shapes" in out.stderr and "pixel: FD-shapes" in out.stderr  # progress on stderr with --json too
    table = describe(result)
    assert sum(line.startswith("| ul |") or line.startswith("| pixel |") or line.startswith("| ldm |")
               for line in table) == 3  # fmt: skip


def test_bad_settings_are_refused_before_any_training() -> None:
    with pytest.raises(ULError, match="stage1-share"):
        quality_comparison("smoke", 1.0, stage1_share=1.5)
    with pytest.raises(ULError, match="contenders"):
        quality_comparison("smoke", 1.0, contenders=["ul", "gan"])
    with pytest.raises(ULError, match="shapes"):
        quality_comparison("bouncing-32", 1.0)
