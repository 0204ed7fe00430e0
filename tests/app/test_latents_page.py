"""The Latents page with a real session worker on smoke runs: latent views, the four scrubbers decoding while
they move, MP4 and GIF export read back, and clear messages for bad input."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from PySide6.QtCore import QSettings
from ul_app_testkit import save_artifact
from ul_explore_testkit import trained_home, write_image

from app.workers.background import pending_tasks
from ul_engine.core import video_io

WAIT_MS = 120_000


@pytest.fixture(scope="module")
def page_env(qapp, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A window on a home with smoke runs s1 and s2, its session worker started, the Latents page shown."""
    from app.context import AppContext
    from app.main_window import MainWindow
    from app.settings import Settings

    home = trained_home(tmp_path_factory, "latents")
    folder = tmp_path_factory.mktemp("latents-files")
    settings = Settings(QSettings(str(folder / "settings.ini"), QSettings.Format.IniFormat))
    ctx = AppContext(home, settings, start_session=True)
    window = MainWindow(ctx, restore=False)
    window.show()
    ctx.start()
    window.show_page("latents")
    page = window.page("latents")
    yield {"ctx": ctx, "window": window, "page": page, "files": folder}
    window._close_ready = True
    window.close()


def _wait_idle(qtbot, scrubber) -> None:
    qtbot.waitUntil(lambda: not scrubber.busy(), timeout=WAIT_MS)


def test_latent_views_of_two_images(qtbot, page_env) -> None:
    page, files = page_env["page"], page_env["files"]
    assert page.runs.count() == 2 and page.runs.info().name == "s2"  # the newest run; stage 2 adds the base model
    a, b = write_image(files / "a.png", 1), write_image(files / "b.png", 2, (40, 28))
    with qtbot.waitSignal(page.analyzed, timeout=WAIT_MS):
        assert page.set_image("a", a)
    with qtbot.waitSignal(page.strip_ready, timeout=WAIT_MS), qtbot.waitSignal(page.analyzed, timeout=WAIT_MS):
        page.set_image("b", b)
    result = page.results["a"]
    assert result["shape"] == [4, 4, 4] and len(page.tiles.tiles) == 4
    assert all(t.has_image() for t in page.tiles.tiles)
    assert page.pca_view.has_image() and page.rate_view.has_image()
    assert "bits" in page.rate_label.text() and "bits/pixel" in page.rate_label.text()
    assert page.slots["b"].decoded.has_image()
    assert any("fitted from 40×28" in n for n in page.results["b"]["notices"])
    assert len(page.strip.frames) == page.strip_frames.value() == 8
    page.set_inspect("b")
    assert page.tiles.tiles[0].path == page.results["b"]["tiles"][0]


def _exif_rotated_jpeg(path: Path, size: tuple[int, int]) -> Path:
    """A JPEG stored `size` wide and high whose EXIF orientation (6) turns it a quarter: viewers show it upright."""
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.open(write_image(path.with_suffix(".png"), 5, size)).save(path, exif=exif)
    return path


def test_a_picture_not_of_the_runs_size_says_beside_it_how_the_encoder_sees_it(qtbot, page_env) -> None:
    page, files = page_env["page"], page_env["files"]
    note = page.slots["b"].fit_note
    cases = [
        (write_image(files / "wide.png", 3, (40, 28)), "Downscaled from 40×28 to 16×16, its centre square"),
        (write_image(files / "small.png", 4, (10, 12)), "Enlarged from 10×12 to 16×16, its centre square"),
        (_exif_rotated_jpeg(files / "turned.jpg", (40, 28)), "Downscaled from 28×40 to 16×16"),  # as shown upright
    ]
    for path, expected in cases:
        with qtbot.waitSignal(page.analyzed, timeout=WAIT_MS):
            page.set_image("b", path)
        qtbot.waitUntil(lambda: pending_tasks() == 0, timeout=WAIT_MS)
        assert note.isVisible() and note.text().startswith(expected), note.text()
        assert "the model's crop" in note.text()
        assert note.text().endswith("Reconstruct encodes the whole photo, at its own size.")
        assert note.parent() is page.slots["b"] and page.slots["b"].input.has_image()  # beside the picture
    with qtbot.waitSignal(page.analyzed, timeout=WAIT_MS):
        page.set_image("b", write_image(files / "exact.png", 6))  # already 16×16: nothing to say
    qtbot.waitUntil(lambda: pending_tasks() == 0, timeout=WAIT_MS)
    assert not note.isVisible() and note.text() == ""


