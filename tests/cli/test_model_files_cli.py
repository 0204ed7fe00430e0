"""Model files are validated before anything is allocated: each fault is exit 2 with one line naming the file.

A smoke run is trained once for the module and exported; each test copies its data folder or bundle and
damages the copy as a user or an attacker could (the JSON, the safetensors header, the weights, a pickle in
place of a checkpoint), then runs the real `ul` command. Processes run under a 6 GiB address-space limit so
a config describing a 77 G-parameter network can never take the machine down; their peak RSS is measured.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

ADDRESS_SPACE = 6 << 30
SMALL_RSS = 1 << 30  # a whole successful reconstruct of the smoke model peaks near 0.5 GiB
HUGE_PRIOR = {"width": 8192, "depth": 64, "heads": 64}  # each value inside the config's ranges: 77.6 G parameters


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str
    peak_rss: int  # bytes


# The child runs the CLI in-process under its own address-space limit and reports its peak RSS (VmHWM) at
# exit. VmHWM belongs to the memory image made at exec, so unlike wait4's ru_maxrss it does not count the
# pages of the (large) test process the child was forked from.
_CHILD = """
import atexit, resource, sys
limit, hwm_path = int(sys.argv[1]), sys.argv[2]
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
def _report_peak():
    with open('/proc/self/status') as status:
        kib = next(int(line.split()[1]) for line in status if line.startswith('VmHWM:'))
    with open(hwm_path, 'w') as out:
        out.write(str(kib * 1024))
atexit.register(_report_peak)
from ul_engine.cli.main import main
sys.exit(main(sys.argv[3:]))
"""


def ul(home: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 240) -> Result:
    """The real `ul` in a child process, with its own peak RSS."""
    out_path, err_path = home.parent / f"{home.name}.out", home.parent / f"{home.name}.err"
    hwm_path = home.parent / f"{home.name}.hwm"
    cmd = [sys.executable, "-c", _CHILD, str(ADDRESS_SPACE), str(hwm_path), "--home", str(home), *args]
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.run(cmd, stdout=out, stderr=err, env={**os.environ, **(env or {})}, timeout=timeout)
    return Result(proc.returncode, out_path.read_text(), err_path.read_text(), int(hwm_path.read_text()))


def one_line_error(result: Result, *needles: str) -> str:
    """Exit 2, no traceback, exactly one line on stderr, holding every needle."""
    assert result.code == 2, (result.code, result.stderr[-3000:])
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def read_st(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})  # noqa: SIM118


def rewrite_st(path: Path, change_tensors=None, change_meta=None) -> None:
    """Rewrite a safetensors file in place with some tensors or metadata changed (as a hand edit would)."""
    tensors, meta = read_st(path)
    if change_tensors:
        change_tensors(tensors)
    if change_meta:
        change_meta(meta)
    save_file(tensors, str(path), metadata=meta)


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One smoke stage-1 run (checkpoints at steps 30 and 60), its export, and a small input image."""
    root = tmp_path_factory.mktemp("model-files")
    home = root / "home"
    cmd = [sys.executable, "-m", "ul_engine.cli", "--home", str(home)]
    for args in (["train", "--preset", "smoke", "--name", "s1"], ["export", "s1", "--out", str(root / "bundle")]):
        proc = subprocess.run([*cmd, *args, "--json"], capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
    image = root / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(image)
    return {"home": home, "bundle": root / "bundle", "image": image}


@pytest.fixture
def copies(trained: dict[str, Path], tmp_path: Path) -> dict[str, Path]:
    """A private copy of the data folder and the bundle for one test to damage."""
    home, bundle = tmp_path / "home", tmp_path / "bundle"
    shutil.copytree(trained["home"], home)
    shutil.copytree(trained["bundle"], bundle)
    return {"home": home, "bundle": bundle, "image": trained["image"], "out": tmp_path / "out"}


def checkpoint(home: Path, step: int = 60) -> Path:
    return home / "runs" / "1" / "checkpoints" / f"step-{step:08d}.safetensors"


def reconstruct_demo(c: dict[str, Path]) -> Result:
    return ul(c["home"], "reconstruct", "--run", "demo", str(c["image"]), "--out", str(c["out"]),
              "--decoder-steps", "2", env={"UL_DEMO_MODEL": str(c["bundle"])})  # fmt: skip


def reconstruct_checkpoint(c: dict[str, Path], step: int = 60) -> Result:
    return ul(c["home"], "reconstruct", "--run", "s1", "--checkpoint", str(step), str(c["image"]),
              "--out", str(c["out"]), "--decoder-steps", "2")  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Bundles (UL_DEMO_MODEL → `--run demo`)


def test_the_intact_bundle_and_checkpoint_reconstruct(copies: dict[str, Path]) -> None:
    """The control: the same commands on undamaged files succeed (and stay small)."""
    for result in (reconstruct_demo(copies), reconstruct_checkpoint(copies, 30)):
        assert result.code == 0, result.stderr
        assert result.peak_rss < SMALL_RSS


def test_a_bundle_config_describing_a_77g_parameter_prior_is_refused_before_allocating(
    copies: dict[str, Path],
) -> None:
    for name in ("encoder", "prior", "decoder"):
        edit_json(copies["bundle"] / f"{name}.json", lambda d: d["config"]["model"].update(prior=HUGE_PRIOR))
    result = reconstruct_demo(copies)
    one_line_error(result, str(copies["bundle"] / "prior.safetensors"), "encoder.json", "77.6 G values", "does not fit")
    assert result.peak_rss < SMALL_RSS, f"peak RSS {result.peak_rss / 2**20:.0f} MiB"


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda d: d.update(config=[1, 2]), "'config' is a JSON list, not an object"),
        (lambda d: d.pop("config"), "carries no run config"),
        (lambda d: d["config"].update(model=1), "invalid config: model"),
    ],
    ids=["config-list", "config-missing", "model-1"],
)
def test_a_bundle_json_with_a_bad_config_is_one_line(copies: dict[str, Path], change, needle: str) -> None:
    edit_json(copies["bundle"] / "encoder.json", change)
    one_line_error(reconstruct_demo(copies), str(copies["bundle"] / "encoder.json"), needle)


