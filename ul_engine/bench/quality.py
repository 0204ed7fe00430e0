"""`ul bench --quality`: sample quality per CPU-minute of training, UL beside the two designs a user would pick
instead, trained on the same data for the same CPU budget, one after the other in one process.

- **ul**: stage 1 (encoder, prior, decoder) for `stage1_share` of the budget, then stage 2 (the base model) on
  its latents for the rest: the engine's own objectives, trainer, EMA and sampler.
- **pixel**: a diffusers `UNet2DModel` on the pixels, v-prediction, the base model's weighting family
  sigmoid(b − λ) on the decoder's image schedule, sized to UL's parameter count (stage 1 + stage 2).
- **ldm**: diffusers `AutoencoderKL` trained as Stable Diffusion's first stage without its adversarial and
  perceptual terms (summed L1 + 1e-6 · KL), sized to UL's stage 1, for the same share of the budget; then the
  same base model as UL's stage 2 on its latents, scaled to unit variance (SD's scale factor) and sampled to
  λ = 10 (near-clean latents, which is what its decoder was trained on), so the two latent designs differ
  only in the autoencoder.

The budget is CPU-seconds of this process (`time.process_time`), so other work on the machine slows every
contender's wall clock but not its share of computation; wall clock and the load average are recorded beside
it. Scores: FD-shapes of `samples` unguided samples against the validation images `ul eval --fd` uses (the
samples quantised to 8 bits as saved images are), reconstruction PSNR of both autoencoders on 256 validation
images, UL's rate in bits per pixel, and each model's parameter count and network evaluations per sample.
"""

from __future__ import annotations

import math
import os
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ul_engine.bench.peer import PEER_GROUPS, require_diffusers
from ul_engine.core import json_output
from ul_engine.core.config import RunConfig, resolve, validate
from ul_engine.core.errors import ULError
from ul_engine.core.imaging import tensor_to_uint8
from ul_engine.core.io import write_json
from ul_engine.data import BatchStream, make_source
from ul_engine.data.loader import fixed_validation_batch, to_model_tensor
from ul_engine.diffusion import gaussian, samplers, schedule, weighting
from ul_engine.eval.evaluate import FD_REFERENCE_SEED
from ul_engine.eval.metrics.fidelity import psnr_ssim
from ul_engine.eval.metrics.generation import fd_shapes
from ul_engine.inference.sample import generate
from ul_engine.model import LatentBase, UnifiedLatents
from ul_engine.train.loop import Trainer, make_accelerator
from ul_engine.train.stages import Stage1Objective, Stage2Objective, StepBatches

RECON_SEED = 4242
RECON_N = 256
KL_WEIGHT = 1e-6  # Stable Diffusion's first-stage KL weight
LDM_LATENT_LOGSNR_MAX = 10.0
Log = Callable[[str], None]


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _train_for(trainer: Trainer, cpu_seconds: float, log: Log, label: str) -> dict[str, Any]:
    """Optimizer steps until this process has spent `cpu_seconds` of CPU time on them."""
    cpu0, wall0, load0 = time.process_time(), time.perf_counter(), os.getloadavg()[0]
    last: dict[str, float] = {}
    next_log = wall0 + 30
    while time.process_time() - cpu0 < cpu_seconds:
        values = trainer.train_step()
        last = values or last
        if time.perf_counter() >= next_log:
            next_log += 30
            log(f"{label}: step {trainer.state.step}, {time.process_time() - cpu0:.0f}/{cpu_seconds:.0f} CPU-s")
    return {
        "steps": trainer.state.step,
        "cpu_seconds": time.process_time() - cpu0,
        "wall_seconds": time.perf_counter() - wall0,
        "load_average": [load0, os.getloadavg()[0]],
        "last_loss": last.get("loss/total", last.get("loss")),
    }