def test_the_shipped_model_says_reconstruct_decodes_a_photo_in_tiles(qtbot, make_ctx, tmp_path: Path) -> None:
    from app.pages.latents import LatentsPage
    from ul_engine.core.demo import ensure_demo_run

    ctx = make_ctx()
    demo = ensure_demo_run(ctx.store)
    assert demo is not None
    page = LatentsPage(ctx)
    qtbot.addWidget(page)
    page.show()
    assert page.runs.info().name == "demo"
    photo = write_image(tmp_path / "photo.png", 7, (640, 427))
    assert not page.set_image("a", photo)  # no session worker here: nothing is encoded, the size is still read
    note = page.slots["a"].fit_note
    qtbot.waitUntil(lambda: note.text() != "", timeout=WAIT_MS)
    assert note.isVisible()
    assert note.text() == (
        "Downscaled from 640×427 to 64×64, its centre square: the model's crop, so the latent and its decode show "
        "only that. Reconstruct encodes the whole photo, in 64×64 tiles."
    )


def test_a_slot_closed_while_its_size_is_read_gets_no_late_answer(qtbot, tmp_path: Path) -> None:
    from PySide6.QtCore import QCoreApplication, QEvent

    from app.pages.latents_views import ImageSlot

    slot = ImageSlot("A")
    slot.probe(str(write_image(tmp_path / "late.png", 8, (40, 28))), 16, tiled=False)
    slot.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)  # gone before the answer is delivered
    qtbot.waitUntil(lambda: pending_tasks() == 0, timeout=WAIT_MS)  # delivered to nothing: no error


def test_moving_the_interpolation_slider_decodes_frames(qtbot, page_env) -> None:
    page = page_env["page"]
    page.tabs.setCurrentIndex(0)
    scrub = page.interp
    _wait_idle(qtbot, scrub)
    scrub.shown.clear()
    scrub.slider.setSliderDown(True)
    for value in (10, 25, 40, 55, 70, 85):
        scrub.slider.setValue(value)
        qtbot.wait(30)
    scrub.slider.setSliderDown(False)  # release: the full decode
    _wait_idle(qtbot, scrub)
    previews = [v for v, preview in scrub.shown if preview]
    assert previews and set(previews) <= {0.10, 0.25, 0.40, 0.55, 0.70, 0.85}
    assert scrub.shown[-1] == (0.85, False) and scrub.view.has_image()
    assert "full decode" in scrub.timing.text()
    page.strip.frame_clicked.emit(0)  # a film-strip frame moves the slider
    assert scrub.slider.value() == 0
    _wait_idle(qtbot, scrub)
    save_artifact(page_env["window"], "latents-interpolate")


def test_the_noise_level_scrubber_decodes_each_lambda(qtbot, page_env) -> None:
    page = page_env["page"]
    page.tabs.setCurrentIndex(1)
    scrub = page.noise
    _wait_idle(qtbot, scrub)
    for denoiser in ("prior", "base"):
        page.denoiser.setCurrentIndex(page.denoiser.findData(denoiser))
        _wait_idle(qtbot, scrub)
        scrub.shown.clear()
        lambdas = []
        for position in (0, 50, 100, 150):
            scrub.slider.setValue(position)
            _wait_idle(qtbot, scrub)
            lambdas.append(scrub.value())
        assert [v for v, preview in scrub.shown if not preview] == lambdas
        assert lambdas[0] == pytest.approx(-10.0) and lambdas[-1] == pytest.approx(5.0)


def test_channel_edit_and_trajectory(qtbot, page_env) -> None:
    page = page_env["page"]
    page.tiles.channel_clicked.emit(2)
    assert page.channel.value() == 2 and page.current_scrub() == "channel"
    scrub = page.channel_edit
    _wait_idle(qtbot, scrub)
    scrub.shown.clear()
    scrub.slider.setSliderDown(True)
    scrub.slider.setValue(100)
    scrub.slider.setSliderDown(False)
    _wait_idle(qtbot, scrub)
    assert scrub.shown[-1] == (pytest.approx(2.0), False)

    page.tabs.setCurrentIndex(3)
    page.traj_base_steps.setValue(3)
    page.traj_decoder_steps.setValue(3)
    page.preview_steps.setValue(2)
    with qtbot.waitSignal(page.trajectory_ready, timeout=WAIT_MS):
        assert page.record_trajectory()
    assert [f["phase"] for f in page.trajectory] == ["base"] * 3 + ["decoder"] * 3
    page.traj.slider.setValue(1)
    assert page.traj.shown[-1] == (1.0, False) and "base model step 2/3" in page.traj.value_label.text()


