"""The demo model's training crops (packaging/demo/make_photo_crops.py), run as the documented command: the held-out
photos never reach the training folder, every crop is 64×64 RGB, and the augmentation stays mild and multi-scale."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "packaging" / "demo" / "make_photo_crops.py"


@pytest.fixture(scope="module")
def crops(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("crops")
    argv = [sys.executable, str(SCRIPT), "--out", str(out), "--per-photo", "3", "--colour-weight", "2",
            "--held-out-per-photo", "2"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    return out


def _module():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import make_photo_crops
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return make_photo_crops


def test_held_out_photos_are_never_cropped_for_training(crops: Path) -> None:
    mod = _module()
    held_out = set(mod.HELD_OUT) | {"cat"}  # skimage's `cat` is the held-out chelsea
    sources = set(mod.TRAIN) | {Path(f).stem.split("_by_")[0] for f in mod.DEBIAN_PHOTOS}
    assert not held_out & sources
    train_names = {p.name.rsplit("-", 1)[0] for p in (crops / "train").glob("*.png")}
    assert train_names == set(mod.TRAIN)
    assert {p.name.rsplit("-", 1)[0] for p in (crops / "heldout").glob("*.png")} == set(mod.HELD_OUT)


def test_every_crop_is_64px_rgb_and_colour_photos_get_more(crops: Path) -> None:
    files = sorted((crops / "train").glob("*.png"))
    assert all(Image.open(p).size == (64, 64) and Image.open(p).mode == "RGB" for p in files)
    counts = {name: len(list((crops / "train").glob(f"{name}-*.png"))) for name in ("astronaut", "camera")}
    assert counts == {"astronaut": 6, "camera": 3}  # astronaut is in colour, camera is greyscale


def test_crop_sides_span_the_scales_and_the_jitter_is_mild() -> None:
    mod = _module()
    rng = np.random.default_rng(0)
    image = np.tile((np.arange(512) // 2).astype(np.uint8)[None, :, None], (512, 1, 3))  # a horizontal ramp
    image[..., 0] = 200
    sides = []
    for _ in range(400):  # the crop's side is recoverable from the ramp's slope after the 64-px resize
        [crop] = mod.random_crops(image, 1, 64, rng)
        row = np.asarray(crop)[32, :, 1].astype(float)
        sides.append(abs(row[-1] - row[0]) * 2 * 64 / 63)
    sides = np.array(sides)
    assert (sides < 128).mean() > 0.25 and (sides > 256).mean() > 0.25  # log-uniform: native and coarse scales
    plain = Image.fromarray(image[:64, :64])
    for _ in range(50):
        shifted = np.asarray(mod.jitter(plain, 0.1, rng)).astype(float)
        assert np.abs(shifted.mean(axis=(0, 1)) - np.asarray(plain).mean(axis=(0, 1))).max() < 0.25 * 255


def test_exported_photos_give_the_same_crops(crops: Path, tmp_path: Path) -> None:
    """A machine without scikit-image's photos (a lent GPU) crops the exported files: the same crops for the seed."""
    photos = tmp_path / "photos"
    export = [sys.executable, str(SCRIPT), "--out", str(tmp_path / "unused"), "--export-photos", str(photos)]
    assert subprocess.run(export, capture_output=True, text=True, timeout=600, check=False).returncode == 0
    again = tmp_path / "again"
    argv = [sys.executable, str(SCRIPT), "--out", str(again), "--photos", str(photos), "--per-photo", "3",
            "--colour-weight", "2"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    first, second = sorted((crops / "train").glob("*.png")), sorted((again / "train").glob("*.png"))
    assert [p.name for p in first] == [p.name for p in second]
    pairs = zip(first, second, strict=True)
    assert all(np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b))) for a, b in pairs)
    assert not list((again / "heldout").glob("*.png")), "no held-out crops: the held-out photos are not exported"
