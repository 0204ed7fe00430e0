"""A read-only data folder and a full disk under the database, with real mounts, real SQLite and real `ul`
processes.

Each scenario runs in a private mount namespace (`unshare -m` as root, `unshare -Urm` otherwise), so the
read-only bind mount and the 1 MiB tmpfs exist only for that process tree and vanish with it: a read-only
mount stops root too (permissions would not), and a full tmpfs is a real ENOSPC that SQLite itself reports.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="mount namespaces are Linux")

HANG_S = 600
UL = f"{shlex.quote(sys.executable)} -m ul_engine.cli"


def in_namespace(script: str) -> subprocess.CompletedProcess[str]:
    prefix = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-Urm"]
    proc = subprocess.run([*prefix, "sh", "-c", script], capture_output=True, text=True, timeout=HANG_S)
    assert "unshare:" not in proc.stderr and "mount:" not in proc.stderr, proc.stderr
    return proc


def outputs(folder: Path, name: str) -> tuple[int, str, str]:
    return (int((folder / f"{name}.rc").read_text()), (folder / f"{name}.out").read_text(),
            (folder / f"{name}.err").read_text())  # fmt: skip


def capture(home: Path, out: Path, name: str, args: str) -> str:
    """Shell text running `ul --home HOME args`, keeping its exit code, stdout and stderr in out/NAME.*."""
    q = shlex.quote
    return (f"{UL} --home {q(str(home))} {args} > {q(str(out / name))}.out 2> {q(str(out / name))}.err; "
            f"echo $? > {q(str(out / name))}.rc\n")  # fmt: skip


def _home_with_a_run(home: Path) -> None:
    from ul_engine.store import Store

    with Store.open(home) as store:
        run = store.create_run(name="kept", stage=1, preset="smoke", config={"train": {"device": "cpu"}})
        store.log_metrics(run.id, [(s, time.time(), {"loss/total": 1.0 / (s + 1)}) for s in range(50)])


def test_read_only_data_folder_reads_work_and_writes_say_so(tmp_path: Path) -> None:
    home, out = tmp_path / "home", tmp_path / "out"
    out.mkdir()
    _home_with_a_run(home)
    h = shlex.quote(str(home))
    script = f"mount --bind {h} {h} && mount -o remount,bind,ro {h} {h} || exit 97\n"
    script += capture(home, out, "runs", "runs --json")
    script += capture(home, out, "runs_plain", "runs")
    script += capture(home, out, "doctor", "doctor --json")
    script += capture(home, out, "train", "train --preset smoke --steps 1 --name new")
    script += capture(home, out, "delete", "delete kept --yes --json")
    proc = in_namespace(script)
    assert proc.returncode == 0, proc.stderr

    code, stdout, stderr = outputs(out, "runs")
    assert code == 0, stderr
    [row] = json.loads(stdout.strip().splitlines()[-1])["runs"]
    assert row["name"] == "kept" and row["step"] == 0 and abs(row["loss"] - 1 / 50) < 1e-9
    code, stdout, _ = outputs(out, "runs_plain")
    assert code == 0 and "kept" in stdout
    code, stdout, stderr = outputs(out, "doctor")
    report = json.loads(stdout.strip().splitlines()[-1])
    assert code == 0 and report["runs"] == 1 and report["data folder"] == f"{home} (read-only)", stderr
    for name in ("train", "delete"):
        code, stdout, stderr = outputs(out, name)
        assert code == 2 and "Traceback" not in stderr, stderr
        assert stderr.strip() == f"ul: error: the data folder {home} is read-only; this command needs to write to it"
    assert json.loads(outputs(out, "delete")[1].strip())["error"].startswith("the data folder")


FILL = """
import os, sys
fd = os.open(sys.argv[-1], os.O_WRONLY | os.O_CREAT)
try:
    while True:
        os.write(fd, bytes(4096))
except OSError:
    os.close(fd)
"""

LOG_UNTIL_FULL = (
    """
import os, sqlite3, sys, time
from pathlib import Path
from ul_engine.core.errors import DiskFullError
from ul_engine.store import Store
home, filler = Path(sys.argv[1]), sys.argv[2]
store = Store.open(home)                       # the WAL and its shared memory exist: only writes can fail
run = store.get_run("kept")
store.read_metric(run.id, "loss/total")
"""
    + FILL
    + """
try:
    store.log_metrics(run.id, [(s, time.time(), {f"k{j}": float(s) for j in range(20)}) for s in range(50, 4050)])
    print("no error")
except DiskFullError as exc:
    print("DiskFullError:", exc)
os.unlink(filler)
print("kept values:", store.summary(run.id)["loss/total"]["count"])
print("integrity:", sqlite3.connect(home / "ul.sqlite").execute("PRAGMA integrity_check").fetchone()[0])
"""
)


def test_full_disk_under_the_database_is_one_line_and_keeps_earlier_data(tmp_path: Path) -> None:
    mnt, out = tmp_path / "small-disk", tmp_path / "out"
    mnt.mkdir()
    out.mkdir()
    home, filler = mnt / "home", mnt / "filler"
    q = shlex.quote
    py = q(sys.executable)
    seed = (f"from ul_engine.store import Store; import time\ns = Store.open({str(home)!r})\n"
            "r = s.create_run(name='kept', stage=1, preset='smoke', config={'train': {'device': 'cpu'}})\n"
            "s.log_metrics(r.id, [(i, time.time(), {'loss/total': 1.0}) for i in range(50)])\n")  # fmt: skip
    script = f"mount -t tmpfs -o size=1m tmpfs {q(str(mnt))} || exit 97\n"
    script += f"{py} -c {q(seed)} || exit 98\n"
    # 1. a store that is open when the disk fills: SQLite's own "database or disk is full"
    script += f"{py} -c {q(LOG_UNTIL_FULL)} {q(str(home))} {q(str(filler))} > {q(str(out / 'api'))}\n"
    # 2. commands started on a full disk (SQLite cannot even create its shared-memory file)
    script += f"{py} -c {q(FILL)} {q(str(filler))}\n"
    script += capture(home, out, "train", "train --preset smoke --steps 1 --name new --json")
    script += capture(home, out, "runs_full", "runs")
    script += capture(home, out, "doctor_full", "doctor --json")
    script += f"rm {q(str(filler))}\n"
    script += capture(home, out, "runs_after", "runs --json")
    proc = in_namespace(script)
    assert proc.returncode == 0, proc.stderr

    api = (out / "api").read_text().splitlines()
    line = f"disk full while writing {home / 'ul.sqlite'}; earlier files are kept"
    assert api == [f"DiskFullError: {line}", "kept values: 50", "integrity: ok"], api
    for name in ("train", "runs_full"):
        code, stdout, stderr = outputs(out, name)
        assert code == 2 and stderr.strip() == f"ul: error: {line}", stderr
    assert json.loads(outputs(out, "train")[1].strip())["error"] == line
    code, stdout, stderr = outputs(out, "doctor_full")  # the report still comes, naming the problem
    assert code == 0 and json.loads(stdout.strip().splitlines()[-1])["database"] == f"unusable: {line}", stderr
    code, stdout, stderr = outputs(out, "runs_after")
    assert code == 0, stderr
    assert [r["name"] for r in json.loads(stdout.strip().splitlines()[-1])["runs"]] == ["kept"]
