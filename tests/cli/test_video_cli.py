"""`ul` on video: bouncing-smoke trains both stages; reconstruct and sample read and write real MP4 files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ul_testkit import ul_json as ul

from ul_engine.cli.main import main as ul_main
from ul_engine.core.video_io import gif_frame_rate, read_gif_info, read_video, write_clip_mp4
from ul_engine.data.bouncing import BouncingSource


@pytest.fixture(scope="module")
def video_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("ul-video")
    assert ul_main(["--home", str(home), "train", "--preset", "bouncing-smoke", "--name", "v1", "--steps", "4",
                    "--json"]) == 0  # fmt: skip
    assert ul_main(["--home", str(home), "train", "--preset", "bouncing-smoke", "--stage", "2", "--from-run", "v1",
                    "--name", "v2", "--steps", "4", "--json"]) == 0  # fmt: skip
    return home


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 frames of 24×24 bouncing shapes (not the model's 16×16: the CLI fits them)."""
    clip, _ = BouncingSource(24, 12, seed=9)[0]
    return Path(write_clip_mp4(tmp_path_factory.mktemp("clips") / "clip.mp4", list(clip), fps=10)["path"])


def test_both_stages_trained(video_home: Path, capsys: pytest.CaptureFixture[str]):
    code, runs, _ = ul(capsys, video_home, "runs")
    assert code == 0
    assert [(r["name"], r["stage"], r["status"], r["step"]) for r in runs["runs"]] == [
        ("v1", 1, "completed", 4), ("v2", 2, "completed", 4)
    ]  # fmt: skip


def test_reconstruct_video_and_bad_files(
    video_home: Path, clip_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(clip_file.read_bytes()[:-300])
    text = tmp_path / "text.mp4"
    text.write_text("hello, not a video")
    code, out, err = ul(capsys, video_home, "reconstruct", "--run", "v1", str(clip_file), str(truncated), str(text),
                        "--out", str(tmp_path / "out"), "--decoder-steps", "2")  # fmt: skip
    assert code == 2 and "2 of 3 inputs could not be reconstructed" in err and "Traceback" not in err
    good, cut, bad = out["results"]
    assert good["error"] is None and good["frames"] == 12 and len(good["psnr_per_frame"]) == 12
    assert all(np.isfinite(good["psnr_per_frame"])) and good["psnr"] == pytest.approx(np.mean(good["psnr_per_frame"]))
    assert good["bits_per_pixel"] > 0 and good["bits_per_dim"] > 0 and good["fps"] == pytest.approx(10)
    assert read_video(good["reconstruction"])["array"].shape == (12, 16, 16, 3)
    assert read_video(good["original"])["array"].shape == (12, 16, 16, 3)
    assert "truncated.mp4" in cut["error"] and "cannot decode" in cut["error"]
    assert "text.mp4" in bad["error"] and "cannot decode" in bad["error"]


def test_reconstruct_rejects_zero_max_frames(video_home: Path, clip_file: Path, capsys: pytest.CaptureFixture[str]):
    code, out, _err = ul(capsys, video_home, "reconstruct", "--run", "v1", str(clip_file), "--max-frames", "0")
    assert code == 2 and "--max-frames: must be at least 1" in out["error"]  # refused while parsing


def test_sample_clips_unconditional_longer_and_as_gif(
    video_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    code, out, _ = ul(capsys, video_home, "sample", "--run", "v2", "--n", "2", "--frames", "11", "--steps", "2",
                      "--decoder-steps", "2", "--out", str(tmp_path / "s"))  # fmt: skip
    assert code == 0 and out["frames"] == 11 and out["context_frames"] == 0 and len(out["outputs"]) == 2
    for path in out["outputs"]:
        assert read_video(path)["array"].shape == (11, 16, 16, 3)
        assert json.loads(Path(path + ".json").read_text())["seed"] in (0, 1)
    code, out, _ = ul(capsys, video_home, "sample", "--run", "v2", "--n", "1", "--steps", "2", "--decoder-steps",
                      "2", "--format", "gif", "--out", str(tmp_path / "g"))  # fmt: skip
    assert code == 0 and out["outputs"][0].endswith(".gif")
    frames, size = read_gif_info(out["outputs"][0])
    assert size == (16, 16) and 1 <= frames <= 8
    # GIF keeps whole centiseconds: the clips' 8 fps are held as 12 cs per frame, and the JSON says so
    assert out["fps"] == pytest.approx(gif_frame_rate(out["outputs"][0])) == pytest.approx(100 / 12)


def test_sample_continues_a_given_clip(
    video_home: Path, clip_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    args = ["--context", str(clip_file), "--context-frames", "3", "--steps", "2", "--decoder-steps", "2"]
    code, out, _ = ul(capsys, video_home, "sample", "--run", "v2", "--n", "1", *args, "--out", str(tmp_path))
    assert code == 0 and out["context_frames"] == 3 and out["frames"] == 8
    assert read_video(out["outputs"][0])["array"].shape == (8, 16, 16, 3)
    code, out, _err = ul(capsys, video_home, "sample", "--run", "v2", "--context", str(clip_file),
                        "--context-frames", "8", "--out", str(tmp_path))  # fmt: skip
    assert code == 2 and "nothing would be generated" in out["error"]
    code, out, _ = ul(capsys, video_home, "sample", "--run", "v1", "--frames", "8", "--out", str(tmp_path))
    assert code == 2 and "stage-1 run" in out["error"]


def test_eval_on_a_video_run(video_home: Path, capsys: pytest.CaptureFixture[str]):
    code, out, _ = ul(capsys, video_home, "eval", "--run", "v1", "--n", "2", "--decoder-steps", "2", "--no-record")
    assert code == 0 and out["n"] == 2 and out["psnr"] > 0 and 0 < out["bits_per_pixel"] < out["bits_per_dim"]


def test_eval_fvd_bouncing_on_a_video_run(video_home: Path, capsys: pytest.CaptureFixture[str]):
    """`--fd N` on a video run: FVD-bouncing of N stage-2 clips against N validation clips, named as such."""
    from ul_engine.eval.metrics.bouncing_features import DEFAULT_PATH

    code, out, _ = ul(capsys, video_home, "eval", "--run", "v2", "--n", "2", "--fd", "8", "--steps", "2",
                      "--decoder-steps", "2", "--no-record")  # fmt: skip
    fvd = out["fvd_bouncing"]
    assert code == 0 and fvd["metric"] == "fvd_bouncing" and fvd["samples"] == "stage2"
    assert fvd["n_real"] == fvd["n_fake"] == 8 and np.isfinite(fvd["value"]) and fvd["value"] > 0
    assert fvd["feature_net"]["sha256"] == json.loads(DEFAULT_PATH.with_suffix(".json").read_text())["sha256"]
    assert "fd_shapes" not in out and "fid_inception_v3" not in out
    capsys.readouterr()  # the human-readable form names the metric too
    assert ul_main(["--home", str(video_home), "eval", "--run", "v1", "--n", "1", "--fd", "4", "--prior-samples",
                    "--steps", "2", "--decoder-steps", "2", "--no-record"]) == 0  # fmt: skip
    assert "fvd_bouncing:" in capsys.readouterr().out
    code, out, _ = ul(capsys, video_home, "eval", "--run", "v2", "--n", "1", "--fd", "4",
                      "--inception-weights", str(DEFAULT_PATH))  # fmt: skip
    assert code == 2 and "no I3D loader" in out["error"]