class _ModuleObjective:
    """A module whose forward(x) is the mean loss, on the same (seed, step) batches as UL's stage 1."""

    def __init__(self, module: nn.Module, stream: BatchStream, device: torch.device) -> None:
        self.module = module
        self.batches = StepBatches(stream, device)

    def micro_losses(self, model: nn.Module, step: int, micro: int, micro_count: int) -> tuple[Tensor, dict]:
        x, _ = self.batches.micro(step, micro, micro_count)
        loss = model(x)
        return loss, {"loss": float(loss.detach())}


def _unet(cfg: RunConfig, width: int, in_channels: int) -> nn.Module:
    from diffusers import UNet2DModel  # optional: diffusers may be absent (checked by require_diffusers)

    return UNet2DModel(
        sample_size=cfg.data.resolution,
        in_channels=in_channels,
        out_channels=3,
        block_out_channels=(width, 2 * width, 2 * width),
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        norm_num_groups=PEER_GROUPS,
        attention_head_dim=32,
    )


class PixelDiffusion(nn.Module):
    """v-prediction UNet on pixels; loss ½·(−dλ/dt)·sigmoid(b − λ)·‖ε − ε̂‖² summed per image (nats)."""

    def __init__(self, cfg: RunConfig, width: int) -> None:
        super().__init__()
        loss = cfg.loss
        self.unet = _unet(cfg, width, 3)
        self.schedule = schedule.image_schedule(
            loss.image_logsnr_min, loss.image_logsnr_max, resolution=cfg.data.resolution, shift_ref=loss.image_shift_ref
        )
        self.bias = loss.base_sigmoid_bias

    def v_hat(self, x_t: Tensor, logsnr: Tensor) -> Tensor:
        t = self.schedule.t_of_logsnr(logsnr).clamp(0, 1) * 1000  # UNet2DModel's timestep embedding scale
        return self.unet(x_t, t).sample

    def forward(self, x: Tensor) -> Tensor:
        t = schedule.stratified_uniform(x.shape[0], device=x.device)
        logsnr, neg_d = self.schedule.logsnr(t).to(x.device), self.schedule.neg_dlogsnr_dt(t).to(x.device)
        noise = torch.randn_like(x)
        x_t = gaussian.q_sample(x, logsnr, noise)
        v = gaussian.v_target(x, noise, logsnr)
        w = weighting.sigmoid_weight(logsnr, self.bias)
        return weighting.diffusion_loss(v, self.v_hat(x_t, logsnr), logsnr, neg_d, w).mean()

    @torch.no_grad()
    def sample(self, seeds: Sequence[int], steps: int, sampler: str) -> Tensor:
        shape = (3, self.unet.config.sample_size, self.unet.config.sample_size)

        def denoise(x_t: Tensor, logsnr: Tensor) -> Tensor:
            return gaussian.x_from_v(x_t, self.v_hat(x_t, logsnr), logsnr)

        grid = self.schedule.grid(steps)
        noise = samplers.PerSampleNoise(seeds)
        return samplers.sample(denoise, grid, noise, shape, sampler=sampler, final="prediction")


class KLAutoencoder(nn.Module):
    """diffusers AutoencoderKL as SD's first stage without GAN and LPIPS: Σ|x − x̂| + 1e-6 · KL per image."""

    def __init__(self, cfg: RunConfig, base_width: int) -> None:
        super().__init__()
        from diffusers import AutoencoderKL  # optional: diffusers may be absent (checked by require_diffusers)

        m = cfg.model
        levels = len(m.encoder.channels)
        widths = tuple(base_width * c // m.encoder.channels[0] for c in m.encoder.channels)
        self.vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * levels,
            up_block_types=("UpDecoderBlock2D",) * levels,
            block_out_channels=widths,
            layers_per_block=m.encoder.blocks,
            latent_channels=m.latent_channels,
            norm_num_groups=PEER_GROUPS,
            sample_size=cfg.data.resolution,
        )

    def forward(self, x: Tensor) -> Tensor:
        posterior = self.vae.encode(x).latent_dist
        x_hat = self.vae.decode(posterior.sample()).sample
        rec = (x - x_hat).abs().flatten(1).sum(1)
        return (rec + KL_WEIGHT * posterior.kl()).mean()


