"""The data layer: procedural shapes, the robust reader, folder sources, and seeded batches.

Every odd or broken image is written on the fly into tmp_path; no binary fixtures are committed.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile, ImageOps

from ul_engine.core.config import DataConfig
from ul_engine.core.errors import DataError, ULError
from ul_engine.data import (
    IMAGE_EXTENSIONS,
    SHAPE_KINDS,
    BatchStream,
    ImageFolderSource,
    ShapesSource,
    fit_square,
    fixed_validation_batch,
    from_model_range,
    load_image_rgb,
    make_source,
    probe_image,
    render_shapes,
    to_model_range,
)

# ----------------------------------------------------------------------------------------------
# Shapes


def test_same_seed_and_index_give_the_same_image() -> None:
    a, b = ShapesSource(32, seed=3), ShapesSource(32, seed=3)
    for index in (0, 1, 17, 10**9):
        (img_a, label_a), (img_b, label_b) = a[index], b[index]
        assert np.array_equal(img_a, img_b) and label_a == label_b


def test_different_seed_or_index_give_different_images() -> None:
    src = ShapesSource(32, seed=0)
    images = [src[i][0] for i in range(20)]
    assert len({img.tobytes() for img in images}) == 20
    assert not np.array_equal(src[5][0], ShapesSource(32, seed=1)[5][0])


@pytest.mark.parametrize("resolution", [16, 32, 33, 64])
def test_any_resolution_gives_uint8_rgb_of_that_size(resolution: int) -> None:
    img, label, info = render_shapes(np.random.default_rng(resolution), resolution)
    assert img.shape == (resolution, resolution, 3) and img.dtype == np.uint8
    assert 0 <= label < len(SHAPE_KINDS)
    assert img.std() > 5  # a gradient and shapes, not a flat fill
    assert 1 <= len(info["kinds"]) <= 3


def test_label_is_the_kind_of_the_largest_shape_and_it_is_visible() -> None:
    seen = set()
    for index in range(200):
        img, label, info = render_shapes(np.random.default_rng([7, index]), 32)
        largest = int(np.argmax(info["areas"]))
        assert largest == info["largest"] == len(info["kinds"]) - 1  # drawn last, on top
        assert label == SHAPE_KINDS.index(info["kinds"][largest])
        others = [a for i, a in enumerate(info["areas"]) if i != largest]
        assert all(a <= 0.6 * info["areas"][largest] + 1e-9 for a in others)
        cx, cy = info["centers"][largest]
        assert np.abs(img[int(cy), int(cx)].astype(int) - info["colors"][largest]).max() <= 1
        for key in ("kinds", "centers", "sizes", "areas", "rotations", "colors"):
            assert len(info[key]) == len(info["kinds"])
        seen.add(label)
    assert seen == set(range(len(SHAPE_KINDS)))


def test_shapes_labels_follow_num_classes() -> None:
    assert ShapesSource(16, 0).num_classes == len(SHAPE_KINDS)
    unconditional = ShapesSource(16, 0, num_classes=0)
    assert unconditional.num_classes == 0
    assert {unconditional[i][1] for i in range(30)} == {0}
    with pytest.raises(DataError, match="num_classes"):
        ShapesSource(16, 0, num_classes=10)


# ----------------------------------------------------------------------------------------------
# Batches


def _shapes_stream(batch: int = 8, **kw: int) -> BatchStream:
    return BatchStream(ShapesSource(16, seed=0), batch, seed=0, **kw)


def test_batch_is_a_pure_function_of_step() -> None:
    x1, y1 = _shapes_stream().batch(5)
    fresh = _shapes_stream()  # a resumed run: no history
    for step in range(5):
        fresh.batch(step)
    x2, y2 = fresh.batch(5)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert x1.shape == (8, 3, 16, 16) and x1.dtype == torch.float32 and y1.dtype == torch.int64
    assert x1.min() >= -1 and x1.max() <= 1
    assert not torch.equal(x1, _shapes_stream().batch(6)[0])


def test_ranks_split_the_global_batch_without_overlap() -> None:
    whole, labels = _shapes_stream(batch=8).batch(3)
    r0 = _shapes_stream(batch=4, rank=0, world_size=2).batch(3)
    r1 = _shapes_stream(batch=4, rank=1, world_size=2).batch(3)
    assert torch.equal(torch.cat([r0[0], r1[0]]), whole) and torch.equal(torch.cat([r0[1], r1[1]]), labels)
    assert not torch.equal(r0[0], r1[0])


def test_shapes_batch_of_32_at_32px_is_reproducible_per_step() -> None:
    """How fast a batch is made is `ul bench`'s `data.batch_ms_median`; here only what it holds."""
    stream = BatchStream(ShapesSource(32, seed=0), 32, seed=0)
    images, labels = stream.batch(3)
    assert images.shape == (32, 3, 32, 32) and labels.shape == (32,)
    assert float(images.min()) >= -1.0 and float(images.max()) <= 1.0
    again = BatchStream(ShapesSource(32, seed=0), 32, seed=0).batch(3)
    assert torch.equal(images, again[0]) and torch.equal(labels, again[1])
    assert not torch.equal(images, stream.batch(4)[0])


