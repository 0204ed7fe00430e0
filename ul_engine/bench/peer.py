"""The peer of `ul bench --peer`: an equally sized diffusion autoencoder built from `diffusers` blocks, timed
in the same process on the same batch as our stage-1 model.

The peer: diffusers' VAE `Encoder` (our encoder's channels and blocks, one latent, no KL) gives the latent;
its upsampled copy (nearest, to the image size) is concatenated to x_t at the input of a `UNet2DModel`
(attention at the two lower levels) that predicts v. Its loss is the plain v-MSE at a uniform cosine time,
with the latent noised at our λ_z(0); it has no prior, so the UNet's width is chosen to make the whole peer
as large as our encoder + prior + decoder (`match_width`). Both sides are timed with the same loop: forward,
backward, AdamW step, at the same batch and precision (fp32 on a CPU, bf16 autocast on CUDA).
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from ul_engine.core.config import RunConfig
from ul_engine.core.errors import ULError
from ul_engine.data import BatchStream, make_source
from ul_engine.model import UnifiedLatents

PEER_GROUPS = 4  # GroupNorm groups in the peer: widths in steps of 4 let the parameter count match closely
MATCH_TOLERANCE = 0.10
INSTALL_HINT = "pip install 'ul-studio[bench]' (or: pip install 'diffusers>=0.30')"


def require_diffusers() -> Any:
    """The diffusers module, or a ULError that says how to install it."""
    try:
        import diffusers  # optional: diffusers may be absent (require_diffusers says how to install it)
    except ImportError as exc:
        raise ULError(f"ul bench --peer needs the optional package diffusers ({exc}); {INSTALL_HINT}") from None
    return diffusers


class PeerAutoencoder(nn.Module):
    """diffusers Encoder → latent z; UNet2DModel(concat[x_t, up(z0)], t) → v̂. forward(x) is the loss."""

    def __init__(self, cfg: RunConfig, width: int) -> None:
        super().__init__()
        require_diffusers()
        from diffusers import UNet2DModel  # optional: diffusers may be absent
        from diffusers.models.autoencoders.vae import Encoder  # optional: diffusers may be absent

        m = cfg.model
        if m.encoder.patch != 1:
            raise ULError("the peer model mirrors encoders without patching (model.encoder.patch = 1)")
        self.latent_channels = m.latent_channels
        self.latent_noise = math.sqrt(1.0 / (1.0 + math.exp(cfg.loss.latent_logsnr_max)))  # σ at λ_z(0)
        self.width = int(width)
        self.encoder = Encoder(
            in_channels=3,
            out_channels=m.latent_channels,
            down_block_types=("DownEncoderBlock2D",) * len(m.encoder.channels),
            block_out_channels=tuple(m.encoder.channels),
            layers_per_block=m.encoder.blocks,
            norm_num_groups=PEER_GROUPS,
            double_z=False,
        )
        self.unet = UNet2DModel(
            sample_size=cfg.data.resolution,
            in_channels=3 + m.latent_channels,
            out_channels=3,
            block_out_channels=(self.width, 2 * self.width, 2 * self.width),
            down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
            up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
            layers_per_block=1,
            norm_num_groups=PEER_GROUPS,
            attention_head_dim=32,
        )

    def forward(self, x: Tensor) -> Tensor:
        z = self.encoder(x)
        z0 = math.sqrt(1.0 - self.latent_noise**2) * z + self.latent_noise * torch.randn_like(z)
        t = torch.rand(x.shape[0], device=x.device)
        alpha = torch.cos(0.5 * math.pi * t).view(-1, 1, 1, 1)
        sigma = torch.sin(0.5 * math.pi * t).view(-1, 1, 1, 1)
        eps = torch.randn_like(x)
        x_t = alpha * x + sigma * eps
        v = alpha * eps - sigma * x
        cond = F.interpolate(z0, size=x.shape[-2:], mode="nearest")
        v_hat = self.unet(torch.cat([x_t, cond], dim=1), t * 1000).sample
        return F.mse_loss(v_hat.float(), v.float())


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def our_parameters(cfg: RunConfig) -> int:
    """Our stage-1 model's parameters (encoder + prior + decoder): what the peer is sized to."""
    with torch.device("meta"):
        return count_parameters(UnifiedLatents(cfg))


