"""Training and held-out crops for the shipped demo model, from scikit-image's bundled public-domain photos.

scikit-image is needed for this script only (it is not a runtime dependency):
    python -m venv /tmp/skv && /tmp/skv/bin/pip install scikit-image pillow
    /tmp/skv/bin/python packaging/demo/make_photo_crops.py --out /tmp/photos

Crops are square regions of random side (64 px up to the photo's short side) resized to 64×64 with area
averaging and flipped at random, so a few photos give many scales. Colour photos get `--colour-weight`
times as many crops: 8 of the 13 training photos are greyscale, and a demo that people try on their own
(colour) photos must not learn that the world is grey. Whole photos are held out (never cropped for
training) so the demo's metrics measure photos it has not seen.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

# Each name is a function of skimage.data; all are public domain or CC0 (see their docstrings).
TRAIN = (
    "astronaut", "brick", "camera", "cell", "coins", "grass", "gravel", "hubble_deep_field",
    "immunohistochemistry", "microaneurysms", "moon", "retina", "clock",
)  # fmt: skip
HELD_OUT = ("chelsea", "coffee", "rocket")


def load_photo(name: str) -> np.ndarray:
    import skimage.data

    image = np.asarray(getattr(skimage.data, name)())
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    image = image[..., :3]
    if image.dtype != np.uint8:
        image = (np.clip(image.astype(np.float64) / image.max(), 0, 1) * 255).round().astype(np.uint8)
    return image


def random_crops(image: np.ndarray, n: int, size: int, rng: np.random.Generator) -> list[Image.Image]:
    h, w = image.shape[:2]
    crops = []
    for _ in range(n):
        side = int(rng.integers(size, min(h, w) + 1))
        top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = Image.fromarray(image[top : top + side, left : left + side]).resize((size, size), Image.Resampling.BOX)
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        crops.append(crop)
    return crops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--per-photo", type=int, default=1500, help="training crops per photo")
    parser.add_argument("--held-out-per-photo", type=int, default=64)
    parser.add_argument("--colour-weight", type=int, default=4, help="crops per colour photo, as a multiple")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=Path, help="also write the held-out photos here (the app's samples)")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    for split, names, per in (("train", TRAIN, args.per_photo), ("heldout", HELD_OUT, args.held_out_per_photo)):
        folder = args.out / split
        folder.mkdir(parents=True, exist_ok=True)
        count = 0
        for name in names:
            photo = load_photo(name)
            colour = split == "train" and not np.array_equal(photo[..., 0], photo[..., 1])
            n = per * (args.colour_weight if colour else 1)
            for i, crop in enumerate(random_crops(photo, n, args.size, rng)):
                crop.save(folder / f"{name}-{i:05d}.png")
            count += n
        print(f"{split}: {len(names)} photos, {count} crops in {folder}")
    if args.samples:
        args.samples.mkdir(parents=True, exist_ok=True)
        for name in HELD_OUT:
            Image.fromarray(load_photo(name)).save(args.samples / f"{name}.jpg", quality=90)
        print(f"held-out photos in {args.samples}")


if __name__ == "__main__":
    main()
