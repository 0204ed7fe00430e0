"""Real FID: Inception-v3 pool features, only from a weights file the user points at (nothing is downloaded).

The architecture is torchvision's Inception3 (same module names, so state dicts load as they are), with the
FID variant of pytorch-fid / TF-FID (blocks Mixed_5b–5d, 6b–6e, 7b, 7c patched: average pools that exclude
padding, a max pool in Mixed_7c; 1008 classes). The file is recognised by its sha256 against KNOWN_WEIGHTS:

- `pt_inception-2015-12-05-6726825d.pth` (pytorch-fid's port of the TF FID Inception; torch-fidelity ships the
  same weights): the network published FIDs use. Result: `fid_inception_v3`, comparable.
- `inception_v3_google-0cc3c7bd.pth` / `-1a9a5a14.pth` (torchvision's ImageNet classifier): a real
  Inception-v3 but not the FID network. Result: `fid_inception_v3` labelled "torchvision weights: not
  comparable with published FID".
- anything else: loaded if its tensors fit one of the two layouts, labelled "unrecognised weights, FID not
  comparable".

Only the first 8 hex digits of each sha256 are known here (the torch.hub file-name convention, which
torch.hub checks on download); the full digests could not be verified offline, so recognition matches on
that prefix and reports the file's full sha256. `.pth` files are read with `torch.load(weights_only=True)`
(a restricted unpickler that builds tensors only); `.safetensors` files are read directly.

Preprocessing (pytorch-fid): [0, 1] images, bilinear resize to 299×299, scaled to [−1, 1]; features are the
2048-d average pool after Mixed_7c.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ul_engine import weights
from ul_engine.core import io
from ul_engine.core.errors import ULError

METRIC = "fid_inception_v3"


@dataclass(frozen=True)
class KnownWeights:
    sha256_prefix: str
    name: str
    variant: str  # "fid" | "torchvision"
    comparable: bool
    note: str


KNOWN_WEIGHTS: tuple[KnownWeights, ...] = (
    KnownWeights(
        "6726825d",
        "pt_inception-2015-12-05 (pytorch-fid port of the TF FID Inception)",
        "fid",
        True,
        "the FID network; comparable with published FID (up to resizing and sample count)",
    ),
    KnownWeights(
        "0cc3c7bd",
        "torchvision inception_v3_google (ImageNet classifier, IMAGENET1K_V1)",
        "torchvision",
        False,
        "torchvision weights: a real Inception-v3 but not the FID network; not comparable with published FID",
    ),
    KnownWeights(
        "1a9a5a14",
        "torchvision inception_v3_google (older release)",
        "torchvision",
        False,
        "torchvision weights: a real Inception-v3 but not the FID network; not comparable with published FID",
    ),
)
UNRECOGNISED_NOTE = "unrecognised weights, FID not comparable"


# ----------------------------------------------------------------------------------------------
# torchvision's Inception3 layout (module names match its state dict), with the FID patches


class BasicConv2d(nn.Module):
    def __init__(self, cin: int, cout: int, **kwargs: Any) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


def _avg_pool(x: Tensor, fid: bool) -> Tensor:
    # TF's average pool ignores the zero padding; torchvision's counts it.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=not fid)


class InceptionA(nn.Module):
    def __init__(self, cin: int, pool_features: int, fid: bool) -> None:
        super().__init__()
        self.fid = fid
        self.branch1x1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(cin, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_avg_pool(x, self.fid))], 1)


class InceptionB(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionC(nn.Module):
    def __init__(self, cin: int, c7: int, fid: bool) -> None:
        super().__init__()
        self.fid = fid
        self.branch1x1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3):
            d = layer(d)
        d = self.branch7x7dbl_5(self.branch7x7dbl_4(d))
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_avg_pool(x, self.fid))], 1)


class InceptionD(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionE(nn.Module):
    """pool: "avg" (torchvision; FID Mixed_7b: average excluding padding) or "max" (FID Mixed_7c)."""

    def __init__(self, cin: int, pool: str, fid: bool) -> None:
        super().__init__()
        self.pool, self.fid = pool, fid
        self.branch1x1 = BasicConv2d(cin, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(cin, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        if self.pool == "max":
            pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        else:
            pooled = _avg_pool(x, self.fid)
        return torch.cat([self.branch1x1(x), b3, d, self.branch_pool(pooled)], 1)


class InceptionAux(nn.Module):
    """Only so torchvision's state dict (which holds it) loads; never run."""

    def __init__(self, cin: int, num_classes: int) -> None:
        super().__init__()
        self.conv0 = BasicConv2d(cin, 128, kernel_size=1)
        self.conv1 = BasicConv2d(128, 768, kernel_size=5)
        self.fc = nn.Linear(768, num_classes)


