"""`ul eval` records its result on the checkpoint it evaluated, and the rate–distortion record reads it back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ul_engine.cli.main import main as ul_main
from ul_engine.core.rate_distortion import collect, record_evaluation
from ul_engine.store import Store


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A smoke stage-1 run with checkpoints at steps 5 and 10."""
    home = tmp_path_factory.mktemp("rd-home")
    assert ul_main(["--home", str(home), "train", "--preset", "smoke", "--name", "rd", "--steps", "10",
                    "--set", "train.checkpoint_every=5", "--set", "train.threads=1", "--json"]) == 0  # fmt: skip
    return home


def _eval(home: Path, capsys: pytest.CaptureFixture, *extra: str) -> dict:
    capsys.readouterr()
    code = ul_main(["--home", str(home), "eval", "--run", "rd", "--n", "3", "--decoder-steps", "2", *extra, "--json"])
    assert code == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_eval_records_on_its_checkpoint_only(home: Path, capsys: pytest.CaptureFixture) -> None:
    with Store.open(home) as store:
        before = {c.step: dict(c.metrics or {}) for c in store.list_checkpoints(store.get_run("rd").id)}
        assert all(p.psnr is None for p in collect(store))
    assert set(before) == {5, 10}

    result = _eval(home, capsys, "--checkpoint", "5")
    assert result["checkpoint_step"] == 5 and result["recorded"] is not None
    with Store.open(home) as store:
        run = store.get_run("rd")
        points = {p.step: p for p in collect(store)}
        assert set(points) == {5, 10}
        p5, p10 = points[5], points[10]
        assert p5.evaluated and not p10.evaluated
        assert p5.checkpoint_id == result["recorded"]
        assert p5.psnr == pytest.approx(result["psnr"])
        assert p5.bits_per_pixel == pytest.approx(result["bits_per_pixel"])
        assert p5.ssim == pytest.approx(result["ssim"])
        assert (p5.n, p5.decoder_steps) == (3, 2)
        assert p5.loss_factor == pytest.approx(run.config["loss"]["loss_factor"])
        # the training values saved with the checkpoint are kept beside the evaluation
        ck5 = store.get_checkpoint(p5.checkpoint_id)
        assert {k: ck5.metrics[k] for k in before[5]} == before[5]
        # the metric series the Runs table and the Monitor read
        series = store.read_metric(run.id, "eval/psnr")
        assert list(series.steps) == [5]
        assert float(series.values[0]) == pytest.approx(result["psnr"])

    result = _eval(home, capsys, "--no-record")
    assert result["checkpoint_step"] == 10 and "recorded" not in result
    with Store.open(home) as store:
        assert not {p.step: p for p in collect(store)}[10].evaluated


def test_record_ignores_a_different_file_at_the_same_step(home: Path) -> None:
    with Store.open(home) as store:
        run = store.get_run("rd")
        result = {"psnr": 12.0, "bits_per_pixel": 0.5, "n": 3, "decoder_steps": 2}
        assert record_evaluation(store, run.id, 10, "0" * 64, result) is None
        assert not {p.step: p for p in collect(store)}[10].evaluated