def test_validation_batch_is_fixed_and_apart_from_training() -> None:
    src = ShapesSource(16, seed=0)
    v1, v2 = fixed_validation_batch(src, 6, seed=0), fixed_validation_batch(src, 6, seed=0)
    assert torch.equal(v1[0], v2[0]) and torch.equal(v1[1], v2[1])
    train = BatchStream(src, 6, seed=0).batch(0)[0]
    assert not any(torch.equal(v, t) for v in v1[0] for t in train)
    assert not torch.equal(fixed_validation_batch(src, 6, seed=1)[0], v1[0])


def test_model_range_round_trip() -> None:
    img = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    x = to_model_range(img)
    assert x.shape == (3, 5, 7) and x.dtype == np.float32 and x.min() >= -1 and x.max() <= 1
    assert np.array_equal(from_model_range(x), img)
    assert np.array_equal(from_model_range(torch.from_numpy(x)[None])[0], img)
    assert from_model_range(np.full((3, 1, 1), 7.0)).tolist() == [[[255, 255, 255]]]  # clipped


def test_make_source_checks_labels_against_the_data(tmp_path: Path) -> None:
    assert isinstance(make_source(DataConfig(kind="shapes", resolution=16, num_classes=4)), ShapesSource)
    for name in ("cats", "dogs"):
        (tmp_path / name).mkdir()
        _solid(tmp_path / name / "a.png", (1, 2, 3))
    cfg = {"kind": "image-folder", "resolution": 16, "path": str(tmp_path)}
    assert make_source(DataConfig(**cfg, class_subfolders=True, num_classes=2)).num_classes == 2
    with pytest.raises(DataError, match="num_classes = 2"):
        make_source(DataConfig(**cfg, class_subfolders=True, num_classes=0))
    with pytest.raises(DataError, match=">= 2"):
        make_source(DataConfig(**cfg, class_subfolders=True, num_classes=1))
    with pytest.raises(DataError, match="class_subfolders"):
        make_source(DataConfig(**cfg, num_classes=3))


# ----------------------------------------------------------------------------------------------
# Reader: conversions


def _solid(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> Path:
    Image.new("RGB", size, color).save(path)
    return path


def test_16bit_png_gradient_keeps_order_and_full_range(tmp_path: Path) -> None:
    ramp = np.linspace(0, 65535, 300).round().astype(np.uint16)[None].repeat(4, 0)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    out = load_image_rgb(tmp_path / "g16.png")
    row = out.array[0, :, 0].astype(int)
    assert out.array.shape == (4, 300, 3) and out.source_mode == "PNG I;16"
    assert row[0] == 0 and row[-1] == 255 and (np.diff(row) >= 0).all()
    assert np.array_equal(row, np.rint(ramp[0] / 257))
    assert any("16-bit" in n for n in out.notices)


def test_16bit_rgb_png_and_tiff_use_all_sixteen_bits(tmp_path: Path) -> None:
    import cv2

    rng = np.random.default_rng(0)
    rgb16 = rng.integers(0, 65536, (6, 9, 3)).astype(np.uint16)
    for name in ("c16.png", "c16.tif"):
        cv2.imwrite(str(tmp_path / name), rgb16[..., ::-1])
        out = load_image_rgb(tmp_path / name)
        assert np.array_equal(out.array, np.rint(rgb16 / 257).astype(np.uint8)), name
        assert out.source_mode.endswith("RGB;16")


def test_cmyk_jpeg_of_pure_red_reads_as_red(tmp_path: Path) -> None:
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "red.jpg")
    out = load_image_rgb(tmp_path / "red.jpg")
    assert out.source_mode == "JPEG CMYK"
    assert np.abs(out.array.astype(int) - (255, 0, 0)).max() <= 12