class InceptionV3(nn.Module):
    """variant "fid": 1008 classes, no aux head, FID patches; "torchvision": 1000 classes + aux head."""

    def __init__(self, variant: str = "fid") -> None:
        super().__init__()
        if variant not in ("fid", "torchvision"):
            raise ValueError(f"unknown Inception variant {variant!r}")
        fid = variant == "fid"
        self.variant = variant
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = InceptionA(192, 32, fid)
        self.Mixed_5c = InceptionA(256, 64, fid)
        self.Mixed_5d = InceptionA(288, 64, fid)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, 128, fid)
        self.Mixed_6c = InceptionC(768, 160, fid)
        self.Mixed_6d = InceptionC(768, 160, fid)
        self.Mixed_6e = InceptionC(768, 192, fid)
        self.AuxLogits = None if fid else InceptionAux(768, 1000)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, "avg", fid)
        self.Mixed_7c = InceptionE(2048, "max" if fid else "avg", fid)
        self.fc = nn.Linear(2048, 1008 if fid else 1000)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, 299, 299) in [−1, 1] → (B, 2048) pool features."""
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


# ----------------------------------------------------------------------------------------------


@dataclass
class InceptionWeights:
    model: InceptionV3
    path: str
    sha256: str
    recognised: KnownWeights | None

    @property
    def comparable(self) -> bool:
        return bool(self.recognised and self.recognised.comparable)

    @property
    def label(self) -> str:
        return self.recognised.note if self.recognised else UNRECOGNISED_NOTE

    def describe(self) -> dict[str, Any]:
        return {
            "weights_path": self.path,
            "weights_sha256": self.sha256,
            "weights": self.recognised.name if self.recognised else None,
            "variant": self.model.variant,
            "recognised": self.recognised is not None,
            "comparable": self.comparable,
            "note": self.label,
        }


def recognise(sha256: str) -> KnownWeights | None:
    for known in KNOWN_WEIGHTS:
        if sha256.lower().startswith(known.sha256_prefix):
            return known
    return None


def _read_state(path: Path) -> dict[str, Tensor]:
    if path.suffix == ".safetensors":
        tensors, _ = weights.load_tensors(path)
        return tensors
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ULError(f"{path} is not a readable Inception-v3 weights file ({type(exc).__name__}: {exc})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ULError(f"{path} does not hold a state dict of tensors")
    return state


def load_inception(path: str | Path, device: str | torch.device = "cpu") -> InceptionWeights:
    """Build the network the file fits and load it; refuse files that fit neither layout."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ULError(f"--inception-weights: {path} does not exist")
    sha = io.sha256_file(path)
    known = recognise(sha)
    state = _read_state(path)
    fc = state.get("fc.weight")
    variant = known.variant if known else ("fid" if fc is not None and fc.shape[0] == 1008 else "torchvision")
    model = InceptionV3(variant)
    expected = model.state_dict()
    state = {k: v for k, v in state.items() if not (variant == "fid" and k.startswith("AuxLogits."))}
    missing = sorted(set(expected) - set(state))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or wrong:
        what = f"lacks {missing[0]}" if missing else f"has {wrong[0]} of shape {tuple(state[wrong[0]].shape)}"
        raise ULError(f"{path} is not an Inception-v3 state dict of the {variant} layout ({what})")
    model.load_state_dict({k: state[k] for k in expected})
    return InceptionWeights(model.to(device).eval(), str(path), sha, known)


@torch.no_grad()
def inception_features(weights: InceptionWeights, images: Tensor, batch_size: int = 32) -> np.ndarray:
    """(N, 3, H, W) in [−1, 1] → (N, 2048) float64 (pytorch-fid preprocessing: bilinear to 299, [−1, 1])."""
    model = weights.model
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(images), batch_size):
        x = (images[i : i + batch_size].float().to(device) + 1) / 2  # [0, 1]
        x = F.interpolate(x.clamp(0, 1), size=(299, 299), mode="bilinear", align_corners=False)
        out.append(model(2 * x - 1).double().cpu())
    return torch.cat(out).numpy()


def unavailable(reason: str) -> dict[str, Any]:
    """What the JSON says when FID was not computed: never silently replaced by another number."""
    return {"metric": METRIC, "value": None, "available": False, "reason": reason}


def known_table() -> Sequence[dict[str, Any]]:
    return [k.__dict__ for k in KNOWN_WEIGHTS]