def peer_parameters(cfg: RunConfig, width: int) -> int:
    with torch.device("meta"):
        return count_parameters(PeerAutoencoder(cfg, width))


def match_width(cfg: RunConfig, target: int | None = None) -> tuple[int, int]:
    """(UNet base width, peer parameters) closest to `target` (default: ours); ULError if none within 10 %."""
    target = target or our_parameters(cfg)
    best: tuple[int, int] | None = None
    for width in range(2 * PEER_GROUPS, 1025, PEER_GROUPS):
        params = peer_parameters(cfg, width)
        if best is None or abs(params - target) < abs(best[1] - target):
            best = (width, params)
        if params > target:
            break
    assert best is not None
    if abs(best[1] - target) > MATCH_TOLERANCE * target:
        raise ULError(
            f"no peer width gives {target:,} parameters within {MATCH_TOLERANCE:.0%} "
            f"(closest: width {best[0]}, {best[1]:,}); the encoder alone may be too large"
        )
    return best


def _forward_gflop(fn: Any) -> float:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn()
    return counter.get_total_flops() / 1e9


def peer_comparison(cfg: RunConfig, acc: Any, device: str, steps: int, rounds: int = 3) -> dict[str, Any]:
    """Training images/s of ours and the peer, alternating in `rounds` so both see the same machine load;
    `ratio` > 1 means ours trains more images per second (the median round of each)."""
    diffusers = require_diffusers()

    width, peer_params = match_width(cfg)
    torch.manual_seed(0)
    dev = acc.device
    ours = UnifiedLatents(cfg).to(dev)
    peer = PeerAutoencoder(cfg, width).to(dev)
    batch = cfg.optim.batch_size
    x, _ = BatchStream(make_source(cfg.data), batch, 0).batch(0)
    x = x.to(dev)
    hyper = {"lr": cfg.optim.lr, "betas": (cfg.optim.beta1, cfg.optim.beta2), "weight_decay": cfg.optim.weight_decay}

    def stepper(model: nn.Module, loss_of: Any) -> Any:
        opt = torch.optim.AdamW(model.parameters(), **hyper)
        model.train()

        def step() -> None:
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda"):
                loss = loss_of()
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return step

    runs = {
        "ours": stepper(ours, lambda: ours(x).loss()),
        "peer": stepper(peer, lambda: peer(x)),
    }
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    cpu_seconds: dict[str, list[float]] = {name: [] for name in runs}
    for step in runs.values():
        step()  # warm-up
    for _ in range(rounds):
        for name, step in runs.items():
            _sync(device)
            start, cpu_start = time.perf_counter(), time.process_time()
            for _ in range(steps):
                step()
            _sync(device)
            seconds[name].append((time.perf_counter() - start) / steps)
            cpu_seconds[name].append((time.process_time() - cpu_start) / steps)
    ours.eval()
    peer.eval()
    gflop = {
        "ours": _forward_gflop(lambda: ours(x)) / batch,
        "peer": _forward_gflop(lambda: peer(x)) / batch,
    }
    ips = {name: batch / statistics.median(s) for name, s in seconds.items()}
    ours_params = count_parameters(ours)
    return {
        "model": (
            f"diffusers {diffusers.__version__}: Encoder{tuple(cfg.model.encoder.channels)} + "
            f"UNet2DModel({width}, {2 * width}, {2 * width}; attention at the two lower levels)"
        ),
        "unet_width": width,
        "parameters": {"ours": ours_params, "peer": peer_params, "peer_over_ours": peer_params / ours_params},
        "batch_size": batch,
        "precision": "bf16 autocast" if device == "cuda" else "fp32",
        "ours_train_images_per_s": ips["ours"],
        "peer_train_images_per_s": ips["peer"],
        "ratio": ips["ours"] / ips["peer"],
        # CPU time of this process per step (all threads): on a shared machine it moves less with the load
        "cpu_seconds_per_step": {name: statistics.median(s) for name, s in cpu_seconds.items()},
        "cpu_time_ratio": statistics.median(cpu_seconds["peer"]) / statistics.median(cpu_seconds["ours"]),
        "forward_gflop_per_image": gflop,
        "rounds_seconds_per_step": seconds,
    }


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()
