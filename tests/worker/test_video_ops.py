"""The video session ops (video.reconstruct / video.sample) through a real session worker process."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np

from ul_engine.cli.main import main as ul_main
from ul_engine.core.video_io import read_video, write_clip_mp4
from ul_engine.data.bouncing import BouncingSource


def request(proc: subprocess.Popen[str], message: dict) -> tuple[dict, list[dict]]:
    """Send one request; (the answer, the interim lines before it)."""
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(message) + "\n")
    proc.stdin.flush()
    interim = []
    while True:
        line = proc.stdout.readline()
        assert line, "session worker closed its stdout"
        reply = json.loads(line)
        if reply.get("id") != message["id"]:
            continue
        if "event" in reply:
            interim.append(reply)
            continue
        return reply, interim


def test_video_ops_in_a_session_worker(tmp_path: Path):
    home = tmp_path / "home"
    small = ["--set", "train.latent_cache_size=8", "--steps", "2", "--json"]
    assert ul_main(["--home", str(home), "train", "--preset", "bouncing-smoke", "--name", "v1", *small]) == 0
    assert ul_main(["--home", str(home), "train", "--preset", "bouncing-smoke", "--stage", "2", "--from-run", "v1",
                    "--name", "v2", *small]) == 0  # fmt: skip
    clip, _ = BouncingSource(20, 10, seed=4)[0]
    good = Path(write_clip_mp4(tmp_path / "clip.mp4", list(clip), fps=6)["path"])
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes(good.read_bytes()[:-250])
    text = tmp_path / "words.mp4"
    text.write_text("not a video at all")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ul_engine.worker", "--home", str(home), "session"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert json.loads(proc.stdout.readline()) == {"event": "ready"}
        rec_request = {"id": 2, "op": "video.reconstruct", "path": str(good), "run": "v1", "checkpoint": None,
                       "params": {"decoder_steps": 2, "seed": 3, "max_frames": 9}, "cancel_file": None}  # fmt: skip
        rec, progress = request(proc, rec_request)
        assert rec["ok"], rec
        r = rec["result"]
        assert r["frames"] == 9 and len(r["psnr_per_frame"]) == 9 and r["fps"] == 6.0 and not r["cached"]
        assert abs(r["psnr"] - np.mean(r["psnr_per_frame"])) < 1e-9
        assert r["bits_per_pixel"] > 0 and r["bits_per_dim"] > 0
        assert read_video(r["original"])["array"].shape == (9, 16, 16, 3)
        assert read_video(r["reconstruction"])["array"].shape == (9, 16, 16, 3)
        assert "video-cache" in r["reconstruction"]
        assert progress and {p["what"] for p in progress} >= {"encode", "decode"}
        assert all(p["event"] == "progress" and 0 < p["done"] <= p["total"] for p in progress)
        again, progress = request(proc, {**rec_request, "id": 3})
        assert again["result"]["cached"] and again["result"]["psnr_per_frame"] == r["psnr_per_frame"] and not progress
        con = sqlite3.connect(home / "ul.sqlite")
        rows = con.execute("SELECT path, metrics FROM reconstructions").fetchall()
        assert len(rows) == 1 and home / rows[0][0] == Path(r["reconstruction"])  # the store holds the entry
        assert json.loads(rows[0][1])["metrics"]["psnr_per_frame"] == r["psnr_per_frame"]  # the nested entry
        with con:
            con.execute("DELETE FROM reconstructions")
        con.close()
        fresh, progress = request(proc, {**rec_request, "id": 30})
        assert not fresh["result"]["cached"] and progress  # no row, no cache hit: the files alone do not count

        bad, _ = request(proc, {**rec_request, "id": 4, "path": str(text)})
        assert not bad["ok"] and "words.mp4" in bad["error"] and "cannot decode" in bad["error"]
        for i, broken in enumerate((truncated, tmp_path / "missing.mp4")):
            reply, _ = request(proc, {**rec_request, "id": 40 + i, "path": str(broken)})
            assert not reply["ok"] and broken.name in reply["error"] and "Traceback" not in reply["error"]
        cancel = tmp_path / "cancel"
        cancel.touch()
        stopped, _ = request(proc, {**rec_request, "id": 5, "params": {"seed": 9}, "cancel_file": str(cancel)})
        assert not stopped["ok"] and "cancelled" in stopped["error"]

        sample = {"id": 6, "op": "video.sample", "run": "v2", "checkpoint": None, "n": 2, "frames": 6, "steps": 2,
                  "decoder_steps": 2, "seed": 5, "context": None, "context_frames": None,
                  "out_dir": str(tmp_path / "s")}  # fmt: skip
        s, progress = request(proc, sample)
        assert s["ok"], s
        assert s["result"]["frames"] == 6 and s["result"]["context_frames"] == 0 and s["result"]["fps"] == 8.0
        assert [Path(p).name for p in s["result"]["outputs"]] == ["v2-seed000005.mp4", "v2-seed000006.mp4"]
        assert all(read_video(p)["array"].shape == (6, 16, 16, 3) for p in s["result"]["outputs"])
        assert {p["what"] for p in progress} == {"base", "decode"}
        cont, _ = request(proc, {**sample, "id": 7, "n": 1, "frames": None, "context": str(good), "context_frames": 4,
                                 "out_dir": None})  # fmt: skip
        assert cont["ok"] and cont["result"]["context_frames"] == 4 and cont["result"]["frames"] == 8
        assert "video-samples" in cont["result"]["outputs"][0]
        stage1, _ = request(proc, {**sample, "id": 8, "run": "v1"})
        assert not stage1["ok"] and "stage-1 run" in stage1["error"]
        assert request(proc, {"id": 9, "op": "session.shutdown"})[0]["ok"]
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
