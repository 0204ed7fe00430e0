"""The `ul` command end to end on the `smoke` preset, as a user runs it (real processes, real files)."""

from __future__ import annotations

import json
import subprocess
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from ul_testkit import ul_process

ul = partial(ul_process, check=True)  # these tests expect success unless they say check=False


def last_json(proc: subprocess.CompletedProcess[str]) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def trained_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One smoke stage-1 run and a stage-2 run on it, shared by the tests of this module."""
    home = tmp_path_factory.mktemp("ul-home")
    s1 = last_json(ul(home, "train", "--preset", "smoke", "--name", "s1", "--json"))
    assert s1["status"] == "completed" and s1["stage"] == 1 and s1["step"] == 60
    for key in ("loss/prior_diffusion", "loss/prior_kl1", "loss/decoder", "rate/bits_per_pixel"):
        assert key in s1["losses"]
    s2 = last_json(ul(home, "train", "--preset", "smoke", "--stage", "2", "--from-run", "s1", "--name", "s2", "--json"))
    assert s2["status"] == "completed" and s2["stage"] == 2
    return home


def test_runs_lists_both_stages(trained_home: Path):
    runs = last_json(ul(trained_home, "runs", "--json"))["runs"]
    assert [(r["name"], r["stage"], r["status"]) for r in runs] == [("s1", 1, "completed"), ("s2", 2, "completed")]


def test_reconstruct_good_and_bad_inputs(trained_home: Path, tmp_path: Path):
    good = tmp_path / "odd-size.png"
    Image.fromarray((np.random.default_rng(0).random((21, 30, 3)) * 255).astype(np.uint8)).save(good)
    bad = tmp_path / "text.png"
    bad.write_text("not an image")
    proc = ul(
        trained_home,
        "reconstruct",
        "--run",
        "s1",
        str(good),
        str(bad),
        "--out",
        str(tmp_path / "out"),
        "--json",
        check=False,
    )
    assert proc.returncode == 2
    results = last_json(proc)["results"]
    assert results[0]["error"] is None and results[0]["psnr"] > 0 and results[0]["bits_per_pixel"] > 0
    out = Image.open(results[0]["output"])
    assert out.size == (30, 21)
    assert "text.png" in results[1]["error"] and results[1]["output"] is None


def test_sample_writes_pngs_with_metadata(trained_home: Path, tmp_path: Path):
    outputs = last_json(
        ul(trained_home, "sample", "--run", "s2", "--n", "3", "--seed", "5", "--out", str(tmp_path), "--json")
    )["outputs"]
    assert len(outputs) == 3
    img = Image.open(outputs[0])
    assert img.size == (16, 16)
    assert img.text["ul-seed"] == "5" and len(img.text["ul-checkpoint-sha256"]) == 64
    again = last_json(
        ul(trained_home, "sample", "--run", "s2", "--n", "1", "--seed", "5", "--out", str(tmp_path / "again"), "--json")
    )["outputs"]
    assert np.array_equal(np.asarray(Image.open(again[0])), np.asarray(img)), "same seed, same sample"


def test_sample_a_chosen_checkpoint(trained_home: Path, tmp_path: Path):
    """--checkpoint samples an earlier step (smoke: checkpoints at 30 and 60); a missing step names those on disk."""
    args = ["sample", "--run", "s2", "--n", "1", "--seed", "5", "--steps", "2", "--decoder-steps", "2", "--json"]

    def sample(*extra: str) -> Image.Image:
        return Image.open(last_json(ul(trained_home, *args, *extra))["outputs"][0])

    early = sample("--checkpoint", "30", "--out", str(tmp_path / "a"))
    latest = sample("--out", str(tmp_path / "b"))
    assert early.text["ul-checkpoint-step"] == "30" and latest.text["ul-checkpoint-step"] == "60"
    assert early.text["ul-checkpoint-sha256"] != latest.text["ul-checkpoint-sha256"]
    proc = ul(trained_home, *args, "--checkpoint", "45", "--out", str(tmp_path / "c"), check=False)
    assert proc.returncode == 2 and "no checkpoint at step 45; on disk: 30, 60" in proc.stderr


def test_sample_a_random_class_per_sample(trained_home: Path, tmp_path: Path):
    """--class random: each PNG names the class it was drawn for, and --class K with that class redraws it."""
    args = ["sample", "--run", "s2", "--steps", "2", "--decoder-steps", "2", "--guidance", "2", "--json"]
    mixed = last_json(ul(trained_home, *args, "--n", "4", "--class", "random", "--out", str(tmp_path / "r")))
    recorded = [json.loads(Image.open(p).text["ul-params"])["class"] for p in mixed["outputs"]]
    assert all(isinstance(c, int) and 0 <= c < 4 for c in recorded)
    again = last_json(ul(trained_home, *args, "--n", "1", "--seed", "2", "--class", str(recorded[2]),
                         "--out", str(tmp_path / "k")))  # fmt: skip
    assert np.array_equal(np.asarray(Image.open(again["outputs"][0])), np.asarray(Image.open(mixed["outputs"][2])))
    bad = ul(trained_home, *args, "--class", "some", check=False)
    assert bad.returncode == 2 and "class must be a class index (0, 1, …) or 'random'" in bad.stderr


def test_eval_reports_psnr_ssim_and_bits(trained_home: Path):
    result = last_json(ul(trained_home, "eval", "--run", "s1", "--n", "8", "--json"))
    assert set(result) >= {"n", "psnr", "ssim", "bits_per_pixel", "bits_per_dim"}
    assert result["n"] == 8 and result["bits_per_pixel"] > 0


def test_eval_fd_names_the_metric_and_never_fakes_fid(trained_home: Path):
    args = ["eval", "--run", "s2", "--n", "4", "--fd", "8", "--steps", "2", "--decoder-steps", "2", "--json"]
    result = last_json(ul(trained_home, *args))
    assert result["fd_shapes"]["metric"] == "fd_shapes" and result["fd_shapes"]["value"] > 0
    assert result["fid_inception_v3"]["metric"] == "fid_inception_v3"
    assert result["fid_inception_v3"]["value"] is None and result["fid_inception_v3"]["available"] is False
    stage1 = ul(trained_home, "eval", "--run", "s1", "--fd", "8", check=False)
    assert stage1.returncode == 2 and "--prior-samples" in stage1.stderr


def test_eval_guided_fd_reports_class_agreement(trained_home: Path):
    args = ["eval", "--run", "s2", "--n", "2", "--fd", "8", "--steps", "2", "--decoder-steps", "2", "--json"]
    fd = last_json(ul(trained_home, *args, "--guidance", "3"))["fd_shapes"]
    assert fd["conditional"] is True and fd["guidance"] == 3.0 and fd["value"] > 0
    assert 0.0 <= fd["class_agreement"] <= 1.0 and 0.0 <= fd["class_agreement_real"] <= 1.0
    assert set(fd["class_agreement_per_class"]) <= {"circle", "square", "triangle", "diamond"}
    plain = last_json(ul(trained_home, *args))["fd_shapes"]
    assert plain["conditional"] is False and "class_agreement" not in plain
    for extra, needle in ((["--guidance", "2"], "--fd N"), (["--fd", "4", "--guidance", "2"], "class-conditional")):
        run = "s2" if extra[0] == "--guidance" else "s1"
        proc = ul(trained_home, "eval", "--run", run, "--n", "2", *extra, check=False)
        assert proc.returncode == 2 and needle in proc.stderr and "Traceback" not in proc.stderr


def test_eval_fd_of_reconstructions_is_the_same_for_a_stage1_run_and_its_stage2(trained_home: Path):
    """What a perfect base model would score: stage-1 round trips of other validation images, no base model needed."""
    args = ["--n", "2", "--fd", "8", "--decoder-steps", "2", "--reconstructions", "--no-record", "--json"]
    s1 = last_json(ul(trained_home, "eval", "--run", "s1", "--checkpoint", "60", *args))["fd_shapes"]  # s2's stage 1
    s2 = last_json(ul(trained_home, "eval", "--run", "s2", *args))["fd_shapes"]
    assert s1["samples"] == "stage1_reconstructions" and s1["value"] > 0 and s1["n_fake"] == 8
    assert s2["value"] == pytest.approx(s1["value"], rel=1e-6), "stage 2 decodes through the same stage 1"
    assert s1["conditional"] is False and s2["class_agreement"] == s1["class_agreement"]  # each image's own class
    assert 0.0 <= s1["class_agreement"] <= 1.0 and s1["class_agreement_real"] >= 0.75
    for extra, needle in ((["--reconstructions"], "--fd N"), (["--fd", "4", "--reconstructions", "--prior-samples"],
                          "leave out --prior-samples")):  # fmt: skip
        proc = ul(trained_home, "eval", "--run", "s1", "--n", "2", *extra, check=False)
        assert proc.returncode == 2 and needle in proc.stderr and "Traceback" not in proc.stderr


def test_resume_continues_the_step_counter(trained_home: Path):
    result = last_json(ul(trained_home, "resume", "s1", "--steps", "5", "--json"))
    assert result["step"] == 65 and result["status"] == "completed"


def test_export_bundle_loads(trained_home: Path, tmp_path: Path):
    out = tmp_path / "bundle"
    ul(trained_home, "export", "s2", "--out", str(out), "--json")
    names = {p.name for p in out.iterdir()}
    assert {"encoder.safetensors", "decoder.json", "prior.safetensors", "base.safetensors", "base.json"} <= names


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["train", "--preset", "nope"], "unknown preset 'nope'"),
        (["train", "--preset", "smoke", "--set", "loss.loss_factor=-2"], "loss.loss_factor"),
        (["train", "--preset", "smoke", "--set", "optim.lrr=1"], "optim.lrr: unknown field"),
        (["train", "--preset", "smoke", "--set", "novalue"], "key=value"),
        (["resume", "no-such-run"], "no-such-run"),
        (["sample", "--run", "s1"], "stage-1 run"),
        (["train", "--preset", "smoke", "--stage", "2"], "--from-run"),
    ],
)
def test_user_mistakes_exit_2_with_one_line(
    trained_home: Path, args: list[str], needle: str, capsys: pytest.CaptureFixture[str]
):
    """In-process (the same `main` the console script calls) to keep the suite fast."""
    from ul_engine.cli.main import main

    code = main(["--home", str(trained_home), *args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert needle in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_a_mistake_in_a_real_process_has_no_traceback(trained_home: Path):
    proc = ul(trained_home, "train", "--preset", "nope", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    from ul_engine.core.config import list_presets

    assert {"smoke", "shapes-32", "bouncing-smoke", "bouncing-32", "kinetics-128"} <= set(list_presets())
    assert proc.stderr.strip() == f"ul: error: unknown preset 'nope'; available: {', '.join(list_presets())}"


def test_dry_run_prints_the_resolved_config_without_json(trained_home: Path):
    """Piped or not, `--dry-run` shows the config it would train (it once printed nothing without --json)."""
    before = len(last_json(ul(trained_home, "runs", "--json"))["runs"])
    s1_argv = ("train", "--preset", "smoke", "--set", "loss.sigmoid_bias=1.5", "--dry-run")
    s1 = json.loads(ul(trained_home, *s1_argv).stdout)
    assert s1["loss"]["sigmoid_bias"] == 1.5 and s1["stage"] == 1
    argv = ("train", "--preset", "smoke", "--stage", "2", "--from-run", "s1", "--set", "loss.base_sigmoid_bias=-2")
    s2 = json.loads(ul(trained_home, *argv, "--dry-run").stdout)
    assert s2["loss"]["base_sigmoid_bias"] == -2.0 and s2["stage"] == 2
    assert len(last_json(ul(trained_home, "runs", "--json"))["runs"]) == before, "a dry run creates no run"


def test_presets_and_doctor(trained_home: Path):
    names = {p["name"] for p in last_json(ul(trained_home, "presets", "--json"))["presets"]}
    assert {"smoke", "shapes-32", "imagenet-512", "folder-64"} <= names
    doctor = ul(trained_home, "doctor")
    assert "torch" in doctor.stdout and str(trained_home) in doctor.stdout


def test_probe_base_reads_label_use_and_resampled_agreement(trained_home: Path, capsys: pytest.CaptureFixture[str]):
    """tools/probe_base.py on the smoke stage-2 run: the label's gain per log-SNR, the agreement after re-sampling."""
    from tools.probe_base import PROBE_LOGSNRS, main

    base_args = ["--home", str(trained_home), "--n", "4", "--threads", "1"]
    assert main([*base_args, "--run", "s2", "--from", "0,2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [row["logsnr"] for row in result["label_gain"]] == list(PROBE_LOGSNRS)
    for row in result["label_gain"]:
        assert row["gain"] == pytest.approx(row["null"] - row["true"]) and row["true"] >= 0
    assert [row["from_logsnr"] for row in result["resampling"]] == [0.0, 2.0]
    assert all(0.0 <= row["agreement"] <= 1.0 for row in result["resampling"])
    assert result["resampling"][0]["base_steps"] > result["resampling"][1]["base_steps"]  # from noisier: more steps
    for extra, needle in ((["--run", "s1"], "class-conditional stage-2"), (["--run", "s2", "--from", "9"], "must lie")):
        assert main([*base_args, *extra]) == 2
        assert needle in capsys.readouterr().err
