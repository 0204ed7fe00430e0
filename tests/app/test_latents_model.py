"""The Latents page's Qt-free model: what it says about a picture's size, which slot a drop fills, when the
interpolation may decode, and the values a scrub exports. Real files, no window."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from app.models import latents as model


def test_the_fit_note_says_what_the_encoder_gets_and_what_reconstruct_does() -> None:
    assert model.fit_note((64, 64), 64, tiled=True) == ""  # the model's own size: nothing to say
    assert model.fit_note(None, 64, tiled=True) == ""  # unreadable: the analysis says why
    assert model.fit_note((640, 427), 64, tiled=True) == (
        "Downscaled from 640×427 to 64×64, its centre square: the model's crop, so the latent and its decode show "
        "only that. Reconstruct encodes the whole photo, in 64×64 tiles."
    )
    assert model.fit_note((512, 512), 64, tiled=False).startswith("Downscaled from 512×512 to 64×64: the model's")
    assert model.fit_note((512, 512), 64, tiled=False).endswith("Reconstruct encodes the whole photo, at its own size.")
    assert model.fit_note((30, 20), 32, tiled=False).startswith("Enlarged from 30×20 to 32×32, its centre square")
    assert model.fit_note((90, 32), 32, tiled=False).startswith("Cropped from 90×32 to 32×32: the model's crop")
    huge = model.fit_note((4000, 3000), 64, tiled=True)  # Reconstruct's own limit comes first
    assert huge.endswith("Reconstruct encodes the whole photo, downscaled to 2048 pixels on its longer side, in tiles.")


def test_the_size_is_read_as_the_photo_is_shown(tmp_path: Path) -> None:
    pixels = np.zeros((30, 50, 3), np.uint8)  # stored 50 wide, 30 high
    plain = tmp_path / "plain.jpg"
    Image.fromarray(pixels).save(plain)
    turned = tmp_path / "turned.jpg"
    exif = Image.Exif()
    exif[0x0112] = 8  # a quarter turn: shown 30 wide, 50 high
    Image.fromarray(pixels).save(turned, exif=exif)
    assert model.source_size(plain) == (50, 30)
    assert model.source_size(turned) == (30, 50)
    notes = tmp_path / "notes.png"
    notes.write_text("not an image")
    assert model.source_size(notes) is None
    assert model.source_size(tmp_path / "missing.png") is None
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    assert model.source_size(fifo) is None  # refused by the path check, never opened (a read would hang)


def test_slots_drop_stale_answers_and_hold_back_a_stale_interpolation() -> None:
    state = model.SlotsState()
    assert state.drop_targets(1) == ["a"] and state.drop_targets(3) == ["a", "b"]
    state.images["a"] = "a.png"
    assert state.drop_targets(1) == ["b"]
    first = state.begin("a")
    second = state.begin("a")  # the image was replaced before the first answer came
    assert not state.current("a", first) and state.current("a", second)
    state.finish("a", {"latent": "a.npy"})
    token_b = state.begin("b")
    state.finish("b", {"latent": "b.npy"})
    assert state.current("b", token_b) and state.pair() == ("a.npy", "b.npy")
    state.begin("b")  # B is encoded again: its latent is stale until the answer
    assert state.pair() is None and state.latent() == "a.npy"
    state.inspect = "b"
    assert state.latent() == "b.npy"


def test_scrub_values_span_the_slider() -> None:
    assert model.spread(lambda p: p / 100, 100, 5) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert model.lambda_of(0, (-10.0, 5.0)) == -10.0 and model.lambda_of(model.NOISE_POSITIONS, (-10.0, 5.0)) == 5.0
    assert model.channel_offset(0) == -model.OFFSET_RANGE and model.channel_offset(model.CHANNEL_POSITIONS) == 3.0
    assert model.chunk(list(range(10)), 8) == [8, 9]
    preview = model.noise_params("z.npy", "prior", 64, preview=True)
    assert preview["prior_steps"] == model.PREVIEW_DENOISER_STEPS
    assert model.noise_params("z.npy", "base", 5, preview=True)["prior_steps"] == 5
    assert model.noise_params("z.npy", "base", 64, preview=False)["prior_steps"] == 64


def test_a_samples_settings_reach_the_trajectory(tmp_path: Path) -> None:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    params = '{"base_steps": 5, "decoder_steps": 6, "sampler": "ddim", "class": 1}'
    for key, value in {"ul-run": "2", "ul-run-name": "s2", "ul-seed": "7", "ul-params": params}.items():
        info.add_text(key, value)
    sample = tmp_path / "s.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(sample, pnginfo=info)
    found = model.trajectory_settings(sample)
    assert (found.seed, found.base_steps, found.decoder_steps, found.problem) == (7, 5, 6, "")
    assert found.params == {"sampler": "ddim", "guidance": None, "class": 1}  # unset: the run's own

    plain = tmp_path / "plain.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(plain)
    assert model.trajectory_settings(plain) == model.TrajectorySettings()

    bad = PngInfo()
    for key, value in {"ul-run": "2", "ul-run-name": "s2", "ul-seed": "1" * 40, "ul-params": params}.items():
        bad.add_text(key, value)
    broken = tmp_path / "broken.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(broken, pnginfo=bad)
    assert "ul-seed" in model.trajectory_settings(broken).problem


def test_the_page_models_load_without_qt_or_torch() -> None:
    """The models of the Latents, Generate and Rate–distortion pages are plain Python: a fresh interpreter that
    imports them has loaded neither Qt nor torch."""
    code = (
        "import sys\n"
        "import app.models.latents, app.models.latents_requests, app.models.generate, app.models.rate_distortion\n"
        "print(sorted(m for m in ('PySide6', 'torch', 'pyqtgraph') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"
