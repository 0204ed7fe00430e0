"""Video on the Generate page with a real session worker and a real `bouncing-smoke` stage-2 run: clips drawn
unconditionally and as the continuation of a dropped clip's first k frames fill a gallery of players; a
generated clip exports to an MP4 that reads back with the right shape; an unreadable context is refused."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from ul_app_testkit import save_artifact
from ul_video_testkit import text_named_mp4, video_home, write_clip

from ul_engine import video_io


@pytest.fixture(scope="module")
def live_ctx(qapp, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    from PySide6.QtCore import QSettings

    from app.context import AppContext
    from app.settings import Settings

    home = video_home(tmp_path_factory, "video-generate")
    ini = tmp_path_factory.mktemp("settings") / "s.ini"
    ctx = AppContext(home, Settings(QSettings(str(ini), QSettings.Format.IniFormat)), start_session=True)
    ctx.start()
    yield ctx
    ctx.shutdown()


@pytest.fixture
def page(qtbot, live_ctx):
    from app.pages.generate import GeneratePage

    page = GeneratePage(live_ctx)
    qtbot.addWidget(page)
    page.resize(1280, 800)
    page.show()
    qtbot.waitExposed(page)
    assert page.runs.select(next(i for i, r in page.runs.infos.items() if r.name == "v2"))
    page.n.setValue(2)
    page.seed.setValue(3)
    page.base_steps.setValue(2)
    page.decoder_steps.setValue(2)
    return page


def test_video_run_generates_clips_that_export_to_mp4(qtbot, page, tmp_path: Path) -> None:
    assert page.is_video_run() and page.views.currentWidget() is page.video
    with qtbot.waitSignal(page.finished, timeout=120_000) as done:
        assert page.generate()
    assert done.args[0]["samples"] == 2
    players = page.video.gallery.players
    assert len(players) == 2 and len(page.video.outputs) == 2
    run_frames = int(page.runs.info().config["data"]["frames"])
    clip = players[0].clips[0]
    assert len(clip) == run_frames and clip.title == "seed 3"
    out_dir = page.ctx.store.run_dir(page.run_id()) / "samples"
    assert all(Path(p).is_file() and Path(p).is_relative_to(out_dir) for p in page.video.outputs)

    out = tmp_path / "exported.mp4"
    assert players[0].export(out, 0) is not None
    w, h = clip.size
    k = math.ceil(video_io.DEFAULT_MIN_SIDE / min(w, h))
    frames = read_all(out)
    assert frames.shape == (run_frames, padded(h * k), padded(w * k), 3)
    save_artifact(page, "video-generate-page")


def padded(n: int) -> int:
    return n + (-n) % video_io.MACRO_BLOCK


def read_all(path: Path) -> np.ndarray:
    """Every frame of a video file, decoded by ffmpeg: (T, H, W, 3)."""
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = reader.__next__()
    w, h = meta["size"]
    return np.stack([np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in reader])


def test_continue_a_dropped_clip_from_its_first_k_frames(qtbot, page, tmp_path: Path) -> None:
    bad = text_named_mp4(tmp_path / "words.mp4")
    page.video.set_context(str(bad))
    qtbot.waitUntil(lambda: "not a video file" in page.video.message.text(), timeout=10_000)
    assert page.video.context is None

    clip = write_clip(tmp_path / "start.mp4", frames=8)
    page.video.set_context(str(clip))
    qtbot.waitUntil(lambda: page.video.context == str(clip), timeout=10_000)
    assert page.video.mode.currentData() == "continue" and "8 frames" in page.video.drop.label.text()
    page.video.k.setValue(2)
    page.n.setValue(1)
    with qtbot.waitSignal(page.finished, timeout=120_000):
        assert page.generate()
    players = page.video.gallery.players
    assert len(players) == 1 and players[0].clips[0].title == "seed 3 · frames 1–2 given"
    assert "Could not" not in page.status.text()


def test_cancel_stops_video_sampling(qtbot, page) -> None:
    page.n.setValue(4)
    with qtbot.waitSignal(page.finished, timeout=120_000) as done:
        assert page.generate()
        assert page.cancel_button.isEnabled()
        page.cancel()  # the cancel file exists before the worker's first step: nothing is sampled
    assert done.args[0]["cancelled"] and page.video.gallery.players == []
    assert page.status.text().startswith("Cancelled") and page.generate_button.isEnabled()
