"""Video on the Reconstruct and Generate pages with one real session worker and real `bouncing-smoke` runs.

Reconstruct: a dropped MP4 reconstructs and plays in synced players, the PSNR plot has a point per frame and
seeks on click, the bits are shown; a truncated MP4 and a text file named .mp4 get clear messages without
disturbing the good file; an image model refuses video and a video model refuses images; cancel.
Generate: clips drawn unconditionally and as the continuation of a dropped clip's first k frames fill a
gallery of players; a generated clip exports to an MP4 that reads back with the right shape; an unreadable
context is refused; cancel."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt
from ul_app_testkit import save_artifact
from ul_video_testkit import drop_files, text_named_mp4, truncated_copy, video_home, write_clip

from app.models.jobs import CANCELLED, DONE, ERROR
from ul_engine.core import video_io

STEPS = 2


@pytest.fixture(scope="module")
def live_ctx(qapp, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    from PySide6.QtCore import QSettings

    from app.context import AppContext
    from app.settings import Settings

    home = video_home(tmp_path_factory, "video-pages")
    ini = tmp_path_factory.mktemp("settings") / "s.ini"
    ctx = AppContext(home, Settings(QSettings(str(ini), QSettings.Format.IniFormat)), start_session=True)
    ctx.start()
    yield ctx
    ctx.shutdown()


def make_page(qtbot, ctx, run_name: str):
    from app.pages.reconstruct import ReconstructPage

    page = ReconstructPage(ctx)
    qtbot.addWidget(page)
    page.resize(1280, 800)
    page.show()
    qtbot.waitExposed(page)
    run = next(m for m in page.picker.models if m.name == run_name)
    page.picker.select(run.run_id)
    page.steps.setValue(STEPS)
    page.seed.setValue(0)
    return page


def wait_videos(qtbot, page, timeout: int = 120_000) -> None:
    qtbot.waitUntil(lambda: not page.video_view.busy() and not page.video_view.loader.busy(), timeout=timeout)


def click_plot_at_frame(qtbot, plot, frame: int) -> None:
    """A real mouse click on the plot where frame `frame` (0-based) is drawn."""
    vb = plot.getPlotItem().vb
    y = float(plot.values[frame])
    scene = vb.mapViewToScene(QPointF(frame + 1, y))
    pos = plot.mapFromScene(scene)
    qtbot.mouseClick(plot.viewport(), Qt.MouseButton.LeftButton, pos=pos)


def test_dropped_mp4_reconstructs_and_plays_bad_files_get_messages(qtbot, live_ctx, tmp_path: Path) -> None:
    page = make_page(qtbot, live_ctx, "v1")
    good = write_clip(tmp_path / "bounce.mp4", frames=12)
    cut = truncated_copy(good, tmp_path / "cut.mp4")
    text = text_named_mp4(tmp_path / "notes.mp4")
    drop_files(qtbot, page.drop_zone, [cut, good, text])
    assert page.mode_tabs.currentWidget() is page.video_view
    wait_videos(qtbot, page)
    view = page.video_view
    jobs = {Path(j.path).name: j for j in view.jobs}
    assert [jobs[n].state for n in ("cut.mp4", "bounce.mp4", "notes.mp4")] == [ERROR, DONE, ERROR]
    assert "cut.mp4: cannot decode this video" in jobs["cut.mp4"].error and "cut off" in jobs["cut.mp4"].error
    assert "notes.mp4: not a video file" in jobs["notes.mp4"].error
    assert view.worker_calls == 1  # the bad files never reached the worker

    job = jobs["bounce.mp4"]
    result = job.result
    frames = int(result["frames"])
    assert frames >= 8 and len(result["psnr_per_frame"]) == frames
    assert view.showing is job
    assert [c.title for c in view.player.clips] == ["Original", "Reconstruction"]
    assert [len(c) for c in view.player.clips] == [frames, frames]
    assert view.plot.point_count() == frames
    text_shown = view.metrics.text()
    assert f"{result['bits_per_pixel']:.4f}" in text_shown and f"{result['bits_per_dim']:.3f}" in text_shown
    assert f"{result['psnr']:.2f} dB" in text_shown

    clock = view.player.clock
    assert view.player.counter.text() == f"1 / {frames}"
    view.player.play_button.click()
    qtbot.waitUntil(lambda: clock.frame >= 2, timeout=120_000)
    view.player.play_button.click()
    assert not clock.playing and view.player.counter.text() == f"{clock.frame + 1} / {frames}"
    left, right = view.player.views
    assert left.image().size() == right.image().size()  # both players show the same frame of equal clips

    click_plot_at_frame(qtbot, view.plot, 5)
    assert clock.frame == 5 and view.player.counter.text() == f"6 / {frames}"
    assert view.plot.cursor.value() == 6
    save_artifact(page, "video-reconstruct-page")

    view.list.setCurrentRow(0)  # the truncated file: its message in the page, the players empty
    assert "cut off" in view.metrics.text() and view.player.clips == []
    view.list.setCurrentRow(1)
    assert view.player.clips and view.showing is job


def test_image_model_refuses_video_and_video_model_refuses_images(qtbot, live_ctx, tmp_path: Path) -> None:
    from ul_app_testkit import write_png

    page = make_page(qtbot, live_ctx, "img")
    clip = write_clip(tmp_path / "clip.mp4", frames=8)
    page.add_paths([str(clip)])
    wait_videos(qtbot, page)
    job = page.video_view.jobs[-1]
    assert job.state == ERROR and "img is an image model" in job.error and page.video_view.worker_calls == 0
    assert "img is an image model" in page.video_view.status.text()

    page.picker.select(next(m.run_id for m in page.picker.models if m.name == "v1"))
    png = write_png(tmp_path / "still.png", size=(16, 16))
    page.add_paths([str(png)])
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=30_000)
    item = page.table_model.items[-1]
    assert item.state == "error" and "v1 is a video model" in item.error and page.worker_calls == 0


def test_cancel_drops_queued_videos(qtbot, live_ctx, tmp_path: Path) -> None:
    page = make_page(qtbot, live_ctx, "v1")
    clips = [write_clip(tmp_path / f"c{i}.mp4", frames=8, seed=i) for i in range(3)]
    page.add_paths([str(c) for c in clips])
    page.cancel()
    wait_videos(qtbot, page)
    states = [j.state for j in page.video_view.jobs]
    assert states[1:] == [CANCELLED, CANCELLED] and states[0] in (CANCELLED, DONE)


# ---- Generate ----------------------------------------------------------------------------------------


@pytest.fixture
def gen_page(qtbot, live_ctx):
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


def test_video_run_generates_clips_that_export_to_mp4(qtbot, gen_page, tmp_path: Path) -> None:
    assert gen_page.is_video_run() and gen_page.views.currentWidget() is gen_page.video
    with qtbot.waitSignal(gen_page.finished, timeout=120_000) as done:
        assert gen_page.generate()
    assert done.args[0]["samples"] == 2
    players = gen_page.video.gallery.players
    assert len(players) == 2 and len(gen_page.video.outputs) == 2
    run_frames = int(gen_page.runs.info().config["data"]["frames"])
    clip = players[0].clips[0]
    assert len(clip) == run_frames and clip.title == "seed 3"
    out_dir = gen_page.ctx.store.home / "samples" / gen_page.runs.info().name  # named by the run, not its id
    assert all(Path(p).is_file() and Path(p).is_relative_to(out_dir) for p in gen_page.video.outputs)

    out = tmp_path / "exported.mp4"
    assert players[0].export(out, 0) is not None
    w, h = clip.size
    k = math.ceil(video_io.DEFAULT_MIN_SIDE / min(w, h))
    frames = read_all(out)
    assert frames.shape == (run_frames, padded(h * k), padded(w * k), 3)
    save_artifact(gen_page, "video-generate-page")


def padded(n: int) -> int:
    return n + (-n) % video_io.MACRO_BLOCK


def read_all(path: Path) -> np.ndarray:
    """Every frame of a video file, decoded by ffmpeg: (T, H, W, 3)."""
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = reader.__next__()
    w, h = meta["size"]
    return np.stack([np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in reader])


def test_continue_a_dropped_clip_from_its_first_k_frames(qtbot, gen_page, tmp_path: Path) -> None:
    bad = text_named_mp4(tmp_path / "words.mp4")
    gen_page.video.set_context(str(bad))
    qtbot.waitUntil(lambda: "not a video file" in gen_page.video.message.text(), timeout=120_000)
    assert gen_page.video.context is None

    clip = write_clip(tmp_path / "start.mp4", frames=8)
    drop_files(qtbot, gen_page.video.drop, [clip])
    qtbot.waitUntil(lambda: gen_page.video.context == str(clip), timeout=120_000)
    assert gen_page.video.mode.currentData() == "continue" and "8 frames" in gen_page.video.drop.label.text()
    gen_page.video.k.setValue(2)
    gen_page.n.setValue(1)
    with qtbot.waitSignal(gen_page.finished, timeout=120_000):
        assert gen_page.generate()
    players = gen_page.video.gallery.players
    assert len(players) == 1 and players[0].clips[0].title == "seed 3 · frames 1–2 given"
    player = players[0]
    player.clock.pause()
    player.clock.seek(1)
    assert player.counter.text().endswith("· given")  # frame 2 of 2 given
    player.clock.seek(2)
    assert player.counter.text() == f"3 / {len(player.clips[0])}"  # the first generated frame
    assert "Could not" not in gen_page.status.text()


def test_cancel_stops_video_sampling(qtbot, gen_page) -> None:
    gen_page.n.setValue(4)
    with qtbot.waitSignal(gen_page.finished, timeout=120_000) as done:
        assert gen_page.generate()
        assert gen_page.cancel_button.isEnabled()
        gen_page.cancel()  # the cancel file exists before the worker's first step: nothing is sampled
    assert done.args[0]["cancelled"] and gen_page.video.gallery.players == []
    assert gen_page.status.text().startswith("Cancelled") and gen_page.generate_button.isEnabled()