def test_a_bundle_json_that_is_not_an_object_is_one_line(copies: dict[str, Path]) -> None:
    (copies["bundle"] / "prior.json").write_text("[1, 2, 3]")
    one_line_error(reconstruct_demo(copies), str(copies["bundle"] / "prior.json"), "not an object")


def test_a_bundle_missing_its_decoder_weights_is_named_incomplete(copies: dict[str, Path]) -> None:
    (copies["bundle"] / "decoder.safetensors").unlink()
    line = one_line_error(reconstruct_demo(copies), str(copies["bundle"]), "incomplete", "decoder.safetensors")
    assert "no run with id or name" not in line


def test_a_bundle_tensor_of_the_wrong_shape_is_named(copies: dict[str, Path]) -> None:
    path = copies["bundle"] / "prior.safetensors"
    key = sorted(read_st(path)[0])[0]
    rewrite_st(path, lambda t: t.update({key: torch.zeros(3, 5, dtype=torch.float16)}))
    one_line_error(reconstruct_demo(copies), str(path), key, "(3, 5) in the file")


def test_integer_weights_are_refused(copies: dict[str, Path]) -> None:
    path = copies["bundle"] / "decoder.safetensors"
    tensors, _ = read_st(path)
    key = sorted(tensors)[0]
    rewrite_st(path, lambda t: t.update({key: t[key].to(torch.int64)}))
    one_line_error(reconstruct_demo(copies), str(path), key, "I64", "floating point")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_non_finite_weights_are_refused(copies: dict[str, Path], bad: float) -> None:
    path = copies["bundle"] / "decoder.safetensors"
    tensors, _ = read_st(path)
    key = sorted(k for k, v in tensors.items() if v.numel() > 1)[0]

    def poison(t: dict[str, torch.Tensor]) -> None:
        t[key] = t[key].clone()
        t[key].view(-1)[1] = bad

    rewrite_st(path, poison)
    result = reconstruct_demo(copies)
    one_line_error(result, str(path), key, "NaN or infinite")
    assert not copies["out"].exists() or not any(copies["out"].iterdir()), "no output from damaged weights"


def test_a_registered_bundle_changed_afterwards_is_refused_by_run_id(copies: dict[str, Path]) -> None:
    """`--run demo` registers the folder's current weights; a run id loads what was registered, so a weight
    file edited in between (valid, same shapes) is caught by the recorded sha256."""
    assert reconstruct_demo(copies).code == 0
    runs = json.loads(ul(copies["home"], "runs", "--json").stdout.strip().splitlines()[-1])
    demo_id = next(r["id"] for r in runs["runs"] if r["name"] == "demo")
    rewrite_st(copies["bundle"] / "prior.safetensors", change_meta=lambda m: m.update(note="edited"))
    result = ul(copies["home"], "reconstruct", "--run", str(demo_id), str(copies["image"]), "--out",
                str(copies["out"] / "again"), env={"UL_DEMO_MODEL": str(copies["bundle"])})  # fmt: skip
    one_line_error(result, str(copies["bundle"]), "changed since it was registered")


# ----------------------------------------------------------------------------------------------
# A run's checkpoint for inference (`--checkpoint STEP`)