def test_rgba_composites_onto_white(tmp_path: Path) -> None:
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red
    rgba[0, 1] = (255, 0, 0, 128)  # half red
    rgba[1] = (0, 0, 0, 0)  # transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = load_image_rgb(tmp_path / "a.png")
    assert out.array[0, 0].tolist() == [255, 0, 0]
    assert out.array[0, 1].tolist() == [255, 127, 127]
    assert out.array[1].tolist() == [[255, 255, 255]] * 2
    assert "transparency composited onto white" in out.notices


def test_grayscale_and_grayscale_alpha(tmp_path: Path) -> None:
    Image.new("L", (3, 3), 90).save(tmp_path / "l.png")
    assert load_image_rgb(tmp_path / "l.png").array[1, 1].tolist() == [90, 90, 90]
    Image.new("LA", (3, 3), (0, 51)).save(tmp_path / "la.png")  # black at 20 % opacity
    assert load_image_rgb(tmp_path / "la.png").array[1, 1].tolist() == [204, 204, 204]


def test_palette_with_transparency(tmp_path: Path) -> None:
    im = Image.new("P", (2, 1))
    im.putpalette([0, 0, 255, 0, 255, 0] + [0] * 762)
    im.putpixel((1, 0), 1)
    im.info["transparency"] = 0
    im.save(tmp_path / "p.png")
    assert load_image_rgb(tmp_path / "p.png").array[0].tolist() == [[255, 255, 255], [0, 255, 0]]


def test_float_tiff_in_unit_range_and_out_of_it(tmp_path: Path) -> None:
    ramp = np.linspace(0, 1, 11, dtype=np.float32)[None]
    Image.fromarray(ramp, "F").save(tmp_path / "unit.tif")
    out = load_image_rgb(tmp_path / "unit.tif")
    assert np.array_equal(out.array[0, :, 0], np.rint(ramp[0] * 255))
    Image.fromarray(ramp * 40 - 10, "F").save(tmp_path / "wide.tif")
    out = load_image_rgb(tmp_path / "wide.tif")
    assert out.array[0, 0, 0] == 0 and out.array[0, -1, 0] == 255
    assert any("scaled from [-10, 30]" in n for n in out.notices)


def test_float_rgb_tiff_that_pillow_cannot_open(tmp_path: Path) -> None:
    import cv2

    rgb = np.zeros((4, 4, 3), np.float32)
    rgb[..., 0] = 1.0  # red
    cv2.imwrite(str(tmp_path / "f.tif"), rgb[..., ::-1])
    out = load_image_rgb(tmp_path / "f.tif")
    assert out.array[0, 0].tolist() == [255, 0, 0]
    assert probe_image(tmp_path / "f.tif") == (4, 4)


@pytest.mark.parametrize("ext", [".gif", ".webp"])
def test_animated_image_uses_the_first_frame(tmp_path: Path, ext: str) -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(tmp_path / f"anim{ext}", save_all=True, append_images=frames[1:], duration=40, loop=0)
    out = load_image_rgb(tmp_path / f"anim{ext}")
    assert "animated: first of 3 frames used" in out.notices
    assert np.abs(out.array[4, 4].astype(int) - (255, 0, 0)).max() <= 3


def test_embedded_icc_profile_is_converted_to_srgb(tmp_path: Path) -> None:
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.new("RGB", (4, 4), (200, 10, 10)).save(tmp_path / "srgb.png", icc_profile=srgb)
    assert load_image_rgb(tmp_path / "srgb.png").notices == []  # already sRGB: untouched
    renamed = srgb.replace("sRGB built-in".encode("utf-16-be"), "Test built-in".encode("utf-16-be"))
    Image.new("RGB", (4, 4), (200, 10, 10)).save(tmp_path / "other.png", icc_profile=renamed)
    out = load_image_rgb(tmp_path / "other.png")
    assert np.abs(out.array[0, 0].astype(int) - (200, 10, 10)).max() <= 2  # same space, other name
    assert "colours converted from embedded ICC profile 'Test built-in' to sRGB" in out.notices
    Image.new("RGB", (4, 4), (1, 2, 3)).save(tmp_path / "junk.png", icc_profile=b"junk" * 20)
    assert load_image_rgb(tmp_path / "junk.png").notices == ["embedded ICC profile unreadable; colours used as stored"]


