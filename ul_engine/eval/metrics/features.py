"""A small CNN classifier of the procedural `shapes` images; its penultimate layer is FD-shapes' feature space.

No pretrained weights can be downloaded here, so FID's Inception network is replaced, for the shapes data,
by a network trained on what the generator knows about each image (`render_shapes`' info): the kind of
the largest shape, how many shapes there are, and the largest shape's centre, size and colour and the
background's corner colours (regressed). The heads are linear in a 64-d embedding, so the embedding has
to carry all of that: the Fréchet distance between embeddings of two image sets is sensitive to class
balance, counts, layout and colour, like FID is to ImageNet semantics. It is *not* FID and its numbers
are only comparable with other FD-shapes numbers from the same weights file (its sha256 is reported).

Trained by `python -m tools.train_shapes_classifier` (seeded); the shipped weights and their
held-out accuracy live in resources/metrics/.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ul_engine import weights
from ul_engine.core import RESOURCES_DIR, io
from ul_engine.core.errors import ULError
from ul_engine.data.shapes import SHAPE_KINDS, render_shapes

RESOURCES = RESOURCES_DIR / "metrics"
DEFAULT_PATH = RESOURCES / "shapes-classifier.safetensors"
TRAINER = "tools.train_shapes_classifier"  # retrains it (the metadata names where the trainer lived then)
FORMAT = "ul-studio-shapes-classifier/1"
INPUT_SIZE = 32
FEATURE_DIM = 64
MAX_SHAPES = 3
# Regression targets, all scaled to about [-1, 1]: centre (x, y), circumradius, RGB, 4 background corners × RGB.
REGRESSION_DIM = 2 + 1 + 3 + 12


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ShapesClassifier(nn.Module):
    """32×32 RGB in [-1, 1] → 64-d embedding → kind (4), count (3) and 18 regressed attributes."""

    def __init__(self, width: int = 24) -> None:
        super().__init__()
        w = width
        self.trunk = nn.Sequential(
            _conv(3, w),  # 32²
            _conv(w, 2 * w, 2),  # 16²
            _conv(2 * w, 2 * w),
            _conv(2 * w, 4 * w, 2),  # 8²
            _conv(4 * w, 4 * w),
            _conv(4 * w, 64, 2),  # 4²
            nn.Flatten(),
            nn.Linear(64 * 16, 128),
            nn.ReLU(inplace=True),
            nn.Linear(128, FEATURE_DIM),  # the embedding (penultimate layer), linear
        )
        self.kind = nn.Linear(FEATURE_DIM, len(SHAPE_KINDS))
        self.count = nn.Linear(FEATURE_DIM, MAX_SHAPES)
        self.regress = nn.Linear(FEATURE_DIM, REGRESSION_DIM)

    def features(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) in [-1, 1] → (B, 64); other sizes are resized to 32×32 (bilinear, antialiased)."""
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", antialias=True, align_corners=False)
        return self.trunk(x)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        f = self.features(x)
        return {"kind": self.kind(f), "count": self.count(f), "regress": self.regress(f), "features": f}


def shapes_targets(label: int, info: dict[str, Any], side: int) -> tuple[int, int, np.ndarray]:
    """(kind, count − 1, regression targets scaled to about [−1, 1]) from `render_shapes`' outputs."""
    k = info["largest"]
    cx, cy = info["centers"][k]
    reg = [cx / side * 2 - 1, cy / side * 2 - 1, info["sizes"][k] / side * 4 - 1]
    reg += [c / 127.5 - 1 for c in info["colors"][k]]
    for corner in info["background"]:
        reg += [c / 127.5 - 1 for c in corner]
    return int(label), len(info["kinds"]) - 1, np.asarray(reg, dtype=np.float32)


def render_labelled(seed: int, start: int, count: int, side: int = INPUT_SIZE) -> dict[str, np.ndarray]:
    """Images (N, 3, side, side) in [-1, 1] with their kind, count and regression targets; image i of
    stream `seed` is a pure function of (seed, i)."""
    images, kinds, counts, regs = [], [], [], []
    for i in range(start, start + count):
        image, label, info = render_shapes(np.random.default_rng([seed, i]), side)
        kind, n, reg = shapes_targets(label, info, side)
        images.append(image)
        kinds.append(kind)
        counts.append(n)
        regs.append(reg)
    x = np.stack(images).astype(np.float32).transpose(0, 3, 1, 2) / 127.5 - 1.0
    return {"x": x, "kind": np.asarray(kinds), "count": np.asarray(counts), "regress": np.stack(regs)}


def load_feature_net(
    path: Path,
    *,
    what: str,
    fmt: str,
    trainer: str,
    build: Callable[[dict[str, str]], nn.Module],
    device: str | torch.device = "cpu",
) -> tuple[nn.Module, dict[str, Any]]:
    """A shipped feature network (safetensors + metadata, never unpickled) in eval mode, and its metadata
    (held-out accuracies, training command, sha256) for the result JSON. `build` makes the empty net."""
    if not path.is_file():
        raise ULError(f"the {what} is missing ({path}); train it with `python -m {trainer} --out {path}`")
    tensors, meta = weights.load_tensors(path)
    if meta.get("format") != fmt:
        raise ULError(f"{path} is not a UL Studio {what.split(' for ')[0]} (format {meta.get('format')!r})")
    model = build(meta)
    state = model.state_dict()
    model.load_state_dict({k: v.to(state[k].dtype) for k, v in tensors.items()})
    info = {k: (json.loads(v) if k in ("heldout", "train") else v) for k, v in meta.items()}
    info["sha256"] = io.sha256_file(path)
    info["path"] = str(path)
    return model.to(device).eval(), info


def load_shapes_classifier(
    path: Path | None = None, device: str | torch.device = "cpu"
) -> tuple[ShapesClassifier, dict[str, Any]]:
    """The trained classifier (eval mode) and its metadata (accuracies, seed, command, sha256)."""
    model, info = load_feature_net(
        Path(path) if path is not None else DEFAULT_PATH,
        what="shapes classifier for FD-shapes",
        fmt=FORMAT,
        trainer=TRAINER,
        build=lambda meta: ShapesClassifier(width=int(meta.get("width", 24))),
        device=device,
    )
    return model, info  # type: ignore[return-value]


@torch.no_grad()
def shapes_features(model: ShapesClassifier, images: Tensor, batch_size: int = 256) -> np.ndarray:
    """(N, 3, H, W) in [-1, 1] → (N, 64) float64 embeddings."""
    device = next(model.parameters()).device
    out = [
        model.features(images[i : i + batch_size].float().to(device)).double().cpu()
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(out).numpy()


@torch.no_grad()
def classify(model: ShapesClassifier, images: Tensor, batch_size: int = 256) -> dict[str, np.ndarray]:
    """Predicted kind and count (0-based: count − 1) of each image."""
    device = next(model.parameters()).device
    kinds, counts = [], []
    for i in range(0, len(images), batch_size):
        out = model(images[i : i + batch_size].float().to(device))
        kinds.append(out["kind"].argmax(1).cpu())
        counts.append(out["count"].argmax(1).cpu())
    return {"kind": torch.cat(kinds).numpy(), "count": torch.cat(counts).numpy()}
