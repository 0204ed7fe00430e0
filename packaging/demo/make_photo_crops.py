"""Training and held-out crops for the shipped demo model, from public-domain and CC-BY photos available offline.

Sources (licences in docs/demo-model.md § Data):
- scikit-image's bundled photos (public domain / CC0; scikit-image is needed for this script only):
      .venv/bin/pip install scikit-image    # or any venv with scikit-image and Pillow
- with `--debian DIR`, the CC0 / CC-BY-4.0 photographs of the Debian package lomiri-wallpapers-16.04, unpacked
  into DIR by `sh packaging/demo/fetch_debian_photos.sh DIR`.

    python packaging/demo/make_photo_crops.py --out /tmp/photos --debian /tmp/debian-photos

For a machine without scikit-image's photos or the Debian package (a lent GPU), `--export-photos DIR` writes the
training photos (already downscaled) as PNG files, and `--photos DIR` crops from them instead: the same crops
for the same seed.

Augmentation: square regions whose side is drawn log-uniformly from 64 px to the photo's short side (so every scale
from native pixels to the whole photo is seen, native-scale detail as often as the coarse scales), box-resized to
64×64, flipped left-right at random, and a mild colour jitter (brightness, contrast and saturation each × U(0.9, 1.1)).
Photos larger than `--max-side` on their short side are first box-downscaled to it, so a 4K wallpaper's crops look
like the few-hundred-pixel photos people reconstruct rather than out-of-focus close-ups. Colour photos get
`--colour-weight` times as many crops as greyscale ones: a demo tried on colour photos must not learn that the world
is grey. Whole photos are held out (never cropped for training) so the demo's metrics measure photos it has not
seen.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

# Each name is a function of skimage.data; all are public domain or CC0 (see their docstrings). Not used: the
# synthetic images (colorwheel, logo, checkerboard, ...), `cat` (the same photo as the held-out chelsea).
TRAIN = (
    "astronaut", "brick", "camera", "cell", "coins", "grass", "gravel", "hubble_deep_field",
    "immunohistochemistry", "microaneurysms", "moon", "retina", "clock",
)  # fmt: skip
HELD_OUT = ("chelsea", "coffee", "rocket")

# lomiri-wallpapers-16.04 (Debian), file → licence as its debian/copyright states. The package's CC-BY-SA-4.0
# photos (analogpattern, Bridge, Dragonfly, free, greentock) are not used: share-alike would bind the weights.
DEBIAN_PHOTOS = {
    "aitzgorri_by_Aitzol_Berasategi.jpg": "CC-BY-4.0",
    "friends_by_Aitzol_Berasategi.jpg": "CC-BY-4.0",
    "life_by_Aitzol_Berasategi.jpg": "CC-BY-4.0",
    "picosdeeuropa_by_Aitzol_Berasategi.jpg": "CC-BY-4.0",
    "sunset_by_Aitzol_Berasategi.jpg": "CC-BY-4.0",
    "Picture_0B_by_freespace.jpg": "CC-BY-4.0",
    "Picture_1A_by_freespace.jpg": "CC-BY-4.0",
    "seeding_by_Clements_Engelhardt.jpg": "CC0-1.0",
    "umang_by_Abhishek_Mudgal.jpg": "CC-BY-4.0",
    "Wine_by_Jakkub_Mede.jpg": "CC-BY-4.0",
}
DEBIAN_FOLDER = "usr/share/backgrounds"


def load_photo(name: str) -> np.ndarray:
    import skimage.data

    return as_rgb8(np.asarray(getattr(skimage.data, name)()))


def as_rgb8(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    image = image[..., :3]
    if image.dtype != np.uint8:
        image = (np.clip(image.astype(np.float64) / image.max(), 0, 1) * 255).round().astype(np.uint8)
    return image


def load_file(path: Path, max_side: int) -> np.ndarray:
    with Image.open(path) as im:
        im = im.convert("RGB")
        short = min(im.size)
        if short > max_side:
            scale = max_side / short
            im = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.BOX)
        return np.asarray(im)


def jitter(crop: Image.Image, amount: float, rng: np.random.Generator) -> Image.Image:
    """Mild photometric jitter, so colours seen once in one photo are not learnt as that photo's only ones."""
    if amount <= 0:
        return crop
    for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        crop = enhance(crop).enhance(float(rng.uniform(1 - amount, 1 + amount)))
    return crop