def _matched(build: Callable[[int], nn.Module], target: int, widths: Sequence[int]) -> tuple[int, int]:
    """The width (from the increasing `widths`) whose model is closest to `target` parameters, and its count.
    Parameter counts grow with width, so a bisection builds a handful of models instead of all of them."""
    lo, hi = 0, len(widths) - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _params(build(widths[mid])) < target:
            lo = mid
        else:
            hi = mid
    counts = {w: _params(build(w)) for w in (widths[lo], widths[hi])}
    best = min(counts, key=lambda w: abs(counts[w] - target))
    return best, counts[best]


def _uint8_batch(x: Tensor) -> Tensor:
    """Quantised to 8 bits as saved images are, back in [−1, 1]."""
    return torch.from_numpy(np.stack(tensor_to_uint8(x))).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def _mean(values: Sequence[float]) -> float | None:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None


def _fd(real: Tensor, fake: Tensor) -> dict[str, Any]:
    result = fd_shapes(real, fake)
    return {"value": result["value"], "kid": result["kid"], "n": result["n_fake"],
            "kind_histogram_fake": result["kind_histogram_fake"]}  # fmt: skip


def _latents(encode: Callable[[Tensor], Tensor], source: Any, count: int, batch: int = 64) -> tuple[Tensor, Tensor]:
    zs, ys = [], []
    with torch.no_grad():
        for start in range(0, count, batch):
            items = [source[i] for i in range(start, min(count, start + batch))]
            zs.append(encode(to_model_tensor(np.stack([img for img, _ in items]))).float())
            ys.append(torch.tensor([label for _, label in items], dtype=torch.long))
    return torch.cat(zs), torch.cat(ys)


def _save_partial(path: Path | None, result: dict[str, Any]) -> None:
    if path is not None:
        write_json(path, json_output.finite({**result, "finished": False}))


