"""Latent-space exploration: the per-position rate map, interpolation, the noise-level push, channel edits,
generation and trajectories against `ul sample`'s images, MP4/GIF export, the session ops and `ul interpolate`."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from ul_testkit import ul_process as _ul

from ul_engine.core import video_io
from ul_engine.core.config import resolve
from ul_engine.core.errors import ULError
from ul_engine.inference import latents as explore
from ul_engine.inference import sample as sampling
from ul_engine.model import LatentBase, UnifiedLatents


@pytest.fixture(scope="module")
def models() -> tuple[UnifiedLatents, LatentBase]:
    torch.manual_seed(0)
    return UnifiedLatents(resolve("smoke")).eval(), LatentBase(resolve("smoke", stage=2)).eval()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Smoke runs s1 (stage 1) and s2 (stage 2), 20 steps each (shared with the app tests when they ran first)."""
    shared = tmp_path_factory.getbasetemp() / "ul-explore-smoke"
    if not (shared / "READY").is_file():
        shutil.rmtree(shared, ignore_errors=True)
        for args in (("--name", "s1"), ("--stage", "2", "--from-run", "s1", "--name", "s2")):
            proc = _ul(shared, "train", "--preset", "smoke", "--steps", "20", *args, "--json")
            assert proc.returncode == 0, proc.stderr[-2000:]
        (shared / "READY").write_text("ok")
    home = tmp_path_factory.mktemp("explore") / "home"
    shutil.copytree(shared, home, ignore=shutil.ignore_patterns("READY"))
    return home


