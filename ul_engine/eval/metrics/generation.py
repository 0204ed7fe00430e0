"""Generation metrics, each result naming its metric: on image sets `fd_shapes` (always available on the
shapes data, from the shipped classifier) and `fid_inception_v3` (only with a local Inception-v3 file); on
clip sets `fvd_bouncing` (the shipped bouncing-clip classifier; there is no I3D loader, so no real FVD)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ul_engine.eval.metrics import inception
from ul_engine.eval.metrics.bouncing_features import DIRECTIONS, MAX_SHAPES, embed_clips, load_bouncing_classifier
from ul_engine.eval.metrics.features import SHAPE_KINDS, classify, load_shapes_classifier, shapes_features
from ul_engine.eval.metrics.frechet import frechet_distance_features, kernel_distance

FD_SHAPES = "fd_shapes"
FVD_BOUNCING = "fvd_bouncing"


def _hist(values: np.ndarray, bins: int) -> list[float]:
    return (np.bincount(values, minlength=bins)[:bins] / max(len(values), 1)).round(4).tolist()


def fd_shapes(
    real: Tensor,
    fake: Tensor,
    *,
    classifier: Path | None = None,
    labels: Sequence[int] | None = None,
    real_labels: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Fréchet distance between the shapes-classifier embeddings of `real` and `fake` ((N, 3, H, W) in
    [−1, 1]), with KID and the predicted kind/count histograms of both sets. With `labels` (the class of each
    fake: the one it was drawn for, or the image it reconstructs), `class_agreement` is the share of fakes the
    classifier reads as their class, and `class_agreement_real` the same on the real images (`real_labels`,
    by default `labels`: guided samples are drawn for their reference image's class): the ceiling."""
    model, info = load_shapes_classifier(classifier)
    fr, ff = shapes_features(model, real), shapes_features(model, fake)
    kid_mean, kid_std = kernel_distance(fr, ff, subset_size=min(100, len(fr), len(ff)))
    pr, pf = classify(model, real), classify(model, fake)
    return {
        "metric": FD_SHAPES,
        "value": frechet_distance_features(fr, ff),
        "kid": kid_mean,
        "kid_std": kid_std,
        "n_real": len(fr),
        "n_fake": len(ff),
        "kind_histogram_real": _hist(pr["kind"], len(SHAPE_KINDS)),
        "kind_histogram_fake": _hist(pf["kind"], len(SHAPE_KINDS)),
        "count_histogram_real": _hist(pr["count"], 3),
        "count_histogram_fake": _hist(pf["count"], 3),
        **({} if labels is None else _agreement(pr["kind"], pf["kind"], np.asarray(labels), real_labels)),
        "feature_net": {
            "path": info["path"],
            "sha256": info["sha256"],
            "heldout_kind_accuracy": info["heldout"]["kind_accuracy"],
            "heldout_count_accuracy": info["heldout"]["count_accuracy"],
        },
        "note": "Fréchet distance in the embedding of a small shapes classifier; not FID, comparable only "
        "with FD-shapes from the same classifier (sha256) and sample count",
    }


def _agreement(
    real_kind: np.ndarray, fake_kind: np.ndarray, labels: np.ndarray, real_labels: Sequence[int] | None
) -> dict[str, Any]:
    real_labels_ = labels if real_labels is None else np.asarray(real_labels)
    return {
        "class_agreement": float(np.mean(fake_kind == labels)),
        "class_agreement_real": float(np.mean(real_kind == real_labels_)),
        "class_agreement_per_class": agreement_per_class(fake_kind, labels),
    }


def agreement_per_class(kind: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """{kind name: share of the images of that class the classifier reads as it}, for the classes present."""
    return {
        SHAPE_KINDS[c]: round(float(np.mean(kind[labels == c] == c)), 4)
        for c in range(len(SHAPE_KINDS))
        if np.any(labels == c)
    }


def fvd_bouncing(real: Tensor, fake: Tensor, *, classifier: Path | None = None) -> dict[str, Any]:
    """Fréchet distance between the bouncing-classifier embeddings of clips `real` and `fake` ((N, 3, T, H, W)
    in [−1, 1], resampled to 8×32×32 by the network), with KID and the predicted kind/count/direction
    histograms of both sets."""
    model, info = load_bouncing_classifier(classifier)
    pr, pf = embed_clips(model, real), embed_clips(model, fake)
    fr, ff = pr["features"], pf["features"]
    kid_mean, kid_std = kernel_distance(fr, ff, subset_size=min(100, len(fr), len(ff)))
    bins = {"kind": len(SHAPE_KINDS), "count": MAX_SHAPES, "direction": DIRECTIONS}
    histograms = {
        f"{head}_histogram_{side}": _hist(pred[head], n)
        for head, n in bins.items()
        for side, pred in (("real", pr), ("fake", pf))
    }
    return {
        "metric": FVD_BOUNCING,
        "value": frechet_distance_features(fr, ff),
        "kid": kid_mean,
        "kid_std": kid_std,
        "n_real": len(fr),
        "n_fake": len(ff),
        **histograms,
        "feature_net": {
            "path": info["path"],
            "sha256": info["sha256"],
            "heldout_kind_accuracy": info["heldout"]["kind_accuracy"],
            "heldout_count_accuracy": info["heldout"]["count_accuracy"],
            "heldout_direction_accuracy": info["heldout"]["direction_accuracy"],
        },
        "note": "Fréchet distance in the embedding of a small classifier of bouncing clips; not FVD "
        "(no I3D); comparable only with FVD-bouncing from the same network (sha256) and sample count",
    }


def fid_inception(real: Tensor, fake: Tensor, weights_path: str | Path | None) -> dict[str, Any]:
    """FID with the user's Inception-v3 file; without one, an explicit 'unavailable' with the reason."""
    if not weights_path:
        return inception.unavailable(
            "no Inception-v3 weights file given (--inception-weights PATH); nothing is downloaded"
        )
    weights = inception.load_inception(weights_path, "cuda" if torch.cuda.is_available() else "cpu")
    fr, ff = inception.inception_features(weights, real), inception.inception_features(weights, fake)
    return {
        "metric": inception.METRIC,
        "value": frechet_distance_features(fr, ff),
        "available": True,
        "n_real": len(fr),
        "n_fake": len(ff),
        **weights.describe(),
    }