def quality_comparison(
    preset: str = "shapes-32",
    minutes: float = 10.0,
    *,
    samples: int = 1000,
    stage1_share: float = 0.6,
    threads: int = 1,
    overrides: Sequence[str] = (),
    contenders: Sequence[str] = ("ul", "pixel", "ldm"),
    log: Log = print,
    partial: Path | None = None,
) -> dict[str, Any]:
    """Train and score each contender for `minutes` CPU-minutes; the result is what docs/benchmarks.md shows.

    `partial`: a JSON file rewritten (atomically) after each contender, so a run stopped after an hour keeps what
    it measured."""
    require_diffusers()
    if not 0 < stage1_share < 1:
        raise ULError(f"--stage1-share must be between 0 and 1, got {stage1_share}")
    if minutes <= 0 or samples < 2:
        raise ULError("--minutes must be > 0 and --samples at least 2")
    unknown = set(contenders) - {"ul", "pixel", "ldm"}
    if unknown:
        raise ULError(f"unknown contenders {sorted(unknown)}; choose from ul, pixel, ldm")
    cfg = resolve(preset, list(overrides))
    if cfg.data.kind != "shapes" or cfg.model.time_axis:
        raise ULError("the quality benchmark scores FD-shapes: use a preset on the shapes data (e.g. shapes-32)")
    torch.set_num_threads(threads)
    device = torch.device("cpu")
    budget = minutes * 60.0
    sampler, base_steps, dec_steps = cfg.sampling.sampler, cfg.sampling.base_steps, cfg.sampling.decoder_steps
    source = make_source(cfg.data)
    real, _ = fixed_validation_batch(source, samples, seed=FD_REFERENCE_SEED)
    recon_x, _ = fixed_validation_batch(source, RECON_N, seed=RECON_SEED)
    cfg2 = validate({**cfg.to_dict(), "stage": 2})
    latent_count = cfg.train.latent_cache_size  # as many latents as `ul train --stage 2` would encode
    work = Path(tempfile.mkdtemp(prefix="ul-quality-"))
    sizes = {"ul_stage1": _params(UnifiedLatents(cfg)), "ul_stage2": _params(LatentBase(cfg2))}
    result: dict[str, Any] = {
        "preset": preset,
        "cpu_minutes_per_contender": minutes,
        "threads": threads,
        "stage1_share": stage1_share,
        "samples": samples,
        "sampler": sampler,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average_start": list(os.getloadavg()),
        "contenders": {},
    }

    def trainer(module_cfg: RunConfig, objective: Any, name: str) -> Trainer:
        return Trainer(module_cfg, objective, work / name, accelerator=make_accelerator("cpu"))

    def stream() -> BatchStream:
        return BatchStream(source, cfg.optim.batch_size, cfg.train.seed)

    if "ul" in contenders:
        torch.manual_seed(0)
        ul = UnifiedLatents(cfg)
        t1 = trainer(cfg, Stage1Objective(ul, stream(), device), "ul1")
        s1 = _train_for(t1, budget * stage1_share, log, "ul stage 1")
        t1.ema.copy_to(ul)
        ul.eval()
        cpu0 = time.process_time()
        latents, labels = _latents(ul.encode, source, latent_count)
        base = LatentBase(cfg2)
        t2 = trainer(cfg2, Stage2Objective(base, latents, labels, cfg2, device), "ul2")
        s2 = _train_for(t2, budget * (1 - stage1_share) - (time.process_time() - cpu0), log, "ul stage 2")
        t2.ema.copy_to(base)
        base.eval()
        with torch.no_grad():
            z_clean = ul.encode(recon_x)
            rate_bits = float(ul.estimate_rate(z_clean).mean()) / math.log(2) / (recon_x[0].numel() / 3)
            x_hat = ul.decode(ul.noisy_latent(z_clean), steps=dec_steps, seeds=range(RECON_N), sampler=sampler)
        psnr = _mean(psnr_ssim(recon_x, _uint8_batch(x_hat))[0])
        wall0 = time.perf_counter()
        fake, _ = generate(base, ul, range(samples), base_steps=base_steps, decoder_steps=dec_steps, sampler=sampler,
                           batch_size=64)  # fmt: skip
        fake_t = torch.from_numpy(fake).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
        result["contenders"]["ul"] = {
            "parameters": sizes["ul_stage1"] + sizes["ul_stage2"],
            "stage1": s1, "stage2": {**s2, "latents_encoded": latent_count},
            "reconstruction_psnr_db": psnr, "rate_bits_per_pixel": rate_bits,
            "network_evals_per_sample": base_steps + dec_steps,
            "sampling_wall_seconds": time.perf_counter() - wall0,
            "fd_shapes": _fd(real, fake_t),
        }  # fmt: skip
        log(f"ul: FD-shapes {result['contenders']['ul']['fd_shapes']['value']:.1f}")
        _save_partial(partial, result)

    if "pixel" in contenders:
        torch.manual_seed(0)
        target = sizes["ul_stage1"] + sizes["ul_stage2"]
        width, count = _matched(lambda w: PixelDiffusion(cfg, w), target, range(8, 513, 4))
        pixel = PixelDiffusion(cfg, width)
        tp = trainer(cfg, _ModuleObjective(pixel, stream(), device), "pixel")
        sp = _train_for(tp, budget, log, "pixel")
        tp.ema.copy_to(pixel)
        pixel.eval()
        wall0 = time.perf_counter()
        fake_t = torch.cat([_uint8_batch(pixel.sample(range(s, min(samples, s + 64)), base_steps, sampler))
                            for s in range(0, samples, 64)])  # fmt: skip
        result["contenders"]["pixel"] = {
            "parameters": count, "width": width, "train": sp, "network_evals_per_sample": base_steps,
            "sampling_wall_seconds": time.perf_counter() - wall0, "fd_shapes": _fd(real, fake_t),
        }  # fmt: skip
        log(f"pixel: FD-shapes {result['contenders']['pixel']['fd_shapes']['value']:.1f}")
        _save_partial(partial, result)

    if "ldm" in contenders:
        torch.manual_seed(0)
        width, count = _matched(lambda w: KLAutoencoder(cfg, w), sizes["ul_stage1"], range(8, 513, 4))
        ae = KLAutoencoder(cfg, width)
        ta = trainer(cfg, _ModuleObjective(ae, stream(), device), "ldm-ae")
        sa = _train_for(ta, budget * stage1_share, log, "ldm autoencoder")
        ta.ema.copy_to(ae)
        ae.eval()
        cpu0 = time.process_time()
        latents, labels = _latents(lambda x: ae.vae.encode(x).latent_dist.sample(), source, latent_count)
        scale = 1.0 / float(latents.std())
        cfg_ldm = validate({**cfg2.to_dict(), "loss": {**cfg2.to_dict()["loss"],
                                                       "latent_logsnr_max": LDM_LATENT_LOGSNR_MAX}})  # fmt: skip
        base = LatentBase(cfg_ldm)
        tb = trainer(cfg_ldm, Stage2Objective(base, latents * scale, labels, cfg_ldm, device), "ldm-base")
        sb = _train_for(tb, budget * (1 - stage1_share) - (time.process_time() - cpu0), log, "ldm base")
        tb.ema.copy_to(base)
        base.eval()
        with torch.no_grad():
            x_hat = ae.vae.decode(ae.vae.encode(recon_x).latent_dist.mode()).sample
        psnr = _mean(psnr_ssim(recon_x, _uint8_batch(x_hat))[0])
        wall0 = time.perf_counter()
        chunks = []
        with torch.no_grad():
            for s in range(0, samples, 64):
                seeds = list(range(s, min(samples, s + 64)))
                z = base.sample(len(seeds), steps=base_steps, seeds=seeds, sampler=sampler)
                chunks.append(_uint8_batch(ae.vae.decode(z / scale).sample))
        result["contenders"]["ldm"] = {
            "parameters": count + sizes["ul_stage2"], "autoencoder_width": width,
            "autoencoder": sa, "stage2": {**sb, "latents_encoded": latent_count, "latent_scale": scale},
            "reconstruction_psnr_db": psnr, "network_evals_per_sample": base_steps + 1,
            "sampling_wall_seconds": time.perf_counter() - wall0, "fd_shapes": _fd(real, torch.cat(chunks)),
        }  # fmt: skip
        log(f"ldm: FD-shapes {result['contenders']['ldm']['fd_shapes']['value']:.1f}")
        _save_partial(partial, result)

    result["load_average_end"] = list(os.getloadavg())
    return result


