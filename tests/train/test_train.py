"""The training loop without the store: exact resume, non-finite guard, atomic checkpoints, exports."""

from __future__ import annotations

import errno
import itertools
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ul_engine.core import io
from ul_engine.core.config import resolve, validate
from ul_engine.core.errors import CheckpointError, ConfigError, DiskFullError, TrainingDiverged
from ul_engine.data import BatchStream, make_source
from ul_engine.inference import loading
from ul_engine.inference.loading import ema_copy, stage1_from_checkpoint
from ul_engine.model import LatentBase, UnifiedLatents
from ul_engine.nets import parameter_counts
from ul_engine.train.loop import Trainer, lr_at, make_accelerator
from ul_engine.train.stages import Stage1Objective, Stage2Objective
from ul_engine.weights import load_tensors


def make_trainer(tmp: Path, **overrides: object) -> Trainer:
    sets = {"optim.batch_size": 8, "train.checkpoint_every": 1000, **overrides}
    cfg = resolve("smoke", [f"{k}={v}" for k, v in sets.items()])
    torch.manual_seed(cfg.train.seed)
    model = UnifiedLatents(cfg)
    stream = BatchStream(make_source(cfg.data), cfg.optim.batch_size, cfg.data.seed)
    acc = make_accelerator("cpu")
    return Trainer(cfg, Stage1Objective(model, stream, acc.device), tmp, accelerator=acc)


def weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.unwrapped.state_dict().items()}


def test_twenty_steps_equal_ten_plus_resume_plus_ten(tmp_path: Path):
    straight = make_trainer(tmp_path / "a")
    straight.train(20)
    first = make_trainer(tmp_path / "b")
    first.train(10)
    resumed = make_trainer(tmp_path / "b")
    resumed.load_checkpoint(resumed.latest_checkpoint())
    assert resumed.state.step == 10
    resumed.train(20)
    a, b = weights(straight), weights(resumed)
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-6, rtol=0), name
    for name, t in straight.ema.shadow.items():
        assert torch.allclose(t, resumed.ema.shadow[name], atol=1e-6, rtol=0), name


def test_grad_accumulation_runs_and_counts_examples(tmp_path: Path):
    trainer = make_trainer(tmp_path, **{"optim.grad_accum": 2})
    trainer.train(2)
    assert trainer.state.examples_seen == 16


def test_nonfinite_steps_are_skipped_and_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("UL_FAULT_NAN_STEPS", "3-4")
    trainer = make_trainer(tmp_path)
    before = None
    for _ in range(3):
        trainer.train_step()
    before = weights(trainer)
    assert trainer.train_step() is None and trainer.train_step() is None
    after = weights(trainer)
    assert all(torch.equal(before[k], after[k]) for k in before)
    values = trainer.train_step()
    assert values is not None and values["train/bad_steps"] == 2.0


def test_too_many_bad_steps_stop_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("UL_FAULT_NAN_STEPS", "2-100")
    trainer = make_trainer(tmp_path, **{"optim.max_bad_steps": 3})
    trainer.train(2)
    good = trainer.latest_checkpoint()
    with pytest.raises(TrainingDiverged, match="3 consecutive non-finite"):
        trainer.train(50)
    assert trainer.latest_checkpoint() == good