def random_crops(
    image: np.ndarray, n: int, size: int, rng: np.random.Generator, *, colour_jitter: float = 0.0
) -> list[Image.Image]:
    h, w = image.shape[:2]
    crops = []
    for _ in range(n):
        side = round(math.exp(rng.uniform(math.log(size), math.log(min(h, w)))))
        side = max(size, min(side, h, w))
        top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = Image.fromarray(image[top : top + side, left : left + side]).resize((size, size), Image.Resampling.BOX)
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        crops.append(jitter(crop, colour_jitter, rng))
    return crops


def training_photos(debian: Path | None, max_side: int) -> list[tuple[str, np.ndarray]]:
    photos = [(name, load_photo(name)) for name in TRAIN]
    if debian is not None:
        for file in DEBIAN_PHOTOS:
            photos.append((Path(file).stem.split("_by_")[0], load_file(debian / DEBIAN_FOLDER / file, max_side)))
    return photos


def export_photos(folder: Path, photos: list[tuple[str, np.ndarray]]) -> None:
    """The training photos as numbered PNGs, so `read_photos` gives them back in the same order (same crops)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, (name, photo) in enumerate(photos):
        Image.fromarray(photo).save(folder / f"{i:02d}-{name}.png")


def read_photos(folder: Path) -> list[tuple[str, np.ndarray]]:
    files = sorted(folder.glob("[0-9][0-9]-*.png"))
    if not files:
        raise SystemExit(f"no exported photos (NN-name.png) in {folder}")
    return [(f.stem.split("-", 1)[1], as_rgb8(np.asarray(Image.open(f).convert("RGB")))) for f in files]


def write_crops(folder: Path, name: str, crops: list[Image.Image]) -> None:
    for i, crop in enumerate(crops):
        crop.save(folder / f"{name}-{i:05d}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--debian", type=Path, help="folder where fetch_debian_photos.sh unpacked the package")
    parser.add_argument("--per-photo", type=int, default=1500, help="training crops per greyscale photo")
    parser.add_argument("--held-out-per-photo", type=int, default=64)
    parser.add_argument("--colour-weight", type=int, default=4, help="crops per colour photo, as a multiple")
    parser.add_argument("--colour-jitter", type=float, default=0.1, help="brightness/contrast/saturation ± this")
    parser.add_argument("--max-side", type=int, default=768, help="downscale larger photos to this short side")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=Path, help="also write the held-out photos here (the app's samples)")
    parser.add_argument("--export-photos", type=Path, help="only write the training photos here, as PNG files")
    parser.add_argument("--photos", type=Path, help="crop the photos written by --export-photos (no held-out crops)")
    args = parser.parse_args()
    if args.export_photos:
        export_photos(args.export_photos, training_photos(args.debian, args.max_side))
        print(f"training photos in {args.export_photos}")
        return
    rng = np.random.default_rng(args.seed)
    train, heldout = args.out / "train", args.out / "heldout"
    train.mkdir(parents=True, exist_ok=True)
    heldout.mkdir(parents=True, exist_ok=True)
    count = 0
    photos = read_photos(args.photos) if args.photos else training_photos(args.debian, args.max_side)
    for name, photo in photos:
        colour = not np.array_equal(photo[..., 0], photo[..., 1])
        n = args.per_photo * (args.colour_weight if colour else 1)
        write_crops(train, name, random_crops(photo, n, args.size, rng, colour_jitter=args.colour_jitter))
        count += n
    print(f"train: {len(photos)} photos, {count} crops in {train}")
    if args.photos:
        return
    for name in HELD_OUT:  # plain crops: the metrics measure the photos as they are
        write_crops(heldout, name, random_crops(load_photo(name), args.held_out_per_photo, args.size, rng))
    print(f"heldout: {len(HELD_OUT)} photos, {len(HELD_OUT) * args.held_out_per_photo} crops in {heldout}")
    if args.samples:
        args.samples.mkdir(parents=True, exist_ok=True)
        for name in HELD_OUT:
            Image.fromarray(load_photo(name)).save(args.samples / f"{name}.jpg", quality=90)
        print(f"held-out photos in {args.samples}")


if __name__ == "__main__":
    main()
