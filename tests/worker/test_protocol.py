"""The typed session protocol: one naming scheme, every request answered by exactly one op, requests and
results that survive the wire, one clear line for a bad request; and the app's client speaking it to a real
session worker process."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from app.workers.session import SessionClient
from ul_engine.core import protocol
from ul_engine.core.errors import ULError
from ul_engine.worker.session import OPS, _load_ops


def test_every_request_has_one_dotted_name_and_one_handler() -> None:
    _load_ops()
    assert all(re.fullmatch(r"[a-z]+\.[a-z]+", name) for name in protocol.REQUESTS), sorted(protocol.REQUESTS)
    handled = set(OPS) | {protocol.Shutdown.OP}  # shutdown ends the serve loop itself
    assert handled == set(protocol.REQUESTS)


def test_requests_round_trip_and_bad_ones_are_refused_in_one_line() -> None:
    asked = protocol.SampleImages(run="s2", out="/tmp/o", seeds=[3, 4], class_label=2, cancel_file="/tmp/c")
    message = protocol.encode(asked.to_message(7))
    wire = protocol.decode(message)
    assert wire is not None and wire["id"] == 7 and wire["op"] == "image.sample"
    assert protocol.parse_request(wire) == asked
    with pytest.raises(ULError, match=r"^image\.reconstruct needs 'path'$"):
        protocol.parse_request({"op": "image.reconstruct", "run": 1})
    with pytest.raises(ULError, match="unknown op 'fly'"):
        protocol.parse_request({"op": "fly"})
    result = protocol.ExportFrames(["/a.png"], mp4="/a.mp4").result({"mp4": {"frames": 1}, "new": 1})
    assert result == protocol.ExportedFrames(mp4={"frames": 1})  # a field it does not know is ignored
    assert protocol.parse_event({"id": 1, "event": "progress", "done": 2, "total": 5, "what": "decode"}) == (
        protocol.Progress(2, 5, "decode")
    )
    assert protocol.parse_event({"event": "partial", "model": 1, "entry": {"ok": True}}) == protocol.Partial(
        1, {"ok": True}
    )


def test_the_app_client_gets_typed_answers_from_a_real_session_worker(qtbot: Any, tmp_path: Path) -> None:
    client = SessionClient(tmp_path / "home")
    answers: list[tuple[bool, Any]] = []
    client.start()
    try:
        client.ask_devices()  # what the app asks at start; queued until the worker is ready
        client.call(protocol.Devices(), lambda ok, result: answers.append((ok, result)))
        gone = str(tmp_path / "gone.png")
        client.call(protocol.ExportFrames([gone], gif=str(tmp_path / "x.gif")), lambda ok, r: answers.append((ok, r)))
        qtbot.waitUntil(lambda: len(answers) == 2 and client.devices is not None, timeout=120_000)
    finally:
        client.shutdown()
    (ok, devices), (bad_ok, error) = answers
    assert ok and isinstance(devices, protocol.DeviceInfo) and devices.cpu["cores"] >= 1
    assert client.devices == {"cpu": devices.cpu, "gpus": devices.gpus}  # what the app's device query keeps
    assert not bad_ok and isinstance(error, str) and "gone.png" in error and "Traceback" not in error
