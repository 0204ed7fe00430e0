"""The media interface images and videos share (read, fit, metrics, write), and the one entry shape of a
reconstruction: real files on disk, untrained models of the smoke presets (shapes are what is tested)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from ul_engine.core.config import resolve
from ul_engine.core.errors import DataError
from ul_engine.core.reconstruction import MAX_RECONSTRUCT_SIDE
from ul_engine.core.sample_settings import read_png_text_chunks
from ul_engine.core.video_io import read_video, write_clip_mp4
from ul_engine.data.bouncing import BouncingSource
from ul_engine.data.loader import to_model_tensor
from ul_engine.inference.files import ImageMedia, VideoMedia, expand_inputs, media_for
from ul_engine.inference.loading import LoadedRun
from ul_engine.inference.reconstruct import Reconstructor, flat_result, reconstruct_batch, reconstruct_clip
from ul_engine.model import UnifiedLatents

METRIC_KEYS = {"psnr", "ssim", "bits", "bits_per_pixel", "bits_per_dim", "decode_seconds"}
ENTRY_KEYS = {"input", "name", "kind", "ok", "error", "notices", "run", "run_name", "checkpoint_step", "params",
              "files", "metrics", "width", "height"}  # fmt: skip


def _photo(path: Path, size: tuple[int, int] = (24, 20)) -> Path:
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def _clip(path: Path, frames: int = 10) -> Path:
    clip, _ = BouncingSource(20, frames, seed=4)[0]
    return Path(write_clip_mp4(path, list(clip), fps=6)["path"])


def _loaded(preset: str) -> LoadedRun:
    torch.manual_seed(0)
    cfg = resolve(preset)
    run = SimpleNamespace(id=1, name="r1")  # the store's row: only its id and name reach the entry
    return LoadedRun(run, cfg, UnifiedLatents(cfg).eval(), None, 7, "0" * 64)


def test_media_for_chooses_by_the_one_video_decision(tmp_path: Path) -> None:
    assert isinstance(media_for(tmp_path / "a.PNG"), ImageMedia)
    assert isinstance(media_for(tmp_path / "a.mp4"), VideoMedia)
    assert isinstance(media_for("clip.MOV"), VideoMedia) and isinstance(media_for("still.webp"), ImageMedia)


def test_image_media_reads_fits_measures_and_writes(tmp_path: Path) -> None:
    media = ImageMedia()
    read = media.read(_photo(tmp_path / "p.png"))
    assert read.frames.shape == (1, 20, 24, 3) and read.size == (24, 20)
    assert media.fit(read).frames.shape == read.frames.shape, "small images are not resized"
    big = media.fit(type(read)(np.zeros((1, 10, MAX_RECONSTRUCT_SIDE + 100, 3), np.uint8)))
    assert big.frames.shape[2] == MAX_RECONSTRUCT_SIDE and "downscaled" in big.notices[0]
    assert media.window(read, 4, 8) is read, "24×20 already suits a model downsampling by 4"
    small = media.window(type(read)(read.frames[:, :5, :7]), 4, 8)
    assert small.frames.shape == (1, 8, 8, 3) and "padded from 7×5 to 8×8" in small.notices[-1]
    assert np.array_equal(small.frames[0, 7, 6], read.frames[0, 4, 6]), "edge pixels repeated"
    same = media.metrics(read.frames, read.frames)
    assert set(same) == {"psnr", "ssim"} and same["ssim"] == pytest.approx(1.0)
    out = media.write(tmp_path / "o.png", read.frames, {"ul-seed": "5"})
    assert np.array_equal(media.read(out).frames, read.frames)
    assert read_png_text_chunks(out, ("ul-seed",)) == {"ul-seed": "5"}
    with pytest.raises(DataError, match=r"nope\.png"):
        media.read(tmp_path / "nope.png")


def test_video_media_reads_fits_measures_and_writes(tmp_path: Path) -> None:
    media = VideoMedia()
    read = media.read(_clip(tmp_path / "c.mp4"), max_frames=6, resolution=16)
    assert read.frames.shape == (6, 16, 16, 3) and read.fps == 6.0
    assert media.fit(media.read(tmp_path / "c.mp4"), 16).frames.shape == (10, 16, 16, 3)
    held = media.window(type(read)(read.frames[:5]), 2)
    assert held.frames.shape[0] == 6 and np.array_equal(held.frames[5], read.frames[4]), "the last frame held"
    assert media.window(read, 2) is read
    same = media.metrics(read.frames, read.frames)
    assert {"psnr", "ssim"} <= set(same), "the same metric names as an image's"
    assert same["frames"] == 6 and same["psnr_per_frame"] == [100.0] * 6 and same["psnr"] == 100.0
    out = media.write(tmp_path / "o.mp4", read.frames, fps=6.0)
    assert read_video(out)["array"].shape == (6, 16, 16, 3)


def test_expand_inputs_searches_folders_for_images(tmp_path: Path) -> None:
    (tmp_path / "d" / "e").mkdir(parents=True)
    b, a = _photo(tmp_path / "d" / "e" / "b.png"), _photo(tmp_path / "d" / "a.png")
    (tmp_path / "d" / "notes.txt").write_text("x")
    assert expand_inputs([tmp_path / "d", "loose.jpg"]) == [a, b, Path("loose.jpg")]


def test_an_image_and_a_video_reconstruct_to_one_entry_shape(tmp_path: Path) -> None:
    image_loaded, video_loaded = _loaded("smoke"), _loaded("bouncing-smoke")
    rec = Reconstructor(image_loaded)
    image = rec.image(_photo(tmp_path / "p.png"), rec.default_params(decoder_steps=1, rate_draws=2),
                      out_dir=tmp_path / "out")  # fmt: skip
    video = reconstruct_clip(video_loaded, _clip(tmp_path / "c.mp4"), tmp_path / "out", decoder_steps=1)
    for entry in (image, video):
        assert entry["ok"] and entry["error"] is None, entry
        assert set(entry) >= ENTRY_KEYS and set(entry["metrics"]) >= METRIC_KEYS
        assert {"reconstruction"} <= set(entry["files"]) and Path(entry["files"]["reconstruction"]).is_file()
        assert entry["run_name"] == "r1" and entry["checkpoint_step"] == 7
    assert image["kind"] == "image" and video["kind"] == "video"
    assert len(video["metrics"]["psnr_per_frame"]) == video["frames"] == 10
    flat_image, flat_video = flat_result(image), flat_result(video)
    assert set(flat_image) <= set(flat_video), "the CLI reports a video with every key an image has"
    assert flat_video["original"] == video["files"]["input"] and flat_video["output"] == flat_video["reconstruction"]
    assert flat_video["psnr"] == pytest.approx(np.mean(flat_video["psnr_per_frame"]))


def test_reconstruct_batch_takes_images_and_clips() -> None:
    """One batch round trip for `ul eval`: a clip's PSNR and SSIM are means over its frames, its bits per pixel
    count every pixel of the clip."""
    video = _loaded("bouncing-smoke")
    frames = video.cfg.data.frames
    clips = to_model_tensor(np.stack([BouncingSource(16, frames, seed=1)[i][0] for i in range(2)]))
    recs = reconstruct_batch(video.stage1, clips, decoder_steps=1, seeds=[0, 1], rate_draws=2)
    assert len(recs) == 2 and all(np.isfinite(r.psnr) and r.bits_per_pixel > 0 for r in recs)
    pixels, dims = frames * 16 * 16, int(np.prod(video.cfg.latent_shape()))
    assert recs[0].bits_per_pixel * pixels == pytest.approx(recs[0].bits_per_dim * dims, rel=1e-5)
    image = _loaded("smoke")
    x = to_model_tensor(np.stack([np.full((16, 16, 3), 128, np.uint8)] * 2))
    [a, b] = reconstruct_batch(image.stage1, x, decoder_steps=1, seeds=[0, 1], rate_draws=2)
    assert a.reconstruction.shape == (16, 16, 3) and np.isfinite(a.psnr) and np.isfinite(b.bits_per_dim)