@pytest.mark.parametrize("orientation", range(2, 9))
def test_exif_orientation_matches_pillow(tmp_path: Path, orientation: int) -> None:
    rgb = np.random.default_rng(orientation).integers(0, 256, (5, 8, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(rgb).save(tmp_path / "o.png", exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "o.png")).convert("RGB"))
    assert np.array_equal(load_image_rgb(tmp_path / "o.png").array, expected)


# ----------------------------------------------------------------------------------------------
# Reader: refusals


def _png_claiming(path: Path, width: int, height: int) -> Path:
    """A tiny valid PNG whose IHDR is patched to claim width × height (CRC fixed)."""
    Image.new("RGB", (4, 4), (9, 9, 9)).save(path)
    data = bytearray(path.read_bytes())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(("size", "claim"), [((40000, 40000), "1,600,000,000 pixels"), ((9000, 9000), "9000×9000")])
def test_decompression_bomb_is_refused_from_the_header(tmp_path: Path, size: tuple[int, int], claim: str) -> None:
    bomb = _png_claiming(tmp_path / "bomb.png", *size)  # holds 4×4 pixels: only the header can refuse it
    for reader in (load_image_rgb, probe_image):
        with pytest.raises(DataError, match="decompression bomb") as err:
            reader(bomb)
        assert str(bomb) in str(err.value) and claim in str(err.value)


def test_max_pixels_is_the_callers_limit(tmp_path: Path) -> None:
    path = _solid(tmp_path / "ok.png", (0, 0, 0), (100, 100))
    with pytest.raises(DataError, match="10,000 pixels, above the limit of 5,000"):
        load_image_rgb(path, max_pixels=5000)


def _truncated(path: Path, fmt: str) -> Path:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, format=fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.png").write_text("this is not an image\n")
    (tmp_path / "folder.jpg").mkdir()
    return {
        "file is empty": tmp_path / "empty.png",
        "not an image": tmp_path / "notes.png",
        "is a folder": tmp_path / "folder.jpg",
        "file not found": tmp_path / "missing.png",
        "truncated": _truncated(tmp_path / "cut.png", "PNG"),
        "truncated ": _truncated(tmp_path / "cut.jpg", "JPEG"),
    }


def test_bad_files_raise_one_line_data_errors_naming_the_file(tmp_path: Path) -> None:
    for reason, path in _bad_files(tmp_path).items():
        with pytest.raises(DataError) as err:
            load_image_rgb(path)
        message = str(err.value)
        assert isinstance(err.value, ULError)
        assert str(path) in message and reason.strip() in message and "\n" not in message, message


def test_truncated_files_are_refused_even_if_pillow_was_told_to_allow_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(DataError, match="truncated"):
        load_image_rgb(_truncated(tmp_path / "cut.jpg", "JPEG"))
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path: Path) -> None:
    path = _solid(tmp_path / "locked.png", (1, 1, 1))
    path.chmod(0)
    try:
        with pytest.raises(DataError, match=r"locked\.png"):
            load_image_rgb(path)
    finally:
        path.chmod(0o644)


