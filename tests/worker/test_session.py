"""The resident session worker over real pipes: ping, devices, reconstruct, sample, bad requests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from ul_engine.cli.main import main as ul_main


def request(proc: subprocess.Popen[str], message: dict) -> dict:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(message) + "\n")
    proc.stdin.flush()
    while True:
        line = proc.stdout.readline()
        assert line, "session worker closed its stdout"
        reply = json.loads(line)
        if reply.get("id") == message["id"]:
            return reply


def test_session_answers_interactive_requests(tmp_path: Path):
    home = tmp_path / "home"
    assert ul_main(["--home", str(home), "train", "--preset", "smoke", "--name", "s1", "--steps", "20", "--json"]) == 0
    assert ul_main(["--home", str(home), "train", "--preset", "smoke", "--stage", "2", "--from-run", "s1",
                    "--steps", "20", "--json"]) == 0  # fmt: skip
    image = tmp_path / "in.png"
    Image.fromarray((np.random.default_rng(1).random((16, 24, 3)) * 255).astype(np.uint8)).save(image)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ul_engine.worker", "--home", str(home), "session"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert json.loads(proc.stdout.readline()) == {"event": "ready"}
        assert request(proc, {"id": 1, "op": "ping"})["ok"]
        devices = request(proc, {"id": 2, "op": "devices"})["result"]
        assert devices["cpu"]["cores"] >= 1 and isinstance(devices["gpus"], list)
        inputs = [str(image), str(tmp_path / "nope.png")]
        rec = request(proc, {"id": 3, "op": "reconstruct", "run": "s1", "inputs": inputs,
                             "out": str(tmp_path / "out"), "decoder_steps": 4})  # fmt: skip
        good, bad = rec["result"]["results"]
        assert Path(good["output"]).is_file() and good["psnr"] > 0
        # the same path and record as `ul reconstruct --json`: the run and checkpoint it came from, the bits
        assert good["run"] == "s1" and good["checkpoint_step"] == 20 and good["bits_per_pixel"] > 0
        assert "nope.png" in bad["error"]
        samples = request(proc, {"id": 4, "op": "sample", "run": "s1", "n": 2, "out": str(tmp_path / "s")})
        assert not samples["ok"] and "stage-1 run" in samples["error"]
        samples = request(proc, {"id": 5, "op": "sample", "run": 2, "n": 2, "out": str(tmp_path / "s"),
                                 "base_steps": 4, "decoder_steps": 4})  # fmt: skip
        assert samples["ok"] and len(samples["result"]["outputs"]) == 2
        unknown = request(proc, {"id": 6, "op": "fly"})
        assert not unknown["ok"] and "unknown op" in unknown["error"]
        assert request(proc, {"id": 7, "op": "shutdown"})["ok"]
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