def test_checkpoint_metadata_describing_a_77g_parameter_prior_is_refused_before_allocating(
    copies: dict[str, Path],
) -> None:
    path = checkpoint(copies["home"])

    def huge(meta: dict[str, str]) -> None:
        config = json.loads(meta["config"])
        config["model"]["prior"] = HUGE_PRIOR
        meta["config"] = json.dumps(config)

    rewrite_st(path, change_meta=huge)
    result = reconstruct_checkpoint(copies)
    one_line_error(result, str(path), "77.6 G values", "does not fit")
    assert result.peak_rss < SMALL_RSS, f"peak RSS {result.peak_rss / 2**20:.0f} MiB"


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ('{"model": 1}', "invalid config: model"),
        ("[1]", "'config' is a JSON list"),
        ("{", "'config' is not valid JSON"),
    ],
    ids=["model-1", "list", "not-json"],
)
def test_checkpoint_metadata_with_a_bad_config_is_one_line(copies: dict[str, Path], config: str, needle: str) -> None:
    path = checkpoint(copies["home"])
    rewrite_st(path, change_meta=lambda m: m.update(config=config))
    one_line_error(reconstruct_checkpoint(copies), str(path), needle)


def test_a_checkpoint_tensor_of_the_wrong_shape_is_named(copies: dict[str, Path]) -> None:
    path = checkpoint(copies["home"])
    key = next(k for k in sorted(read_st(path)[0]) if k.startswith("ema.prior."))
    rewrite_st(path, lambda t: t.update({key: torch.zeros(7)}))
    one_line_error(reconstruct_checkpoint(copies), str(path), key, "(7,) in the file")


@pytest.mark.parametrize("how", ["torch-save", "pickle-protocol-2", "pickle-protocol-0"])
def test_a_pickle_in_place_of_a_checkpoint_is_called_a_pickle(copies: dict[str, Path], how: str) -> None:
    path = checkpoint(copies["home"])
    payload = {"weights": [0.0] * 4}
    if how == "torch-save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2 if how == "pickle-protocol-2" else 0))
    line = one_line_error(reconstruct_checkpoint(copies), str(path), "is a pickle", "(refused:")
    assert "header too large" not in line.lower()


def test_a_checkpoint_changed_since_it_was_written_is_refused(copies: dict[str, Path]) -> None:
    """Same tensors, valid metadata, other bytes: only the sha256 the store recorded tells."""
    path = checkpoint(copies["home"])
    rewrite_st(path, change_meta=lambda m: m.update(note="edited"))
    one_line_error(reconstruct_checkpoint(copies), str(path), "changed since it was written")


# ----------------------------------------------------------------------------------------------
# Resume (`ul resume`: the checkpoint with its optimizer state)


@pytest.mark.parametrize(
    ("change_meta", "needle"),
    [
        (lambda m: m.update(step="abc"), "'step' is 'abc', not a whole number"),
        (lambda m: m.pop("param_groups"), "has no 'param_groups'"),
        (lambda m: m.update(param_groups="[]"), "'param_groups' has 0 groups"),
        (lambda m: m.update(config='{"model": 1}'), "invalid config: model"),
    ],
    ids=["step-abc", "no-param-groups", "empty-param-groups", "model-1"],
)
def test_resume_refuses_bad_checkpoint_metadata(copies: dict[str, Path], change_meta, needle: str) -> None:
    path = checkpoint(copies["home"])
    rewrite_st(path, change_meta=change_meta)
    one_line_error(ul(copies["home"], "resume", "s1", "--steps", "1"), str(path), needle)


def test_resume_refuses_a_weight_of_the_wrong_shape(copies: dict[str, Path]) -> None:
    path = checkpoint(copies["home"])
    key = next(k for k in sorted(read_st(path)[0]) if k.startswith("model.decoder."))
    rewrite_st(path, lambda t: t.update({key: torch.zeros(2, 2)}))
    one_line_error(ul(copies["home"], "resume", "s1", "--steps", "1"), str(path), key, "(2, 2) in the file")


def test_resume_refuses_optimizer_state_of_the_wrong_shape(copies: dict[str, Path]) -> None:
    path = checkpoint(copies["home"])
    key = next(k for k in sorted(read_st(path)[0]) if k.endswith(".exp_avg"))
    rewrite_st(path, lambda t: t.update({key: torch.zeros(3)}))
    one_line_error(ul(copies["home"], "resume", "s1", "--steps", "1"), str(path), key)


def test_resume_refuses_a_checkpoint_changed_since_it_was_written(copies: dict[str, Path]) -> None:
    path = checkpoint(copies["home"])
    rewrite_st(path, change_meta=lambda m: m.update(note="edited"))
    result = ul(copies["home"], "resume", "s1", "--steps", "1", "--json")
    line = one_line_error(result, str(path), "changed since it was written")
    assert json.loads(result.stdout.strip().splitlines()[-1])["error"] in line
