"""What many test modules share: running `ul` (as a child process or in this process) and trained smoke homes
made once per pytest session and copied into each module's own home. `tests/conftest.py` puts this folder on
`sys.path`, so any test imports it as `ul_testkit`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

HANG_S = 600.0
"""Only a hang gets near this: the suite must pass with both cores busy."""


def ul_process(
    home: Path | None,
    *args: str,
    env: dict[str, str] | None = None,
    check: bool = False,
    timeout: float = HANG_S,
) -> subprocess.CompletedProcess[str]:
    """The real `ul` in a child process (`python -m ul_engine.cli`); with `check`, a non-zero exit fails the test."""
    cmd = [sys.executable, "-m", "ul_engine.cli", *(["--home", str(home)] if home is not None else []), *args]
    child_env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", **(env or {})}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=child_env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}\nstdout:{proc.stdout}\nstderr:{proc.stderr[-4000:]}")
    return proc


def ul_json(capsys: pytest.CaptureFixture[str], home: Path, *args: str) -> tuple[int, dict, str]:
    """`ul … --json` in this process (no second torch start-up): (exit code, last JSON line, stderr)."""
    from ul_engine.cli.main import main as ul_main  # the CLI imports torch lazily; only tests that call it pay

    capsys.readouterr()
    code = ul_main(["--home", str(home), *args, "--json"])
    out, err = capsys.readouterr()
    return code, json.loads(out.strip().splitlines()[-1]), err


def ul_in_process(home: Path, *args: str) -> None:
    """`ul … --json` in this process, which must succeed."""
    from ul_engine.cli.main import main as ul_main  # see ul_json

    assert ul_main(["--home", str(home), *args, "--json"]) == 0, args


def shared_home(
    tmp_path_factory: pytest.TempPathFactory,
    key: str,
    commands: Sequence[Sequence[str]],
    name: str,
    *,
    in_process: bool = False,
) -> Path:
    """A private copy (`<tmp>/<name>/home`) of a home in which `commands` (each the arguments of one `ul`) ran
    once per pytest session (per xdist worker), under `key`."""
    shared = tmp_path_factory.getbasetemp() / key
    if not (shared / "READY").is_file():
        shutil.rmtree(shared, ignore_errors=True)
        for args in commands:
            if in_process:
                ul_in_process(shared, *args)
            else:
                ul_process(shared, *args, "--json", check=True)
        (shared / "READY").write_text("ok")
    home = tmp_path_factory.mktemp(name) / "home"
    shutil.copytree(shared, home, ignore=shutil.ignore_patterns("READY"))
    return home
