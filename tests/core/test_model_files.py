"""The model-file checks in-process: the header parser, and non-finite weights in a training checkpoint that
has no recorded sha256 (so only the data check can catch them), for inference and for resume."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ul_engine import weights
from ul_engine.core import io
from ul_engine.core.config import resolve
from ul_engine.core.errors import ModelFileError
from ul_engine.data import BatchStream, make_source
from ul_engine.inference.loading import stage1_from_checkpoint
from ul_engine.model import UnifiedLatents
from ul_engine.train.loop import Trainer, make_accelerator
from ul_engine.train.stages import Stage1Objective


def _trainer(folder: Path) -> Trainer:
    cfg = resolve("smoke", ["optim.batch_size=4", "train.checkpoint_every=1000"])
    torch.manual_seed(0)
    model = UnifiedLatents(cfg)
    acc = make_accelerator("cpu")
    stream = BatchStream(make_source(cfg.data), cfg.optim.batch_size, cfg.data.seed)
    return Trainer(cfg, Stage1Objective(model, stream, acc.device), folder, accelerator=acc)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real training checkpoint after one step (weights, EMA, AdamW moments)."""
    trainer = _trainer(tmp_path_factory.mktemp("ckpt"))
    trainer.train(1)
    path = trainer.latest_checkpoint()
    assert path is not None
    return path


def _poisoned(src: Path, dst: Path, prefix: str) -> str:
    """Copy `src` to `dst` with one value of the first tensor under `prefix` made NaN; returns its name."""
    with safe_open(str(src), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        meta = dict(f.metadata())
    key = sorted(k for k in tensors if k.startswith(prefix) and tensors[k].numel() > 1)[0]
    tensors[key] = tensors[key].clone()
    tensors[key].view(-1)[0] = float("nan")
    save_file(tensors, str(dst), metadata=meta)
    return key


def test_a_safetensors_header_that_starts_like_a_pickle_is_still_read(tmp_path: Path) -> None:
    """A 640-byte header makes the first bytes 0x80 0x02, the opening of a protocol-2 pickle: the file is
    judged by its header, not taken for a pickle."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    header += b" " * (0x280 - len(header))
    path = tmp_path / "w.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + struct.pack("<2f", 1.5, -2.0))
    assert path.read_bytes()[:2] == b"\x80\x02"
    tensors, _ = weights.load_tensors(path)
    assert tensors["w"].tolist() == [1.5, -2.0]
    assert io.read_header(path).tensors["w"] == io.TensorEntry("F32", (2,))


def test_a_header_whose_offsets_leave_the_file_is_one_line(tmp_path: Path) -> None:
    header = json.dumps({"w": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 4000]}}).encode()
    path = tmp_path / "w.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)
    with pytest.raises(ModelFileError, match=r"damaged safetensors header: tensor w has data offsets"):
        io.read_header(path)


def test_nan_ema_weights_in_a_checkpoint_are_refused_for_inference(checkpoint: Path, tmp_path: Path) -> None:
    bad = tmp_path / checkpoint.name
    key = _poisoned(checkpoint, bad, "ema.")
    stage1_from_checkpoint(checkpoint)  # the intact file loads
    with pytest.raises(ModelFileError, match=rf"{bad}: tensor {key} holds NaN or infinite values"):
        stage1_from_checkpoint(bad)


def test_nan_optimizer_state_is_refused_on_resume(checkpoint: Path, tmp_path: Path) -> None:
    bad = tmp_path / "poisoned" / checkpoint.name
    bad.parent.mkdir()
    key = _poisoned(checkpoint, bad, "optim.")
    resumed = _trainer(tmp_path / "resumed")
    before = {k: v.clone() for k, v in resumed.unwrapped.state_dict().items()}
    with pytest.raises(ModelFileError, match=rf"tensor {key} holds NaN"):
        resumed.load_checkpoint(bad)
    after = resumed.unwrapped.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items()), "a refused checkpoint changes nothing"
    resumed.load_checkpoint(checkpoint)
    assert resumed.state.step == 1
