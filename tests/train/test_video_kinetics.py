"""The paper's Kinetics-600 layout (kinetics-128): its shapes, and one training step of both stages."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from ul_engine.cli.main import main as ul_main
from ul_engine.core.config import resolve
from ul_engine.core.video_io import write_clip_mp4
from ul_engine.data.bouncing import BouncingSource
from ul_engine.model import LatentBase, UnifiedLatents
from ul_engine.nets import parameter_counts


def test_kinetics_128_is_the_papers_layout():
    cfg = resolve("kinetics-128")
    assert (cfg.data.frames, cfg.data.resolution) == (16, 128)
    assert (cfg.model.time_downsample, cfg.model.downsample()) == (4, 8)  # 4×8×8 (time × height × width)
    assert cfg.latent_shape() == (32, 4, 16, 16)
    counts = parameter_counts(cfg.model)  # on the meta device: no memory
    assert counts["stage1"] > 100_000_000 and counts["base"] > 100_000_000


@pytest.mark.slow
def test_kinetics_128_trains_one_step_of_each_stage_at_reduced_size(tmp_path: Path):
    """The preset's layout (4 encoder stages, 3 decoder levels, 4× in time, video-folder data) with narrow nets
    and 32² frames, through the CLI: one stage-1 step, the latent cache, one stage-2 step."""
    videos = tmp_path / "videos"
    for i in range(2):
        clip, _ = BouncingSource(48, 20, seed=i)[0]
        write_clip_mp4(videos / f"clip{i}.mp4", list(clip), fps=25)
    home = tmp_path / "home"
    small = [
        f"data.path={videos}", "data.resolution=32", "model.latent_channels=8",
        "model.encoder.channels=[16, 32, 32, 32]", "model.encoder.blocks=1", "model.encoder.final_blocks=1",
        "model.decoder.channels=[16, 32, 32]", "model.decoder.blocks=1", "model.decoder.width=64",
        "model.decoder.depth=1", "model.decoder.heads=4", "model.prior.width=64", "model.prior.depth=1",
        "model.prior.heads=4", "model.base.widths=[64, 128]", "model.base.depths=[1, 1]", "model.base.heads=4",
        "optim.batch_size=2", "train.device=cpu",
    ]  # fmt: skip
    sets = [a for s in small for a in ("--set", s)]
    assert ul_main(["--home", str(home), "train", "--preset", "kinetics-128", "--name", "k1", "--steps", "1",
                    *sets, "--json"]) == 0  # fmt: skip
    assert ul_main(["--home", str(home), "train", "--preset", "kinetics-128", "--stage", "2", "--from-run", "k1",
                    "--steps", "1", "--set", "optim.batch_size=2", "--set", "model.base.widths=[64, 128]",
                    "--set", "model.base.depths=[1, 1]", "--set", "model.base.heads=4", "--set", "train.device=cpu",
                    "--json"]) == 0  # fmt: skip


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_kinetics_128_full_size_step_on_cuda():
    """Full width, 16×128² clips: one bf16 step of stage 1 (E + P + D) and of the base model on one GPU."""
    torch.manual_seed(0)
    cfg = resolve("kinetics-128")
    device = torch.device("cuda")
    stage1 = UnifiedLatents(cfg).to(device)
    base = LatentBase(cfg).to(device)
    x = torch.rand(2, 3, 16, 128, 128, device=device) * 2 - 1
    torch.cuda.reset_peak_memory_stats()
    for module, batch in ((stage1, x), (base, None)):
        opt = torch.optim.AdamW(module.parameters(), lr=1e-4)
        start = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            if batch is not None:
                losses = module(batch)
                z = module.encode(batch).detach().float()
            else:
                losses = module(z)
            loss = losses.loss()
        loss.backward()
        opt.step()
        torch.cuda.synchronize()
        assert torch.isfinite(loss)
        print(f"{type(module).__name__}: loss {float(loss):.4g}, {time.perf_counter() - start:.2f} s, "
              f"peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")  # fmt: skip
    assert z.shape == (2, 32, 4, 16, 16)
