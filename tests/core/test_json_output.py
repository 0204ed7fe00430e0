"""The CLI's JSON writer: strict JSON with non-finite numbers (Python, numpy) as null plus a reason."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ul_engine.core import json_output


def strict(text: str) -> object:
    def refuse(token: str) -> None:
        raise AssertionError(f"{token} in {text}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_values_become_null_with_a_reason_beside_them() -> None:
    result = {
        "psnr": math.nan,
        "bits": np.float32("inf"),
        "ok": 1.5,
        "per_frame": [20.0, math.nan, np.float64(-math.inf)],
        "nested": {"results": [{"ssim": math.nan, "path": Path("/x.png")}]},
        "grid": [[1.0, math.inf]],
    }
    out = strict(json_output.dumps(result))
    assert out["psnr"] is None and out["psnr_reason"] == "non-finite (nan)"
    assert out["bits"] is None and out["bits_reason"] == "non-finite (inf)" and out["ok"] == 1.5
    assert out["per_frame"] == [20.0, None, None]
    assert out["per_frame_reason"] == "non-finite values written as null: nan at 1, -inf at 2"
    assert out["nested"]["results"][0] == {"ssim": None, "path": "/x.png", "ssim_reason": "non-finite (nan)"}
    assert out["grid"] == [[1.0, None]] and "inf at 1 of 0" in out["grid_reason"]


def test_a_reason_never_overwrites_a_real_key() -> None:
    out = strict(json_output.dumps({"fid": math.nan, "fid_reason": "no weights"}))
    assert out == {"fid": None, "fid_reason": "no weights"}
