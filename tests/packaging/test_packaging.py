"""Desktop integration (validated .desktop and AppStream files, `make install-desktop`'s script) and the frozen
bundle's pieces that can be checked without building it: the spec and scripts, the one-executable launcher,
and the frozen-aware worker command lines."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
APP_ID = "io.github.ulstudio.ULStudio"
DESKTOP = ROOT / "packaging" / "desktop" / f"{APP_ID}.desktop"
METAINFO = ROOT / "packaging" / "desktop" / f"{APP_ID}.metainfo.xml"
SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian package {package}: apt-get install {package})")
    return path


def test_the_desktop_file_validates() -> None:
    out = subprocess.run([_tool("desktop-file-validate", "desktop-file-utils"), str(DESKTOP)],
                         capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 0 and "error" not in out.stdout.lower(), out.stdout + out.stderr


def test_the_appstream_metainfo_validates() -> None:
    out = subprocess.run([_tool("appstreamcli", "appstream"), "validate", "--no-net", str(METAINFO)],
                         capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr


def test_metainfo_names_the_desktop_file_and_real_screenshots() -> None:
    text = METAINFO.read_text()
    assert f"<id>{APP_ID}</id>" in text and f'<launchable type="desktop-id">{APP_ID}.desktop' in text
    shots = re.findall(r"<image>https://[^<]+/main/(docs/screenshots/[^<]+)</image>", text)
    assert len(shots) >= 3
    for shot in shots:
        assert (ROOT / shot).is_file(), shot


def test_install_desktop_puts_entry_icons_and_metainfo_under_xdg_data_home(tmp_path: Path) -> None:
    exe = tmp_path / "my venv" / "bin" / "ul-studio"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    data = tmp_path / "share"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_DATA_HOME": str(data)}
    out = subprocess.run(["sh", str(ROOT / "packaging" / "install_desktop.sh"), str(exe)],
                         capture_output=True, text=True, env=env)  # fmt: skip
    assert out.returncode == 0, out.stderr
    entry = data / "applications" / f"{APP_ID}.desktop"
    lines = entry.read_text().splitlines()
    assert f'Exec="{exe}"' in lines and f"TryExec={exe}" in lines and f"Icon={APP_ID}" in lines
    assert (data / "metainfo" / f"{APP_ID}.metainfo.xml").read_text() == METAINFO.read_text()
    assert (data / "icons" / "hicolor" / "scalable" / "apps" / f"{APP_ID}.svg").is_file()
    for size in SIZES:
        png = data / "icons" / "hicolor" / f"{size}x{size}" / "apps" / f"{APP_ID}.png"
        assert Image.open(png).size == (size, size)
    if shutil.which("desktop-file-validate"):
        check = subprocess.run(["desktop-file-validate", str(entry)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout
    out = subprocess.run(["sh", str(ROOT / "packaging" / "install_desktop.sh"), "--uninstall"],
                         capture_output=True, text=True, env=env)  # fmt: skip
    assert out.returncode == 0 and not entry.exists()


def test_install_desktop_refuses_a_missing_executable(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "share")}
    out = subprocess.run(["sh", str(ROOT / "packaging" / "install_desktop.sh"), str(tmp_path / "nope")],
                         capture_output=True, text=True, env=env)  # fmt: skip
    assert out.returncode == 2 and "make install" in out.stderr
    assert not (tmp_path / "share" / "applications").exists()


def test_the_bundle_spec_and_scripts_are_there_and_build_into_ignored_build_bundle() -> None:
    spec = (ROOT / "packaging" / "ul-studio.spec").read_text()
    assert 'app" / "launcher.py' in spec and '"resources"' in spec and "migrations" in spec
    build = (ROOT / "packaging" / "build_bundle.sh").read_text()
    assert "--distpath build/bundle" in build and "ul-studio.spec" in build
    smoke = (ROOT / "packaging" / "smoke_bundle.sh").read_text()
    for check in ("--version", "--cli doctor", "--worker", "UL_STUDIO_BENCH_LAUNCH"):
        assert check in smoke
    ignored = subprocess.run(["git", "check-ignore", "build/bundle/ul-studio/ul-studio"], cwd=ROOT,
                             capture_output=True, text=True)  # fmt: skip
    assert ignored.returncode == 0


def test_workers_start_from_the_frozen_executable_with_a_worker_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.workers import procs
    from ul_engine.core.supervisor import LaunchOptions, cli_argv, worker_command

    home = Path("/data/ul")
    assert worker_command(home, 3, steps=5)[:3] == [sys.executable, "-m", "ul_engine.worker"]
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", "/opt/UL Studio/ul-studio")
    assert worker_command(home, 3, steps=5) == [
        "/opt/UL Studio/ul-studio", "--worker", "--home", "/data/ul", "train", "--run", "3", "--steps", "5",
    ]  # fmt: skip
    assert procs.session_command(home) == ("/opt/UL Studio/ul-studio", ["--worker", "--home", "/data/ul", "session"])
    assert cli_argv("doctor") == ["/opt/UL Studio/ul-studio", "--cli", "doctor"]
    # several processes: accelerate's launcher, which the bundle's executable runs as `-m`
    distributed = worker_command(home, 3, launch=LaunchOptions(num_processes=2))
    assert distributed[:3] == ["/opt/UL Studio/ul-studio", "-m", "accelerate.commands.launch"]


def test_the_launcher_dispatches_app_worker_cli_module_and_code() -> None:
    from app.launcher import dispatch

    assert dispatch([]) == ("app", [])
    assert dispatch(["--home", "/h", "--page", "runs"]) == ("app", ["--home", "/h", "--page", "runs"])
    assert dispatch(["--version"]) == ("app", ["--version"])
    assert dispatch(["--worker", "--home", "/h", "session"]) == ("worker", ["--home", "/h", "session"])
    assert dispatch(["--cli", "doctor"]) == ("cli", ["doctor"])
    assert dispatch(["-u", "-m", "ul_engine.worker", "train"]) == ("module", ["ul_engine.worker", "train"])
    assert dispatch(["-c", "print(1)", "x"]) == ("code", ["print(1)", "x"])
    with pytest.raises(SystemExit):
        dispatch(["-m"])


@pytest.mark.parametrize(
    "argv",
    [["--cli", "presets", "--json"], ["-u", "-m", "ul_engine.cli", "presets", "--json"]],
    ids=["cli-flag", "python-m"],
)
def test_the_launcher_runs_the_cli_in_a_real_process(argv: list[str], tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, str(ROOT / "app" / "launcher.py"), *argv], capture_output=True,
                         text=True, timeout=60, cwd=ROOT)  # fmt: skip
    assert out.returncode == 0, out.stderr
    names = [p["name"] for p in json.loads(out.stdout.strip().splitlines()[-1])["presets"]]
    assert "shapes-32" in names and "folder-64" in names
