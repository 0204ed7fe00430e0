"""FVD-bouncing: the shipped bouncing-clip classifier, its recorded held-out numbers, and that its embedding
sees motion (clips shuffled in time or frozen are far from real ones; a second real set is not)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ul_engine import weights
from ul_engine.core import io
from ul_engine.core.errors import ULError
from ul_engine.eval.metrics.bouncing_features import (
    DEFAULT_PATH,
    FEATURE_DIM,
    bouncing_features,
    bouncing_targets,
    classify_clips,
    fit_clips,
    load_bouncing_classifier,
    render_labelled_clips,
)
from ul_engine.eval.metrics.frechet import frechet_distance_features, kernel_distance
from ul_engine.eval.metrics.generation import fvd_bouncing


def test_shipped_weights_load_without_pickle_and_match_their_json():
    assert DEFAULT_PATH.stat().st_size < 2_000_000
    assert DEFAULT_PATH.read_bytes()[:1] != b"\x80"  # safetensors (an 8-byte header length), never a pickle
    model, info = load_bouncing_classifier()
    sidecar = json.loads(DEFAULT_PATH.with_suffix(".json").read_text())
    assert sidecar["sha256"] == info["sha256"] == io.sha256_file(DEFAULT_PATH)
    assert sidecar["heldout"] == info["heldout"] and sidecar["train"] == info["train"]
    held = info["heldout"]
    assert held["n"] >= 1000 and held["kind_accuracy"] >= 0.95
    for key in ("count_accuracy", "direction_accuracy", "center_mae_px", "velocity_mae_px_per_frame"):
        assert np.isfinite(held[key])
    assert set(held["kind_accuracy_by_side"]) == {"16", "24", "32"}
    assert "train_bouncing_classifier" in info["command"] and "--threads 1" in info["command"]
    assert info["train"]["threads"] == 1 and info["train"]["seconds"] > 0
    assert info["train"]["parameters"] == sum(p.numel() for p in model.parameters()) <= 500_000


def test_classifier_reads_clips_it_never_saw_at_other_sizes_and_lengths():
    model, _ = load_bouncing_classifier()
    data = render_labelled_clips(seed=987_654, start=0, count=96, side=32)  # neither training nor held-out
    pred = classify_clips(model, torch.from_numpy(data["x"]))
    assert (pred["kind"] == data["kind"]).mean() > 0.9
    assert (pred["direction"] == data["direction"]).mean() > 0.7  # needs two frames: a motion head
    big = torch.from_numpy(render_labelled_clips(seed=5, start=0, count=3, side=48, frames=12)["x"])
    assert fit_clips(big).shape == (3, 3, 8, 32, 32)
    feats = bouncing_features(model, big)
    assert feats.shape == (3, FEATURE_DIM) and feats.dtype == np.float64


def test_direction_target_is_the_first_displacement():
    info = {"largest": 0, "kinds": ["circle", "square"], "radii": [4.0], "colors": [(10, 20, 30)],
            "velocities": [(-1.0, 2.0)], "centers": [[[10.0, 10.0], [9.0, 12.0], [8.0, 14.0]]]}  # fmt: skip
    kind, count, direction, reg = bouncing_targets(2, info, side=32)
    assert (kind, count, direction) == (2, 1, 2)  # dx < 0, dy ≥ 0
    assert reg[:4] == pytest.approx([10 / 16 - 1, 10 / 16 - 1, 8 / 16 - 1, 14 / 16 - 1])


def _shuffled_in_time(x: torch.Tensor, seed: int) -> torch.Tensor:
    """Each clip's frames in a random order (never the original): the same frames, no motion left."""
    rng = np.random.default_rng(seed)
    out = x.clone()
    for i in range(len(x)):
        order = rng.permutation(x.shape[2])
        while (order == np.arange(x.shape[2])).all():
            order = rng.permutation(x.shape[2])
        out[i] = x[i][:, torch.from_numpy(order)]
    return out


def test_fvd_bouncing_result_names_its_metric_and_network():
    real_a = torch.from_numpy(render_labelled_clips(seed=11, start=0, count=32, side=16)["x"])
    real_b = torch.from_numpy(render_labelled_clips(seed=12, start=0, count=24, side=16, frames=12)["x"])
    result = fvd_bouncing(real_a, real_b)
    assert result["metric"] == "fvd_bouncing" and (result["n_real"], result["n_fake"]) == (32, 24)
    assert "not FVD" in result["note"] and "sha256" in result["note"]
    assert result["feature_net"]["sha256"] == io.sha256_file(DEFAULT_PATH)
    assert result["value"] > 0 and np.isfinite(result["kid"])
    for head, bins in (("kind", 4), ("count", 3), ("direction", 4)):
        for side in ("real", "fake"):
            hist = result[f"{head}_histogram_{side}"]
            assert len(hist) == bins and sum(hist) == pytest.approx(1, abs=1e-3)


def test_fvd_bouncing_sees_motion():
    """Every frame of the shuffled and frozen sets is a real frame, so only the motion is wrong; a clip
    played backwards is still a bouncing clip and scores like one. (16 px: the bouncing-smoke size; at 32 px,
    128 clips, the numbers were FD 17.7 real, 52.3 shuffled, 77.7 frozen, 18.1 reversed.)"""
    model, _ = load_bouncing_classifier()
    side = 16
    real_a = torch.from_numpy(render_labelled_clips(seed=11, start=0, count=128, side=side)["x"])
    real_b = torch.from_numpy(render_labelled_clips(seed=12, start=0, count=128, side=side)["x"])
    sets = {
        "real": real_b,
        "shuffled": _shuffled_in_time(real_b, seed=side),
        "frozen": real_b[:, :, :1].expand_as(real_b).contiguous(),  # every frame = the first
        "reversed": real_b.flip(2),
    }
    fa = bouncing_features(model, real_a)
    feats = {k: bouncing_features(model, x) for k, x in sets.items()}
    fd = {k: frechet_distance_features(fa, f) for k, f in feats.items()}
    kid = {k: kernel_distance(fa, f, subsets=20)[0] for k, f in feats.items()}
    assert fd["shuffled"] > 2 * fd["real"] and fd["frozen"] > 3 * fd["real"]
    assert kid["shuffled"] > 5 * max(abs(kid["real"]), 1.0)
    assert fd["reversed"] < 1.5 * fd["real"] and kid["reversed"] < kid["shuffled"] / 4


def test_missing_classifier_says_how_to_train_it(tmp_path):
    with pytest.raises(ULError, match="train_bouncing_classifier"):
        load_bouncing_classifier(tmp_path / "nope.safetensors")
    wrong = tmp_path / "wrong.safetensors"
    weights.save_tensors(wrong, {"w": torch.zeros(1)}, {"format": "something-else"})
    with pytest.raises(ULError, match="not a UL Studio bouncing classifier"):
        load_bouncing_classifier(wrong)
