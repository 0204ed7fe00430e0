"""The resident session worker over real pipes, spoken through the typed protocol: devices, an image
reconstruction, samples, bad requests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from ul_engine.cli.main import main as ul_main
from ul_engine.core.protocol import Devices, ReconstructImage, SampleImages, Shutdown


def request(proc: subprocess.Popen[str], message: dict) -> dict:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(message) + "\n")
    proc.stdin.flush()
    while True:
        line = proc.stdout.readline()
        assert line, "session worker closed its stdout"
        reply = json.loads(line)
        if reply.get("id") == message["id"] and "event" not in reply:  # interim progress lines come first
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
        devices = Devices().result(request(proc, Devices().to_message(2))["result"])
        assert devices.cpu["cores"] >= 1 and isinstance(devices.gpus, list)
        asked = ReconstructImage(str(image), run="s1", params={"decoder_steps": 4, "rate_draws": 2})
        entry = asked.result(request(proc, asked.to_message(3))["result"]).entry
        assert entry is not None and entry["ok"] and Path(entry["files"]["reconstruction"]).is_file()
        # the same path and record as `ul reconstruct --json`: the checkpoint it came from, the bits
        assert entry["checkpoint_step"] == 20 and entry["metrics"]["bits_per_pixel"] > 0
        missing = request(proc, ReconstructImage(str(tmp_path / "nope.png"), run="s1").to_message(4))
        assert missing["ok"] and "nope.png" in missing["result"]["entry"]["error"]
        out = str(tmp_path / "s")
        samples = request(proc, SampleImages(run="s1", out=out, n=2).to_message(5))
        assert not samples["ok"] and "stage-1 run" in samples["error"]
        asked_samples = SampleImages(run=2, out=out, n=2, base_steps=4, decoder_steps=4)
        drawn = asked_samples.result(request(proc, asked_samples.to_message(6))["result"])
        assert len(drawn.outputs) == 2 and not drawn.cancelled and all(Path(o["path"]).is_file() for o in drawn.outputs)
        unknown = request(proc, {"id": 7, "op": "fly"})
        assert not unknown["ok"] and "unknown op" in unknown["error"] and "image.reconstruct" in unknown["error"]
        incomplete = request(proc, {"id": 8, "op": "image.reconstruct", "run": "s1"})
        assert not incomplete["ok"] and incomplete["error"] == "image.reconstruct needs 'path'"
        assert request(proc, Shutdown().to_message(9))["ok"]
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