def test_exports_read_back_as_mp4_and_gif(qtbot, page_env) -> None:
    page, files = page_env["page"], page_env["files"]
    for kind, frames in (("interpolate", 6), ("trajectory", 6), ("noise", 4)):
        target = files / f"{kind}.mp4"
        with qtbot.waitSignal(page.exported, timeout=WAIT_MS) as signal:
            assert page.export(kind, target, frames=frames)
        result = signal.args[0]
        assert video_io.read_mp4_info(target) == (frames, (256, 256))
        gif_frames, gif_size = video_io.read_gif_info(target.with_suffix(".gif"))
        assert gif_size == (256, 256) and gif_frames == result["gif"]["frames"]
        if kind != "noise":  # λ near 5 gives near-identical frames, which a GIF merges
            assert gif_frames == frames
        assert "Wrote" in page.export_status.text()


def test_an_export_counts_its_frames_then_says_it_writes(qtbot, page_env) -> None:
    page, files = page_env["page"], page_env["files"]
    page.export_steps.clear()
    with qtbot.waitSignal(page.exported, timeout=WAIT_MS):
        assert page.export("interpolate", files / "counted.mp4", frames=10)
        assert page.export_progress.isVisible() and page.export_progress.maximum() == 10
    steps = page.export_steps
    assert [s[:2] for s in steps] == [(0, 10), (4, 10), (8, 10), (10, 10)]  # frames decoded / total…
    assert steps[1][2] == "Decoding frames 4 / 10…"
    assert steps[-1][2] == "Writing counted.mp4 and counted.gif…"  # …then writing
    assert not page.export_progress.isVisible() and video_io.read_mp4_info(files / "counted.mp4")[0] == 10


def test_bad_input_gets_a_clear_message(qtbot, page_env) -> None:
    page, files = page_env["page"], page_env["files"]
    bad = files / "notes.png"
    bad.write_text("not an image")
    page._tokens["b"] += 0
    page.set_image("b", bad)
    qtbot.waitUntil(lambda: "notes.png" in page.status.text(), timeout=WAIT_MS)
    assert "cannot" in page.status.text().lower() or "not" in page.status.text().lower()
    assert page.results["b"] is None and not page.slots["b"].input.has_image()


def test_a_sample_loaded_as_image_a_redraws_the_interpolation(qtbot, page_env) -> None:
    page, files = page_env["page"], page_env["files"]
    a, b = write_image(files / "a2.png", 11), write_image(files / "b2.png", 12)
    for slot, path in (("a", a), ("b", b)):
        with qtbot.waitSignal(page.analyzed, timeout=WAIT_MS):
            page.set_image(slot, path)
    scrub = page.interp
    page.tabs.setCurrentIndex(0)
    _wait_idle(qtbot, scrub)
    scrub.slider.setValue(30)
    _wait_idle(qtbot, scrub)
    before = scrub.view.path
    old_latent = page.results["a"]["latent"]
    used: list[str] = []
    decode = page._frames

    def spy(done, **params):  # which latent each interpolation frame is decoded from
        if params.get("kind") == "interpolate":
            used.append(params["latent"])
        return decode(done, **params)

    page._frames = spy
    try:
        with qtbot.waitSignal(page.analyzed, timeout=WAIT_MS):
            page.open_sample(str(write_image(files / "sample.png", 13)), 2)
            assert scrub.view.path is None and "being encoded" in scrub.timing.text()  # no stale frame meanwhile
        _wait_idle(qtbot, scrub)
    finally:
        del page._frames
    new_latent = page.results["a"]["latent"]
    assert new_latent != old_latent
    assert used and used[-1] == new_latent  # the frame on screen is of the new A, without touching the slider
    assert scrub.view.path != before and scrub.shown[-1] == (0.30, False)
