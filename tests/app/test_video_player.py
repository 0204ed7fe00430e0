"""The video player on real MP4 files written by imageio-ffmpeg: decoding (bounded, with notes), play/pause,
scrub, frame step, loop, speed (on an injected clock, so timing is exact), a sync group, export and the
messages for files that are not readable videos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.models.clips import decode_video, side_by_side
from app.widgets.playback_clock import PlaybackClock
from app.widgets.video_player import VideoPlayer
from ul_engine.core import video_io
from ul_engine.core.errors import ULError


def numbered_frames(n: int, h: int = 32, w: int = 48) -> list[np.ndarray]:
    """Frame i is a flat grey of level 10·i with a white bar i pixels wide: tells frames apart after H.264."""
    frames = []
    for i in range(n):
        f = np.full((h, w, 3), 10 * i, np.uint8)
        f[:4, : i + 1] = 255
        frames.append(f)
    return frames


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "ramp.mp4"
    video_io.write_mp4(path, numbered_frames(20), fps=10, min_side=1)
    return path


class FakeTime:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_decode_keeps_every_frame_in_order(clip_path: Path) -> None:
    clip = decode_video(clip_path)
    assert len(clip) == 20 and clip.size == (48, 32) and clip.fps == pytest.approx(10.0)
    levels = [float(f[8:, :].mean()) for f in clip.frames]
    assert np.all(np.diff(levels) > 5), levels  # the grey ramp survives the codec, frame by frame
    assert clip.notes == []


def test_decode_is_bounded_and_says_so(clip_path: Path) -> None:
    clip = decode_video(clip_path, max_frames=7, max_side=24)
    assert len(clip) == 7 and clip.source_frames == 20
    assert clip.size == (24, 16) and clip.source_size == (48, 32)
    assert any("first 7 of 20 frames" in n for n in clip.notes)
    assert any("24×16 (from 48×32)" in n for n in clip.notes)


def test_player_controls(qtbot, clip_path: Path) -> None:
    now = FakeTime()
    clock = PlaybackClock(now=now)
    player = VideoPlayer(clock=clock)
    qtbot.addWidget(player)
    player.set_clips([decode_video(clip_path)])
    assert player.counter.text() == "1 / 20" and player.slider.maximum() == 19

    player.play_button.click()
    assert clock.playing and player.play_button.text() == "⏸"
    now.t += 0.55  # 10 fps: five and a half frames later
    clock.tick()
    assert clock.frame == 5 and player.counter.text() == "6 / 20" and player.slider.value() == 5
    player.play_button.click()
    assert not clock.playing
    now.t += 5.0
    clock.tick()
    assert clock.frame == 5  # paused: time passing changes nothing

    player.slider.setValue(12)  # scrub
    assert clock.frame == 12 and player.counter.text() == "13 / 20"
    shown = player.views[0].image()
    assert shown.width() == 48 and shown.pixelColor(6, 1).red() > 200 and shown.pixelColor(30, 1).red() < 170

    player.forward_button.click()
    assert clock.frame == 13
    player.back_button.click()
    player.back_button.click()
    assert clock.frame == 11
    clock.seek(0)
    player.back_button.click()  # looping: one back from the first frame is the last
    assert clock.frame == 19

    player.speed_box.setCurrentIndex(player.speed_box.findData(2.0))
    assert clock.speed == 2.0 and clock.interval_ms() == 50
    clock.seek(0)
    clock.play()
    now.t += 0.5  # 10 fps × 2 = 20 frames per second: ten frames
    clock.tick()
    assert clock.frame == 10
    now.t += 0.6  # twelve more wrap around a looping clip: 22 → 2
    clock.tick()
    assert clock.frame == 2 and clock.playing

    player.loop_box.setChecked(False)
    assert not clock.loop
    now.t += 5.0
    clock.tick()
    assert clock.frame == 19 and not clock.playing  # without loop it stops on the last frame
    player.forward_button.click()
    assert clock.frame == 19  # and stepping does not wrap
    clock.set_speed(100)
    assert clock.speed == 4.0  # clamped to 0.25…4


def test_player_plays_on_its_own_timer(qtbot, clip_path: Path) -> None:
    player = VideoPlayer()
    qtbot.addWidget(player)
    player.set_clips([decode_video(clip_path)])
    player.show()
    player.clock.play()
    qtbot.waitUntil(lambda: player.clock.frame >= 3, timeout=120_000)
    assert player.counter.text().split(" / ")[0] != "1"
    player.clock.pause()


def test_sync_group_shows_the_same_frame_everywhere(qtbot, clip_path: Path, tmp_path: Path) -> None:
    short = tmp_path / "short.mp4"
    video_io.write_mp4(short, numbered_frames(8, 16, 16), fps=10, min_side=1)
    clock = PlaybackClock(now=FakeTime())
    a, b = VideoPlayer(clock=clock), VideoPlayer(clock=clock)
    for p in (a, b):
        qtbot.addWidget(p)
    a.set_clips([decode_video(clip_path)])
    b.set_clips([decode_video(clip_path, title="again"), decode_video(short)])
    b.slider.setValue(15)
    assert a.slider.value() == 15 and a.counter.text() == b.counter.text() == "16 / 20"
    assert b.views[1].image().width() == 16  # the shorter clip holds its last frame


def test_export_mp4_and_gif_read_back(qtbot, clip_path: Path, tmp_path: Path) -> None:
    player = VideoPlayer()
    qtbot.addWidget(player)
    player.set_clips([decode_video(clip_path), decode_video(clip_path, title="b")])
    with qtbot.waitSignal(player.exported):
        info = player.export(tmp_path / "out.mp4", 0)
    assert info is not None
    count, size = video_io.read_mp4_info(tmp_path / "out.mp4")
    assert count == 20 and size == (384, 256)  # 48×32 enlarged 8× to reach 256 px on the short side
    gif = player.export(tmp_path / "out.gif", None)
    assert gif is not None
    frames, (w, h) = video_io.read_gif_info(tmp_path / "out.gif")
    assert frames == 20 and h == 256 and w == (48 * 2 + 4) * 8  # both side by side, enlarged 8×


def test_side_by_side_enlarges_and_pads() -> None:
    out = side_by_side([np.zeros((8, 8, 3), np.uint8), np.ones((16, 10, 3), np.uint8), np.ones((5, 5, 3), np.uint8)])
    assert out.shape == (16, 16 + 4 + 10 + 4 + 5, 3)


def test_unreadable_files_give_clear_messages(tmp_path: Path, clip_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n")
    with pytest.raises(ULError, match=r"notes\.mp4: not a video file"):
        decode_video(text)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip_path.read_bytes()[: clip_path.stat().st_size // 2])
    with pytest.raises(ULError, match=r"cut\.mp4: cannot decode this video: .*cut off"):
        decode_video(cut)
    empty = tmp_path / "empty.webm"
    empty.write_bytes(b"")
    with pytest.raises(ULError, match="empty"):
        decode_video(empty)
    with pytest.raises(ULError, match="cannot read"):
        decode_video(tmp_path / "missing.mp4")


def test_export_without_clips_fails_politely(qtbot, tmp_path: Path) -> None:
    player = VideoPlayer()
    qtbot.addWidget(player)
    with qtbot.waitSignal(player.failed):
        assert player.export(tmp_path / "x.mp4") is None
    assert not player.export_button.isEnabled() and player.counter.text() == "0 / 0"


def test_export_menu_asks_for_a_file_and_writes_it(qtbot, clip_path: Path, tmp_path: Path, monkeypatch) -> None:
    from PySide6.QtWidgets import QFileDialog

    player = VideoPlayer()
    qtbot.addWidget(player)
    player.set_clips([decode_video(clip_path, title="A"), decode_video(clip_path, title="B")])
    labels = [a.text() for a in player.export_menu.actions()]
    assert labels == ["“A”…", "“B”…", "All side by side…"]
    target = tmp_path / "picked"  # no suffix: the chosen filter decides
    monkeypatch.setattr(
        QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(target), "Animated GIF (*.gif)"))
    )
    with qtbot.waitSignal(player.exported) as written:
        player.export_menu.actions()[1].trigger()
    assert written.args == [str(target) + ".gif"]
    assert video_io.read_gif_info(target.with_suffix(".gif"))[0] == 20


def test_keys_play_and_step(qtbot, clip_path: Path) -> None:
    from PySide6.QtCore import Qt

    player = VideoPlayer(clock=PlaybackClock(now=FakeTime()))
    qtbot.addWidget(player)
    player.set_clips([decode_video(clip_path)])
    qtbot.keyClick(player, Qt.Key.Key_Right)
    qtbot.keyClick(player, Qt.Key.Key_Right)
    assert player.clock.frame == 2
    qtbot.keyClick(player, Qt.Key.Key_Left)
    assert player.clock.frame == 1
    qtbot.keyClick(player, Qt.Key.Key_Space)
    assert player.clock.playing
    qtbot.keyClick(player, Qt.Key.Key_Space)
    assert not player.clock.playing