def test_interrupted_checkpoint_write_keeps_the_previous(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    trainer = make_trainer(tmp_path)
    trainer.train(2)
    good = trainer.latest_checkpoint()
    sha = io.sha256_file(good)
    trainer.train_step()

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(io.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        trainer.save_checkpoint()
    monkeypatch.undo()
    assert trainer.latest_checkpoint() == good and io.sha256_file(good) == sha
    assert not list(tmp_path.glob(".*.tmp"))
    stage1_from_checkpoint(good)


def test_disk_full_while_saving_raises_clearly_and_keeps_earlier(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    trainer = make_trainer(tmp_path)
    trainer.train(1)
    good = trainer.latest_checkpoint()
    trainer.train_step()
    real_fsync = io.os.fsync

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io.os, "fsync", full)
    with pytest.raises(DiskFullError, match="disk full"):
        trainer.save_checkpoint()
    monkeypatch.setattr(io.os, "fsync", real_fsync)
    assert trainer.latest_checkpoint() == good


def test_pickled_checkpoint_is_refused(tmp_path: Path):
    bad = tmp_path / "step-00000001.safetensors"
    torch.save({"weights": torch.zeros(2)}, bad)
    with pytest.raises(CheckpointError, match="pickle"):
        load_tensors(bad)
    with pytest.raises(CheckpointError):
        stage1_from_checkpoint(bad)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a model at all")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_tensors(garbage)


def test_exported_model_loads_in_a_fresh_process(tmp_path: Path):
    trainer = make_trainer(tmp_path / "run")
    trainer.train(2)
    inference = ema_copy(trainer.unwrapped, trainer.ema)
    loading.export_module(inference, tmp_path / "model", config=trainer.cfg, info={"step": 2})
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    expected = inference.encode(x)
    torch.save(x, tmp_path / "x.pt")  # test-side only, to hand the input over
    script = (
        "import sys, torch\n"
        "from ul_engine.inference.loading import load_stage1\n"
        f"m = load_stage1(r'{tmp_path / 'model'}')\n"
        f"x = torch.load(r'{tmp_path / 'x.pt'}', weights_only=True)\n"
        "z = m.encode(x)\n"
        "assert 'ul_engine.train' not in sys.modules, 'training code was imported'\n"
        "print(z.flatten()[:4].tolist())\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got = torch.tensor(eval(out.stdout.strip()))
    assert torch.allclose(got, expected.flatten()[:4], atol=1e-5)


def test_init_from_a_bundle_starts_from_its_weights_and_refuses_other_sizes(tmp_path: Path):
    trainer = make_trainer(tmp_path / "run")
    trainer.train(2)
    inference = ema_copy(trainer.unwrapped, trainer.ema)
    loading.export_module(inference, tmp_path / "model", config=trainer.cfg, info={"step": 2})
    fresh = UnifiedLatents(trainer.cfg)
    trained = inference.state_dict()
    assert any(not torch.equal(v, trained[k]) for k, v in fresh.state_dict().items())  # two steps changed something
    loading.init_stage1_from(fresh, tmp_path / "model")
    for name in loading.STAGE1_COMPONENTS:
        for key, value in getattr(fresh, name).state_dict().items():
            assert torch.equal(value, getattr(inference, name).state_dict()[key]), f"{name}.{key}"
    wider = UnifiedLatents(resolve("smoke", ["model.prior.width=96"]))
    with pytest.raises(CheckpointError, match=r"train\.init_from: prior"):
        loading.init_stage1_from(wider, tmp_path / "model")


@pytest.mark.slow
def test_imagenet_512_preset_trains_one_step_of_each_stage(tmp_path: Path):
    """The paper's sizes build and take an optimizer step (at 64×64 to fit a CPU; the nets are resolution-free)."""
    cfg = resolve(
        "imagenet-512",
        [
            'data.kind="shapes"',
            "data.resolution=64",
            "data.num_classes=4",
            "data.class_subfolders=false",
            'data.path=""',
            "optim.batch_size=2",
        ],
    )
    counts = parameter_counts(cfg.model, 1000)
    assert counts["stage1"] > 300_000_000 and counts["base"] > 300_000_000
    torch.manual_seed(0)
    acc = make_accelerator("cpu")
    stream = BatchStream(make_source(cfg.data), 2, 0)
    trainer = Trainer(cfg, Stage1Objective(UnifiedLatents(cfg), stream, acc.device), tmp_path / "s1", accelerator=acc)
    values = trainer.train_step()
    assert values is not None and values["rate/bits_per_pixel"] > 0
    cfg2 = validate({**cfg.to_dict(), "stage": 2})
    latents = torch.randn(4, *cfg.latent_shape())
    objective = Stage2Objective(LatentBase(cfg2), latents, torch.zeros(4, dtype=torch.long), cfg2, acc.device)
    trainer2 = Trainer(cfg2, objective, tmp_path / "s2", accelerator=acc)
    assert trainer2.train_step() is not None


def test_lr_warms_up_holds_then_cools_down_to_zero_at_the_last_step():
    flat = resolve("smoke", ["optim.lr=1e-3", "optim.warmup_steps=10", "train.steps=100"])
    assert lr_at(flat, 0) == pytest.approx(1e-4) and lr_at(flat, 99) == pytest.approx(1e-3)  # the paper's: no decay
    cool = resolve("smoke", ["optim.lr=1e-3", "optim.warmup_steps=10", "train.steps=100", "optim.cooldown=0.25"])
    assert lr_at(cool, 74) == pytest.approx(1e-3)
    assert lr_at(cool, 75) == pytest.approx(1e-3)  # the cooldown's first step is still at the peak
    assert lr_at(cool, 90) == pytest.approx(1e-3 * 10 / 25)
    assert lr_at(cool, 99) == pytest.approx(1e-3 / 25) and lr_at(cool, 100) == 0.0
    lrs = [lr_at(cool, s) for s in range(10, 100)]
    assert all(b <= a for a, b in itertools.pairwise(lrs))


def test_cooldown_without_a_step_budget_is_refused_naming_the_field():
    with pytest.raises(ConfigError, match=r"optim\.cooldown needs train\.steps"):
        resolve("smoke", ["optim.cooldown=0.3", "train.steps=0", "train.minutes=5"])
