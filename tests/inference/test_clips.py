"""Video in the engine: bouncing clips, video folders, space-time nets, context-conditional stage 2, chunking."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from ul_engine.core.config import resolve, validate
from ul_engine.core.errors import ConfigError, DataError
from ul_engine.core.video_io import probe_video, read_video, write_clip_mp4
from ul_engine.data import make_source
from ul_engine.data.bouncing import BouncingSource, bounce, render_bouncing
from ul_engine.data.loader import BatchStream, fixed_validation_batch
from ul_engine.data.shapes import SHAPE_KINDS
from ul_engine.data.video_folder import VideoFolderSource
from ul_engine.inference.clips import decode_video, encode_video, window_starts
from ul_engine.inference.files import hold_pad
from ul_engine.inference.reconstruct import reconstruct_video
from ul_engine.inference.sample import sample_latents
from ul_engine.model import LatentBase, UnifiedLatents
from ul_engine.nets.blocks import sincos_pos_embed, sincos_pos_embed_2d


def test_bouncing_is_deterministic_and_sized_as_asked():
    a, b = BouncingSource(20, 5, seed=3), BouncingSource(20, 5, seed=3)
    clip, label = a[7]
    assert clip.shape == (5, 20, 20, 3) and clip.dtype == np.uint8
    assert np.array_equal(clip, b[7][0]) and label == b[7][1]
    assert not np.array_equal(clip, a[8][0])
    assert not np.array_equal(clip, BouncingSource(20, 5, seed=4)[7][0])
    assert not np.array_equal(clip[0], clip[-1]), "the shapes move"
    assert BouncingSource(16, 1, seed=0)[0][0].shape == (1, 16, 16, 3)


def test_bounce_reflects_at_the_walls():
    t = np.arange(12, dtype=np.float64)
    xs = bounce(2.0, 3.0, 1.0, 10.0, t)  # 2, 5, 8, then 11 → reflected to 9, 6, 3, 0 → 2, …
    assert np.allclose(xs[:6], [2, 5, 8, 9, 6, 3])
    assert xs[6] == pytest.approx(2.0) and np.all((xs >= 1.0) & (xs <= 10.0))


def test_bouncing_physics_straight_lines_and_reflections():
    for index in range(12):
        rng = np.random.default_rng([5, index])
        _clip, label, info = render_bouncing(rng, 32, 24)
        assert SHAPE_KINDS[label] == info["kinds"][info["largest"]]
        for radius, (vx, vy), centers in zip(info["radii"], info["velocities"], info["centers"], strict=True):
            c = np.asarray(centers)
            assert np.all(c >= radius - 1e-9) and np.all(c <= 32 - radius + 1e-9), "inside the walls"
            steps = np.abs(np.diff(c, axis=0))
            assert np.all(steps <= np.abs([vx, vy]) + 1e-9), "never faster than its velocity"
            for axis, v in enumerate((vx, vy)):
                # Away from the walls a shape moves exactly one velocity per frame; a shorter step is a bounce.
                free = (c[:-1, axis] - radius > abs(v)) & (32 - radius - c[:-1, axis] > abs(v))
                assert np.allclose(steps[free, axis], abs(v))
                turned = np.sign(np.diff(c[:, axis]))
                flips = np.flatnonzero(turned[1:] * turned[:-1] < 0)
                for f in flips:  # a direction change happens at a wall only
                    near = min(c[f + 1, axis] - radius, 32 - radius - c[f + 1, axis])
                    assert near <= abs(v) + 1e-9


def test_video_batches_and_validation_are_clips():
    cfg = resolve("bouncing-smoke")
    source = make_source(cfg.data)
    x, y = BatchStream(source, 4, seed=0).batch(3)
    assert x.shape == (4, 3, 8, 16, 16) and x.dtype == torch.float32 and y.shape == (4,)
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    x2, _ = BatchStream(source, 4, seed=0).batch(3)
    assert torch.equal(x, x2)
    v, _ = fixed_validation_batch(source, 2, seed=1)
    assert v.shape == (2, 3, 8, 16, 16)


def test_video_config_is_checked():
    raw = resolve("bouncing-smoke").to_dict()
    with pytest.raises(ConfigError, match="time_axis"):
        validate({**raw, "model": {**raw["model"], "time_axis": False}})
    with pytest.raises(ConfigError, match=r"multiple of model\.time_downsample"):
        validate({**raw, "data": {**raw["data"], "frames": 7}})
    with pytest.raises(ConfigError, match="context_frames"):
        validate({**raw, "model": {**raw["model"], "base": {**raw["model"]["base"], "context_frames": 4}}})
    with pytest.raises(ConfigError, match="power of 2"):
        validate({**raw, "model": {**raw["model"], "time_downsample": 3}, "data": {**raw["data"], "frames": 9}})
    shapes = resolve("smoke").to_dict()
    with pytest.raises(ConfigError, match=r"data\.frames"):
        validate({**shapes, "data": {**shapes["data"], "frames": 4}})


def _write(path: Path, frames: np.ndarray, fps: float = 8.0) -> Path:
    write_clip_mp4(path, list(frames), fps=fps)
    return path


def _bad_files(folder: Path) -> dict[str, Path]:
    """A truncated mp4 that ffmpeg cannot open, one that stops early, and a text file named .mp4."""
    import imageio_ffmpeg

    rng = np.random.default_rng(0)
    full = folder / "full.tmp"
    writer = imageio_ffmpeg.write_frames(str(full), (32, 32), fps=8, codec="libx264", pix_fmt_out="yuv420p",
                                         output_params=["-movflags", "+faststart", "-f", "mp4"],
                                         ffmpeg_log_level="error")  # fmt: skip
    writer.send(None)
    for _ in range(40):
        writer.send(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    writer.close()
    data = full.read_bytes()
    full.unlink()
    (folder / "cut_early.mp4").write_bytes(data[: len(data) // 2])  # header first: decodes 18 of 40 frames
    plain = _write(folder / "plain.tmp.mp4", np.zeros((12, 32, 32, 3), np.uint8))
    (folder / "no_header.mp4").write_bytes(plain.read_bytes()[:-400])  # moov atom at the end is gone
    plain.unlink()
    (folder / "notes.mp4").write_text("this is not a video\n")
    return {name: folder / name for name in ("cut_early.mp4", "no_header.mp4", "notes.mp4")}


def test_bad_video_files_give_clear_messages(tmp_path: Path):
    bad = _bad_files(tmp_path)
    with pytest.raises(DataError, match="truncated or damaged"):
        probe_video(bad["cut_early.mp4"])
    with pytest.raises(DataError, match="cannot decode this file as video"):
        read_video(bad["no_header.mp4"])
    with pytest.raises(DataError, match="cannot decode this file as video"):
        probe_video(bad["notes.mp4"])
    with pytest.raises(DataError, match="file not found"):
        probe_video(tmp_path / "missing.mp4")


def test_video_folder_skips_bad_files_and_cuts_clips(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    _bad_files(tmp_path)
    clip, _ = BouncingSource(32, 21, seed=1)[0]
    _write(tmp_path / "sub" / "good.mp4", clip)
    with caplog.at_level(logging.WARNING, logger="ul_engine.data.video_folder"):
        source = VideoFolderSource(tmp_path, 16, frames=4, frame_stride=2, crop="random", seed=0)
    assert len(source.skipped) == 3 and all(Path(p).name in str(r) for p, r in source.skipped.items())
    assert sum("skipping" in r.message for r in caplog.records) == 3
    assert len(source) == 2  # 21 frames, clips of 4 frames every 2nd frame: starts 0 and 8
    item, label = source.load(1, np.random.default_rng(3))
    assert item.shape == (4, 16, 16, 3) and label == 0
    again, _ = source.load(1, np.random.default_rng(3))
    assert np.array_equal(item, again)
    centre, _ = source.load(0, crop="center")
    decoded = read_video(tmp_path / "sub" / "good.mp4")["array"]
    assert np.abs(centre[1].astype(int) - decoded[2, ::2, ::2].astype(int)).mean() < 25  # frame 2 = stride 2


def test_video_folder_without_readable_clips_is_an_error(tmp_path: Path):
    _bad_files(tmp_path)
    with pytest.raises(DataError, match="no readable clip") as info:
        VideoFolderSource(tmp_path, 16, frames=4)
    assert "skipped 3 file(s)" in str(info.value)


def test_space_time_position_embedding():
    assert torch.equal(sincos_pos_embed((3, 5), 16), sincos_pos_embed_2d(3, 5, 16))
    emb = sincos_pos_embed((2, 3, 3), 16).view(2, 9, 16)
    assert not torch.allclose(emb[0], emb[1]), "frames differ"
    diff = emb[1] - emb[0]
    assert torch.allclose(diff, diff[:1].expand(9, 16), atol=1e-6), "the same time offset at every position"


def test_video_nets_shapes_and_losses():
    torch.manual_seed(0)
    cfg = resolve("bouncing-smoke")
    model = UnifiedLatents(cfg)
    x = torch.rand(2, 3, 8, 16, 16) * 2 - 1
    z = model.encode(x)
    assert z.shape == (2, 4, 4, 4, 4) == (2, *cfg.latent_shape())
    losses = model.stage1_losses(x)
    assert losses.pixels == 8 * 16 * 16 and losses.latent_dims == 4 * 4 * 4 * 4
    assert torch.isfinite(losses.loss())
    assert model.decode(model.noisy_latent(z), steps=2, seeds=[0, 1]).shape == x.shape
    assert model.sample_prior(2, steps=2, seeds=[0, 1]).shape == z.shape
    # The encoder is fully convolutional in time: 16 frames → 8 latent frames.
    assert model.encode(torch.zeros(1, 3, 16, 16, 16)).shape == (1, 4, 8, 4, 4)


def test_stage2_context_loss_covers_generated_frames_only():
    cfg = resolve("bouncing-smoke", ["model.base.context_prob=1.0"])
    base = LatentBase(cfg)
    base.net.forward = lambda z_t, logsnr, labels=None, context=None, mask=None: torch.zeros_like(z_t)  # type: ignore[method-assign]
    z = torch.randn(3, *cfg.latent_shape())
    changed = z.clone()
    changed[:, :, :2] *= 10.0  # the given latent frames
    torch.manual_seed(1)
    a = base.losses(z)
    torch.manual_seed(1)
    b = base.losses(changed)
    assert torch.allclose(a.weighted, b.weighted) and torch.allclose(a.elbo, b.elbo)
    assert torch.equal(a.latent_dims, torch.full((3,), 2.0 * 4 * 4 * 4))
    base.cfg = resolve("bouncing-smoke", ["model.base.context_prob=0.0"])
    torch.manual_seed(1)
    c = base.losses(z)
    torch.manual_seed(1)
    d = base.losses(changed)
    assert not torch.allclose(c.weighted, d.weighted), "unconditional examples model every frame"
    assert torch.equal(c.latent_dims, torch.full((3,), 4.0 * 4 * 4 * 4))


def test_conditional_sampling_keeps_the_given_latent_frames():
    torch.manual_seed(0)
    cfg = resolve("bouncing-smoke")
    stage1, base = UnifiedLatents(cfg).eval(), LatentBase(cfg).eval()
    context, _ = BouncingSource(16, 8, seed=2)[0]
    z = sample_latents(base, stage1, 2, frames=8, seed=0, steps=3, context=context, context_frames=3)
    assert z.shape == (2, 4, 4, 4, 4)
    given = encode_video(stage1, hold_pad(context[:3], 8))[:, :2]  # ⌈3/2⌉ = 2 latent frames; frame 3 held
    for i in range(2):
        assert torch.allclose(z[i, :, :2] / stage1.alpha0, given, atol=5 * stage1.sigma0 / stage1.alpha0)
    assert not torch.allclose(z[0, :, 2:], z[1, :, 2:]), "the rest is generated per seed"
    longer = sample_latents(base, stage1, 1, frames=13, seed=0, steps=2)  # grows window by window
    assert longer.shape[2] == 7


def test_chunked_encode_decode_of_a_long_clip_is_bounded():
    torch.manual_seed(0)
    cfg = resolve("bouncing-smoke")
    model = UnifiedLatents(cfg).eval()
    seen: list[int] = []
    for net in (model.encoder, model.decoder):
        net.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[2]))
    clip, _ = BouncingSource(16, 21, seed=0)[0]
    z = encode_video(model, clip)
    assert z.shape == (4, 11, 4, 4)  # 21 frames, the last held once → 22 → 11 latent frames
    assert max(seen) == cfg.data.frames, "no window longer than the model's clip"
    assert len(seen) == len(window_starts(11, 4, 2)) == 5
    # One window: the same as encoding the clip directly.
    short = encode_video(model, clip[:8])
    direct = model.encode(torch.from_numpy(clip[:8]).permute(3, 0, 1, 2)[None].float() / 127.5 - 1)[0]
    assert torch.allclose(short, direct, atol=1e-5)
    seen.clear()
    rec = reconstruct_video(model, clip, decoder_steps=1, seed=0, rate_draws=2)
    assert max(seen) == cfg.data.frames
    assert rec.reconstruction.shape == clip.shape and rec.reconstruction.dtype == np.uint8
    assert len(rec.psnr_per_frame) == 21 and rec.psnr == pytest.approx(float(np.mean(rec.psnr_per_frame)))
    assert rec.bits_per_pixel > 0 and rec.bits_per_dim > 0
    assert decode_video(model, model.noisy_latent(z[:, :3]), steps=1, seed=0).shape == (6, 16, 16, 3)