@pytest.mark.parametrize(
    ("error", "reason"), [(PermissionError(13, "denied"), "permission denied"), (OSError(5, "I/O"), "I/O")]
)
def test_os_errors_while_opening_become_data_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: OSError, reason: str
) -> None:
    path = _solid(tmp_path / "x.png", (1, 1, 1))

    def failing_open(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(Image, "open", failing_open)
    for reader in (load_image_rgb, probe_image):
        with pytest.raises(DataError, match=reason) as err:
            reader(path)
        assert str(path) in str(err.value)


def test_fit_square_resizes_the_shorter_side_then_crops() -> None:
    wide = np.zeros((50, 100, 3), np.uint8)
    wide[:, 40:60] = 255  # a white band in the middle
    centre = fit_square(wide, 20, "center")
    assert centre.shape == (20, 20, 3) and centre[:, 8:12].min() == 255 and centre[:, :6].max() == 0
    crops = {fit_square(wide, 20, "random", np.random.default_rng(s)).tobytes() for s in range(10)}
    assert len(crops) > 1
    a = fit_square(wide, 20, "random", np.random.default_rng(3))
    assert np.array_equal(a, fit_square(wide, 20, "random", np.random.default_rng(3)))
    assert fit_square(np.zeros((10, 7, 3), np.uint8), 33, "center").shape == (33, 33, 3)  # upscale
    with pytest.raises(ValueError):
        fit_square(wide, 20, "random")


# ----------------------------------------------------------------------------------------------
# Image folders

COLORS = {"a.png": (255, 0, 0), "b.JPG": (0, 255, 0), "sub/c.webp": (0, 0, 255)}


def _mixed_folder(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    for name, color in COLORS.items():
        _solid(root / name, color)
    (root / "empty.png").write_bytes(b"")
    (root / "notes.jpg").write_text("hello")
    _truncated(root / "sub" / "cut.png", "PNG")
    (root / "readme.txt").write_text("not an image extension: ignored")
    _solid(root / ".hidden.png", (1, 1, 1))  # hidden: ignored
    return root


def test_folder_serves_good_files_and_lists_the_skipped(tmp_path: Path) -> None:
    src = ImageFolderSource(_mixed_folder(tmp_path / "data"), 16)
    assert len(src) == 6 and src.num_classes == 0
    report = src.scan()
    assert report.readable == 4  # the truncated PNG has a valid header; it is caught when served
    assert sorted(Path(p).name for p in report.skipped) == ["empty.png", "notes.jpg"]
    served = set()
    for index in range(len(src)):
        image, label = src[index]
        assert image.shape == (16, 16, 3) and label == 0
        near = [c for c in COLORS.values() if np.abs(image[8, 8].astype(int) - c).max() <= 3]  # JPEG is lossy
        assert len(near) == 1
        served.add(near[0])
    assert served == set(COLORS.values())
    assert sorted(Path(p).name for p in src.skipped) == ["cut.png", "empty.png", "notes.jpg"]
    assert "truncated" in src.skipped[str(tmp_path / "data" / "sub" / "cut.png")]


def test_folder_batches_cover_each_file_once_per_epoch(tmp_path: Path) -> None:
    root = tmp_path / "five"
    root.mkdir()
    palette = [(i * 50, 255 - i * 50, 7) for i in range(5)]
    for i, color in enumerate(palette):
        _solid(root / f"{i}.png", color)
    src = ImageFolderSource(root, 8, crop="random", seed=0)
    stream = BatchStream(src, 5, seed=0)
    epochs = []
    for step in range(3):
        x, _ = stream.batch(step)
        pixels = from_model_range(x)[:, 4, 4]
        epochs.append([tuple(int(v) for v in p) for p in pixels])
        assert sorted(epochs[-1]) == sorted(palette)
    assert epochs[0] != epochs[1] or epochs[1] != epochs[2]  # reshuffled per epoch
    assert torch.equal(BatchStream(src, 5, seed=0).batch(2)[0], stream.batch(2)[0])
    v = fixed_validation_batch(src, 7, seed=0)
    assert v[0].shape == (7, 3, 8, 8) and torch.equal(v[0], fixed_validation_batch(src, 7, seed=0)[0])


def test_empty_missing_and_all_bad_folders(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="no readable images in"):
        ImageFolderSource(tmp_path / "empty", 16)
    with pytest.raises(DataError, match="not found"):
        ImageFolderSource(tmp_path / "nowhere", 16)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"")
    (tmp_path / "bad" / "y.PNG").write_text("no")
    with pytest.raises(DataError, match="none of the 2 image files"):
        ImageFolderSource(tmp_path / "bad", 16)[0]


def test_class_subfolders_label_by_top_level_folder(tmp_path: Path) -> None:
    for cls, color in (("zebra", (0, 0, 0)), ("ant", (255, 255, 255))):
        (tmp_path / cls / "deep").mkdir(parents=True)
        _solid(tmp_path / cls / "one.png", color)
        _solid(tmp_path / cls / "deep" / "two.png", color)
    _solid(tmp_path / "stray.png", (9, 9, 9))  # no class: left out
    src = ImageFolderSource(tmp_path, 8, class_subfolders=True)
    assert src.classes == ["ant", "zebra"] and src.num_classes == 2
    assert len(src) == 4 and src.unlabelled == 1
    for index in range(len(src)):
        image, label = src[index]
        assert image[0, 0].tolist() == ([255] * 3 if label == 0 else [0] * 3)
    with pytest.raises(DataError, match="ignored because class_subfolders is on"):
        only_root = tmp_path / "flat"
        only_root.mkdir()
        _solid(only_root / "x.png", (1, 1, 1))
        ImageFolderSource(only_root, 8, class_subfolders=True)


def test_image_extensions_are_lower_case_with_dots() -> None:
    assert all(e.startswith(".") and e == e.lower() for e in IMAGE_EXTENSIONS)