def _image(path: Path, seed: int, size: tuple[int, int] = (16, 16)) -> Path:
    rng = np.random.default_rng(seed)
    arr = np.zeros((size[1], size[0], 3), np.uint8)
    arr[..., 0] = np.linspace(0, 255, size[0]).astype(np.uint8)[None]
    y0, x0 = rng.integers(0, size[1] // 2), rng.integers(0, size[0] // 2)
    arr[y0 : y0 + size[1] // 2, x0 : x0 + size[0] // 2] = rng.integers(0, 256, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


# ---- the math ------------------------------------------------------------------------------------


def test_rate_map_sums_to_the_rate_estimate(models) -> None:
    model, _ = models
    z = torch.randn(3, *model.cfg.latent_shape())
    torch.manual_seed(7)
    per_position = explore.rate_map(model, z, draws=8)
    torch.manual_seed(7)
    total = model.estimate_rate(z, draws=8)
    assert per_position.shape == (3, *z.shape[2:])
    torch.testing.assert_close(per_position.sum(dim=(1, 2)), total, rtol=1e-5, atol=1e-4)
    gen = torch.Generator().manual_seed(3)
    again = explore.rate_map(model, z, draws=8, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(explore.rate_map(model, z, draws=8, generator=gen), again)


def test_rate_map_puts_the_bits_where_the_latent_is_unlikely(models) -> None:
    """A latent that is zero except one position costs (almost) nothing but there."""
    model, _ = models
    z = torch.zeros(1, *model.cfg.latent_shape())
    z[0, :, 1, 2] = 6.0
    rmap = explore.rate_map(model, z, draws=8, generator=torch.Generator().manual_seed(0))[0]
    assert int(rmap.argmax()) == 1 * z.shape[-1] + 2


def test_slerp_and_lerp(models) -> None:
    a, b = torch.randn(4, 4, 4), torch.randn(4, 4, 4)
    for mode in explore.INTERPOLATION_MODES:
        path = explore.interpolate(a, b, [0.0, 0.5, 1.0], mode)
        torch.testing.assert_close(path[0], a, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(path[-1], b, rtol=1e-5, atol=1e-5)
    b_same_norm = b * a.norm() / b.norm()
    mid = explore.slerp(a, b_same_norm, [0.5])[0]
    assert mid.norm() == pytest.approx(float(a.norm()), rel=1e-4)
    assert explore.lerp(a, -a, [0.5])[0].abs().max() < 1e-6
    with pytest.raises(ULError, match="differ in shape"):
        explore.interpolate(a, torch.randn(4, 2, 2), [0.5])
    with pytest.raises(ULError, match="unknown interpolation mode"):
        explore.interpolate(a, b, [0.5], "cubic")


def test_channel_edit_and_colours() -> None:
    z = torch.arange(2 * 3 * 3, dtype=torch.float32).reshape(2, 3, 3)
    edited = explore.edit_channel(z, 1, scale=2.0, offset=-1.0)
    torch.testing.assert_close(edited[1], z[1] * 2 - 1)
    torch.testing.assert_close(edited[0], z[0])
    with pytest.raises(ULError, match="channels 0–1"):
        explore.edit_channel(z, 5)
    tiles = explore.channel_tiles(np.array([[[-2.0, 0.0]], [[1.0, 2.0]]]))
    assert tiles[0][0, 0].tolist() == [5, 48, 97] and tiles[1][0, 1].tolist() == [103, 0, 31]  # one shared scale
    assert tiles[0][0, 1].tolist() == [247, 247, 247]
    rgb = explore.pca_rgb(np.random.default_rng(0).normal(size=(4, 5, 6)))
    assert rgb.shape == (5, 6, 3) and rgb.dtype == np.uint8 and rgb.min() == 0 and rgb.max() == 255
    assert explore.pca_rgb(np.ones((1, 2, 2))).shape == (2, 2, 3)  # one channel, constant: grey


def test_decodes_are_repeatable_and_the_noise_push_ends_at_z0(models) -> None:
    model, base = models
    z = torch.randn(*model.cfg.latent_shape())
    one = explore.decode_latents(model, z[None], seed=3, steps=2)
    assert np.array_equal(one, explore.decode_latents(model, z[None], seed=3, steps=2))
    top = explore.renoise_denoise(model, z, 5.0, seed=3, steps=4)
    torch.testing.assert_close(top, explore.noisy_latents(model, z[None], 3))
    for denoiser in (None, base):
        low = explore.renoise_denoise(model, z, -3.0, seed=3, steps=4, base=denoiser)
        assert low.shape == (1, *z.shape) and torch.isfinite(low).all()
    grid = explore.partial_grid(model.latent_schedule, -3.0, 4)
    assert grid[0] == -3.0 and grid[-1] == 5.0 and bool((grid[1:] > grid[:-1]).all())
    assert explore.denoiser_steps(model.latent_schedule, 4.9, 64) < explore.denoiser_steps(
        model.latent_schedule, -9.0, 64
    )


def test_generate_and_trajectory_agree_whatever_the_batch(models) -> None:
    """`generate` is the one image-sampling function (`ul sample`, the Generate page, the FD samples): a sample
    depends on its seed alone, and a trajectory's last frame is that sample."""
    model, base = models
    images, latents = sampling.generate(base, model, [5, 6], base_steps=3, decoder_steps=3)
    one_by_one, _ = sampling.generate(base, model, [5, 6], base_steps=3, decoder_steps=3, batch_size=1)
    assert images.shape[0] == 2 and images.dtype == np.uint8
    assert np.abs(images.astype(int) - one_by_one).max() <= 1
    assert latents.shape == (2, *model.cfg.latent_shape())
    frames, final = sampling.sample_trajectory(base, model, seed=6, base_steps=3, decoder_steps=3, preview_steps=2)
    assert [(f.phase, f.index) for f in frames] == [("base", i) for i in range(3)] + [("decoder", i) for i in range(3)]
    assert np.array_equal(frames[-1].image, final)
    assert np.abs(final.astype(int) - images[1]).max() <= 1
    calls = []
    with pytest.raises(explore.samplers.SamplingCancelled):
        sampling.generate(
            base, model, [1], base_steps=5, decoder_steps=5, cancel=lambda: calls.append(1) or len(calls) > 2
        )
    with pytest.raises(ULError, match="out of range"):
        sampling.generate(base, model, [1], base_steps=1, decoder_steps=1, class_label=9)


def test_random_classes_come_from_each_seed_and_redraw_as_the_recorded_class(models) -> None:
    """'random' gives a seed its class whatever else is drawn with it, reaches every class, and the class a
    sample records redraws that very sample (its PNG is then a plain class-K sample)."""
    from types import SimpleNamespace

    model, base = models
    seeds = list(range(40))
    classes = sampling.seed_classes(base, "random", seeds)
    assert classes == sampling.seed_classes(base, "random", seeds[::-1])[::-1]
    assert set(classes) == set(range(base.num_classes))
    images, _ = sampling.generate(base, model, [3, 4, 5], base_steps=2, decoder_steps=2, guidance=2.0,
                                  class_label="random")  # fmt: skip
    for seed, image in zip((3, 4, 5), images, strict=True):
        alone, _ = sampling.generate(base, model, [seed], base_steps=2, decoder_steps=2, guidance=2.0,
                                     class_label=classes[seed])  # fmt: skip
        assert np.abs(alone[0].astype(int) - image).max() <= 1
    assert sampling.seed_classes(base, None, [1, 2]) == [None, None]
    assert sampling.seed_classes(base, "2", [1, 2]) == [2, 2]
    with pytest.raises(ULError, match="class must be a class index"):
        sampling.seed_classes(base, "any", [1])
    with pytest.raises(ULError, match="not class-conditional"):
        sampling.seed_classes(SimpleNamespace(num_classes=0), "random", [1])


# ---- video ---------------------------------------------------------------------------------------


def test_mp4_and_gif_read_back_with_their_frame_count_and_size(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(7)]
    mp4 = video_io.write_mp4(tmp_path / "a.mp4", frames, fps=10)
    assert mp4["frames"] == 7 and mp4["size"] == [256, 256]
    assert video_io.read_mp4_info(tmp_path / "a.mp4") == (7, (256, 256))
    gif = video_io.write_gif(tmp_path / "a.gif", frames, fps=10)
    assert video_io.read_gif_info(tmp_path / "a.gif") == (7, (256, 256)) and gif["frames"] == 7
    odd = [rng.integers(0, 256, (20, 36, 3), dtype=np.uint8) for _ in range(3)]
    info = video_io.write_mp4(tmp_path / "odd.mp4", odd)  # ×13 → 260×468, padded to 272×480
    assert info["size"] == [480, 272] and video_io.read_mp4_info(tmp_path / "odd.mp4") == (3, (480, 272))
    assert not list(tmp_path.glob(".*tmp*"))
    with pytest.raises(ULError, match="no frames"):
        video_io.write_mp4(tmp_path / "none.mp4", [])
    with pytest.raises(ULError, match="frame 1 is"):
        video_io.write_gif(tmp_path / "mixed.gif", [frames[0], odd[0]])


# ---- session ops and the CLI on trained runs -----------------------------------------------------


def test_session_ops(trained: Path, tmp_path: Path) -> None:
    from ul_engine.store import Store
    from ul_engine.worker.session import Session

    store = Store.open(trained)
    session = Session(store)
    try:
        a, b = _image(tmp_path / "a.png", 1, (24, 20)), _image(tmp_path / "b.png", 2)
        ra = session.handle({"op": "latents.analyze", "run": "s1", "image": str(a), "out": str(tmp_path / "A")})
        rb = session.handle({"op": "latents.analyze", "run": "s1", "image": str(b), "out": str(tmp_path / "B")})
        assert ra["shape"] == [4, 4, 4] and len(ra["tiles"]) == 4 and ra["source"] == "encoded"
        assert any("fitted from 24×20" in n for n in ra["notices"])
        assert ra["rate"]["bits"] == pytest.approx(sum(map(sum, ra["rate_map_values"])) / math.log(2), rel=1e-3)
        assert np.load(ra["latent"], allow_pickle=False).shape == (4, 4, 4)
        for key in ("input", "decoded", "pca", "rate_map", *ra["tiles"]):
            assert Path(ra.get(key, key)).is_file()

        def frames(**kw):
            req = {"op": "latents.frames", "run": "s1", "latent": ra["latent"], "out": str(tmp_path / "F"), **kw}
            return session.handle(req)

        inter = frames(kind="interpolate", latent_b=rb["latent"], values=[0, 0.5, 1], steps=2, prefix="i")
        assert len(inter["images"]) == 3 and all(Path(p).is_file() for p in inter["images"])
        plain = frames(kind="plain", steps=2, prefix="p")
        first = np.asarray(Image.open(inter["images"][0]))
        assert np.array_equal(first, np.asarray(Image.open(plain["images"][0])))  # t = 0 is A's own decode
        noise = frames(kind="noise", values=[-8, 0, 5], steps=2, prior_steps=8, prefix="n")
        assert len(noise["images"]) == 3 and noise["denoiser_steps"][-1] <= noise["denoiser_steps"][0]
        with pytest.raises(ULError, match="no base model"):
            frames(kind="noise", values=[0], denoiser="base")
        chan = frames(kind="channel", channel=2, edit="offset", values=[-2, 0, 2], steps=2, prefix="c")
        assert len(chan["images"]) == 3
        with pytest.raises(ULError, match="unknown frame kind"):
            frames(kind="warp")
        with pytest.raises(ULError, match="does not exist"):
            session.handle({"op": "latents.frames", "run": "s1", "latent": str(tmp_path / "x.npy"), "out": "o"})
        (tmp_path / "bad.npy").write_bytes(b"not numpy")
        with pytest.raises(ULError, match="not a latent file"):
            frames(latent=str(tmp_path / "bad.npy"))

        out = tmp_path / "S"
        events: list[dict] = []
        session.emit = events.append
        gen = session.handle({"op": "image.sample", "run": "s2", "seed": 4, "n": 2, "base_steps": 3,
                              "decoder_steps": 3, "out": str(out)})  # fmt: skip
        assert [o["seed"] for o in gen["outputs"]] == [4, 5] and not gen["cancelled"]
        assert events[0] == {"event": "progress", "done": 0, "total": 6, "what": "sample"}
        assert events[-1] == {"event": "progress", "done": 6, "total": 6, "what": "sample"}
        text = Image.open(gen["outputs"][0]["path"]).text
        assert text["ul-run"] == "2" and text["ul-seed"] == "4" and text["ul-run-name"] == "s2"
        assert json.loads(text["ul-params"]) == {"base_steps": 3, "decoder_steps": 3, "sampler": "ancestral",
                                                 "guidance": 1.0, "class": None}  # fmt: skip
        assert len(text["ul-checkpoint-sha256"]) == 64
        again = session.handle({"op": "latents.analyze", "run": "s2", "image": gen["outputs"][0]["path"],
                                "out": str(tmp_path / "G")})  # fmt: skip
        assert again["source"] == "generated"
        noise_base = session.handle({"op": "latents.frames", "run": "s2", "latent": again["latent"],
                                     "kind": "noise", "denoiser": "base", "values": [-2], "steps": 2,
                                     "out": str(tmp_path / "F")})  # fmt: skip
        assert len(noise_base["images"]) == 1
        (tmp_path / "cancel").touch()
        cancelled = session.handle({"op": "image.sample", "run": "s2", "n": 3, "out": str(tmp_path / "C"),
                                    "cancel_file": str(tmp_path / "cancel")})  # fmt: skip
        assert cancelled["cancelled"] and cancelled["outputs"] == []
        with pytest.raises(ULError, match="stage-1 run"):
            session.handle({"op": "image.sample", "run": "s1", "out": str(out)})
        with pytest.raises(ULError, match="out of range"):
            session.handle({"op": "image.sample", "run": "s2", "class_label": 7, "out": str(out)})
        mixed = session.handle({"op": "image.sample", "run": "s2", "seed": 8, "n": 3, "base_steps": 2,
                                "decoder_steps": 2, "class_label": "random", "out": str(tmp_path / "R")})  # fmt: skip
        assert mixed["params"]["class"] == "random"
        for o in mixed["outputs"]:  # each PNG records the class it got, so dropping it redraws it exactly
            recorded = json.loads(Image.open(o["path"]).text["ul-params"])["class"]
            assert isinstance(o["class"], int) and recorded == o["class"]

        traj = session.handle({"op": "latents.trajectory", "run": "s2", "seed": 5, "base_steps": 3,
                               "decoder_steps": 3, "preview_steps": 2, "out": str(tmp_path / "T")})  # fmt: skip
        assert [f["phase"] for f in traj["frames"]] == ["base"] * 3 + ["decoder"] * 3
        sample = np.asarray(Image.open(gen["outputs"][1]["path"])).astype(int)
        assert np.abs(np.asarray(Image.open(traj["final"])).astype(int) - sample).max() <= 1

        video = session.handle({"op": "frames.export", "frames": inter["images"], "mp4": str(tmp_path / "v.mp4"),
                                "gif": str(tmp_path / "v.gif"), "fps": 8})  # fmt: skip
        assert video["mp4"]["frames"] == 3 and video_io.read_mp4_info(tmp_path / "v.mp4") == (3, (256, 256))
        assert video_io.read_gif_info(tmp_path / "v.gif")[1] == (256, 256)
    finally:
        store.close()


def test_ul_interpolate(trained: Path, tmp_path: Path) -> None:
    a, b = _image(tmp_path / "a.png", 1), _image(tmp_path / "b.png", 2, (40, 30))
    out = tmp_path / "ab.mp4"
    proc = _ul(trained, "interpolate", "--run", "s1", str(a), str(b), "--frames", "5", "--out", str(out),
               "--decoder-steps", "2", "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["frames"] == 5 and result["size"] == [256, 256] and result["mode"] == "slerp"
    assert video_io.read_mp4_info(out) == (5, (256, 256))
    for args, message in (
        (("--frames", "1", "--out", str(out)), "must be between 2 and 2000"),
        (("--frames", "3", "--out", str(tmp_path / "x.avi")), "must end in .mp4 or .gif"),
    ):
        bad = _ul(trained, "interpolate", "--run", "s1", str(a), str(b), *args)
        assert bad.returncode == 2 and message in bad.stderr and "Traceback" not in bad.stderr
    missing = _ul(trained, "interpolate", "--run", "s1", str(a), str(tmp_path / "nope.png"), "--out", str(out))
    assert missing.returncode == 2 and "nope.png" in missing.stderr


def test_labelled_samples_are_each_class_drawn_from_its_own_seeds(models: tuple[UnifiedLatents, LatentBase]):
    """Guided FD draws sample i for labels[i] from seed + i: the very image `generate` gives for that class."""
    from types import SimpleNamespace

    from ul_engine.inference.loading import LoadedRun

    stage1, base = models
    cfg = resolve("smoke", stage=2)
    loaded = LoadedRun(SimpleNamespace(id=1, name="r"), cfg, stage1, base, 7, "0" * 64)
    labels = [2, 0, 2, 1]
    got = sampling.generated_samples(loaded, 4, base_steps=2, decoder_steps=2, seed=10, labels=labels, guidance=3.0)
    for i, label in enumerate(labels):
        one, _ = sampling.generate(base, stage1, [10 + i], base_steps=2, decoder_steps=2,
                                   sampler=cfg.sampling.sampler, guidance=3.0, class_label=label)  # fmt: skip
        assert torch.equal(got[i], sampling.to_model_tensor(one)[0])
    with pytest.raises(ULError, match="3 class labels for 4"):
        sampling.generated_samples(loaded, 4, base_steps=2, decoder_steps=2, labels=[0, 1, 2])