def describe(result: dict[str, Any]) -> list[str]:
    """The markdown table docs/benchmarks.md shows, from one result."""
    q = result.get("quality", result)
    rows = [
        f"{q['preset']}, {q['cpu_minutes_per_contender']:g} CPU-minutes per contender ({q['threads']} thread(s)), "
        f"{q['samples']} samples, sampler {q['sampler']}; {q['machine']}; started {q['started']}, load average "
        f"{q['load_average_start'][0]:.1f} → {q['load_average_end'][0]:.1f}",
        "",
        "| contender | parameters | training steps | wall clock (min) | recon PSNR (dB) | bits/pixel | "
        "evals/sample | FD-shapes | KID |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, c in q["contenders"].items():
        parts = [c[k] for k in ("stage1", "stage2", "train", "autoencoder") if k in c]
        steps = " + ".join(str(p["steps"]) for p in parts)
        wall = sum(p["wall_seconds"] for p in parts) / 60
        psnr, bits = c.get("reconstruction_psnr_db"), c.get("rate_bits_per_pixel")
        rows.append(
            f"| {name} | {c['parameters']:,} | {steps} | {wall:.1f} | {'–' if psnr is None else f'{psnr:.2f}'} | "
            f"{'–' if bits is None else f'{bits:.3f}'} | {c['network_evals_per_sample']} | "
            f"{c['fd_shapes']['value']:.1f} | {c['fd_shapes']['kid']:.3g} |"
        )
    return rows
