"""`ul study` and `ul eval --fd` end to end on the `smoke` preset with a tiny budget (real processes, real files)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
from ul_testkit import ul_process

ul = partial(ul_process, check=True)  # these tests expect success unless they say check=False

pytestmark = pytest.mark.slow  # ~1–2 min on 2 shared cores: thirteen tiny runs, evaluated

STUDY = [
    "study", "--preset", "smoke", "--quick", "--steps", "3", "--stage2-steps", "3", "--eval-n", "4", "--fd", "8",
    "--decoder-steps", "2", "--base-steps", "2", "--threads", "1", "--lf", "1.5",
]  # fmt: skip


def last_json(proc: subprocess.CompletedProcess[str]) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    home = tmp_path_factory.mktemp("ul-home")
    out = tmp_path_factory.mktemp("docs") / "results.md"
    result = last_json(ul(home, *STUDY, "--out", str(out), "--json"))
    return home, out, result


def test_study_writes_the_report_plots_and_json(study: tuple[Path, Path, dict]):
    home, out, result = study
    text = out.read_text()
    for heading in (
        "## The FD-shapes feature network",
        "## Rate–distortion over the loss factor (Table 2 at small scale)",
        "## Autoencoder ablations (Table 5)",
        "## Component ablations (Table 6)",
        "## Stage 2 vs samples from the stage-1 prior",
        "## Table 2 from scratch: knobs against the empty latent",
        "## Prior slack κ",
        "## C_lf = 1.5 warm-started from c_lf = 10",
        "## Commands",
    ):
        assert heading in text
    assert "ul study --preset smoke --quick" in text and "ul train --stage 2 --from-run study-quick-lf10" in text
    assets = out.parent / "results"
    for name in ("rate-distortion.png", "real.png", "samples-lf10-s2.png", "samples-lf10-prior.png", "study.json"):
        assert (assets / name).is_file(), name
    assert (assets / "rate-distortion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((assets / "study.json").read_text())
    assert saved["fd_floor"]["metric"] == "fd_shapes"
    runs = {r["key"]: r for r in result["runs"]}
    assert set(runs) == {"lf1.5", "lf10", "normal", "mse", "lam10", "sg", "lf1.5-reswarm", "lf1.5-from10"}
    slack = runs["lf10"]["slack"]
    assert slack["count"] == 4 and slack["bound_nats"] > 0 and slack["steps"] == 6  # twice the stage-2 budget
    assert runs["lf10"]["z_clean_std"] > 0 and runs["lf1.5-from10"]["rate_trajectory"]
    assert (home / "study-bundles" / "study-quick-lf10" / "decoder.json").is_file()
    assert runs["lf10"]["stage2_fd"]["metric"] == "fd_shapes" and runs["lf10"]["prior_fd"]["metric"] == "fd_shapes"
    assert runs["mse"]["stage2_fd"]["n_fake"] == 8
    reseeded, first = runs["lf10"]["stage2_fd_reseeded"]["value"], runs["lf10"]["stage2_fd"]["value"]
    assert reseeded != first, "disjoint seeds, other samples"
    assert f"differ by {abs(reseeded - first):.3g}" in text, "the FD verdicts name the spread they are read against"
    assert "prior slack alone would need 40 %" in text or "% above the larger model's bound" in text
    names = {r["name"] for r in last_json(ul(home, "runs", "--json"))["runs"]}
    assert {"study-quick-lf10", "study-quick-lf10-s2", "study-quick-normal-s2", "study-quick-sg"} <= names
    assert {"study-quick-lf10-elbo", "study-quick-lf1.5-from10"} <= names


def test_study_again_reuses_runs_and_evaluations(study: tuple[Path, Path, dict], tmp_path: Path):
    home, _, first = study
    proc = ul(home, *STUDY, "--out", str(tmp_path / "again.md"), "--json")
    assert "reusing the completed run" in proc.stderr and "training (run" not in proc.stderr
    again = last_json(proc)
    assert [r["recon"] for r in again["runs"]] == [r["recon"] for r in first["runs"]]
    con = sqlite3.connect(home / "ul.sqlite")
    cached = {json.loads(k)["what"] for (k,) in con.execute("SELECT key FROM evaluations")}
    con.close()
    assert cached == {"recon", "prior_fd", "stage2_fd", "slack"}  # the store holds every cached evaluation
    assert not list(home.glob("runs/*/study-eval.json"))
    changed = ul(home, *STUDY, "--set", "optim.lr=2e-3", "--out", str(tmp_path / "x.md"), check=False)
    assert changed.returncode == 2 and "exists with a different config" in changed.stderr


def test_eval_fd_names_its_metrics(study: tuple[Path, Path, dict]):
    home, _, _ = study
    args = ["eval", "--run", "study-quick-lf10-s2", "--n", "4", "--decoder-steps", "2", "--steps", "2", "--fd", "8"]
    result = last_json(ul(home, *args, "--json"))
    assert result["fd_shapes"]["metric"] == "fd_shapes" and result["fd_shapes"]["samples"] == "stage2"
    assert result["fid_inception_v3"] == {
        "metric": "fid_inception_v3",
        "value": None,
        "available": False,
        "reason": result["fid_inception_v3"]["reason"],
    }
    prior = last_json(ul(home, "eval", "--run", "study-quick-lf10", "--n", "4", "--decoder-steps", "2", "--steps", "2",
                         "--fd", "8", "--prior-samples", "--json"))  # fmt: skip
    assert prior["fd_shapes"]["samples"] == "stage1_prior"
    kappa = last_json(ul(home, "eval", "--run", "study-quick-lf10-elbo", "--slack", "--n", "4", "--json"))
    assert set(kappa) >= {"kappa", "bound_bits_per_pixel", "best_bound_bits_per_pixel", "count"}
    text = ul(home, "eval", "--run", "study-quick-lf10-elbo", "--slack", "--n", "4").stdout
    assert "κ" in text and "ELBO base model" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eval", "--run", "study-quick-lf10", "--fd", "8"], "--prior-samples"),
        (["eval", "--run", "study-quick-lf10-s2", "--inception-weights", "x.pth"], "needs --fd"),
        (["eval", "--run", "study-quick-lf10-s2", "--fd", "4", "--inception-weights", "/no.pth"], "file not found"),
        (["eval", "--run", "study-quick-lf10-s2", "--slack"], 'base_weighting="elbo"'),
        (["eval", "--run", "study-quick-lf10", "--slack"], "κ needs a stage-2 run"),
        (["eval", "--run", "study-quick-lf10-elbo", "--slack", "--fd", "4"], "--slack measures the rate bounds only"),
        (["study", "--steps", "3", "--minutes", "1"], "not allowed with argument"),
        (["study", "--set", "ablation.prior=gaussian", "--dry-run"], "ablation.prior"),
    ],
)
def test_user_mistakes_are_one_line_exit_2(study: tuple[Path, Path, dict], args: list[str], message: str):
    home, _, _ = study
    proc = ul(home, *args, "--n", "4", check=False) if args[0] == "eval" else ul(home, *args, check=False)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_sigterm_stops_the_whole_study_resumably(tmp_path: Path):
    """A signal checkpoints the run in training and ends the study (it used to start the next run)."""
    import signal
    import time

    home, out = tmp_path / "home", tmp_path / "docs" / "results.md"
    cmd = [sys.executable, "-m", "ul_engine.cli", "--home", str(home), *STUDY[:-2], "--steps", "100000",
           "--out", str(out)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})  # fmt: skip
    deadline = time.time() + 300
    while time.time() < deadline:  # wait until the first run has taken a step (its signal handlers are in)
        runs = last_json(ul(home, "runs", "--json", check=False)).get("runs", []) if home.exists() else []
        if runs and runs[0]["step"] >= 1:
            break
        time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2, stderr
    assert "was stopped at step" in stderr and "run it again to continue" in stderr
    assert not out.exists()
    runs = last_json(ul(home, "runs", "--json"))["runs"]
    assert [r["status"] for r in runs] == ["stopped"]
