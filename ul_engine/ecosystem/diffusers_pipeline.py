"""A run's nets as diffusers models and a `ULPipeline`, so `ULPipeline.from_pretrained(DIR)` works in any
Python session with diffusers and this package installed, offline.

Each net is a `ModelMixin`/`ConfigMixin` whose only config is the run's resolved UL config (JSON), so
`from_pretrained` rebuilds the exact architecture and loads `diffusion_pytorch_model.safetensors`; nothing
is downloaded and nothing is unpickled. The pipeline reuses `UnifiedLatents`/`LatentBase` around those
nets, so encoding, the z0 noise, decoding and sampling are the engine's own code:

    z0 = pipe.encode(x, seeds=[s])                            # = ul reconstruct --seed s: ε from seed s
    x̂ = pipe.decode(z0, steps=n, sampler="ddim", seeds=[s + 1])
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ul_engine.core.errors import ULError

try:
    from diffusers import ConfigMixin, DiffusionPipeline, ModelMixin
    from diffusers.configuration_utils import register_to_config
except ImportError as exc:  # the optional extra is missing: say how to get it
    raise ULError(
        "the diffusers export needs the diffusers package: pip install 'ul-studio[diffusers]'"
    ) from exc

from ul_engine.core.config import RunConfig
from ul_engine.core.imaging import tensor_to_uint8
from ul_engine.core.samplers import SAMPLERS
from ul_engine.data.loader import to_model_tensor
from ul_engine.inference.files import image_to_model_input
from ul_engine.inference.sample import generate
from ul_engine.model import LatentBase, UnifiedLatents, build_stage1_net
from ul_engine.nets import build_base

FORMAT = "ul-studio-diffusers/1"


class _ULNet(ModelMixin, ConfigMixin):
    """One UL net; `ul_config` (the run's resolved config) is all `from_pretrained` needs to rebuild it."""

    component = ""

    @register_to_config
    def __init__(self, ul_config: dict[str, Any], format: str = FORMAT) -> None:
        super().__init__()
        cfg = RunConfig.model_validate(ul_config)
        if self.component == "base":
            self.net = build_base(cfg.model, cfg.data.num_classes)
        else:
            self.net = build_stage1_net(cfg, self.component)

    @property
    def ul_config(self) -> RunConfig:
        return RunConfig.model_validate(self.config.ul_config)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.net(*args, **kwargs)


class ULEncoderModel(_ULNet):
    component = "encoder"


class ULPriorModel(_ULNet):
    component = "prior"


class ULDecoderModel(_ULNet):
    component = "decoder"


class ULBaseModel(_ULNet):
    component = "base"


class ULPipeline(DiffusionPipeline):
    """encode(images) → latents, decode(latents, steps, sampler) → images, sample(n) (stage-2 exports)."""

    _optional_components = ["base"]
    model_cpu_offload_seq = "encoder->decoder"

    def __init__(
        self,
        encoder: ULEncoderModel,
        prior: ULPriorModel,
        decoder: ULDecoderModel,
        base: ULBaseModel | None = None,
    ) -> None:
        super().__init__()
        self.register_modules(encoder=encoder, prior=prior, decoder=decoder, base=base)

    # -- the engine's models around the registered nets (shared, not copied) -------------------------

    @property
    def stage1(self) -> UnifiedLatents:
        cfg = RunConfig.model_validate({**self.encoder.config.ul_config, "stage": 1})
        return UnifiedLatents(cfg, nets=(self.encoder.net, self.prior.net, self.decoder.net)).eval()

    @property
    def latent_base(self) -> LatentBase:
        if self.base is None:
            raise ULError("this export has no base model (a stage-1 run); sample() needs a stage-2 export")
        return LatentBase(RunConfig.model_validate(self.base.config.ul_config), net=self.base.net).eval()

    @property
    def ul_config(self) -> RunConfig:
        return RunConfig.model_validate((self.base or self.encoder).config.ul_config)

    # -- what users call -----------------------------------------------------------------------------

    @torch.no_grad()
    def encode(self, images: Any, seeds: Sequence[int] | None = None) -> torch.Tensor:
        """Images → z_clean (B, C, h, w); with `seeds`, the paper's z0 = α0·z_clean + σ0·ε, ε from seed i.

        `images`: a float tensor (B, 3, H, W) (or clips (B, 3, T, H, W)) in [−1, 1], uint8 arrays (B, H, W, 3)
        (or clips (B, T, H, W, 3)), or a list of PIL images; sides must be multiples of the downsampling."""
        model = self.stage1
        x = _as_model_input(images).to(self.device)
        z_clean = model.encode(x)
        if seeds is None:
            return z_clean
        if len(seeds) != z_clean.shape[0]:
            raise ULError(f"{len(seeds)} seeds for {z_clean.shape[0]} images")
        noise = torch.stack(
            [torch.randn(z_clean.shape[1:], generator=torch.Generator().manual_seed(int(s))) for s in seeds]
        )
        return model.noisy_latent(z_clean, noise.to(z_clean.device))

    @torch.no_grad()
    def decode(
        self,
        latents: torch.Tensor,
        steps: int | None = None,
        sampler: str | None = None,
        seeds: Sequence[int] | None = None,
        output_type: str = "pt",
    ) -> Any:
        """z0 → images with the diffusion decoder (`steps` on the run's λ grid, `sampler` from the engine's
        registry). output_type "pt": (B, 3, H, W) in [−1, 1]; "np": uint8 (B, H, W, 3); "pil": PIL images."""
        cfg = self.ul_config
        z0 = latents.to(self.device)
        seeds = list(seeds) if seeds is not None else list(range(1, z0.shape[0] + 1))
        x = self.stage1.decode(
            z0,
            steps=steps or cfg.sampling.decoder_steps,
            seeds=seeds,
            sampler=_sampler(sampler or cfg.sampling.sampler),
        )
        return _output(x.clamp(-1, 1), output_type)

    @torch.no_grad()
    def sample(
        self,
        n: int = 1,
        steps: int | None = None,
        decoder_steps: int | None = None,
        sampler: str | None = None,
        seed: int = 0,
        class_label: int | None = None,
        guidance: float | None = None,
        output_type: str = "np",
    ) -> Any:
        """n images from the stage-2 base model (seeds seed … seed+n−1, as `ul sample`)."""
        cfg = self.ul_config
        batch, _ = generate(
            self.latent_base,
            self.stage1,
            range(seed, seed + n),
            base_steps=steps or cfg.sampling.base_steps,
            decoder_steps=decoder_steps or cfg.sampling.decoder_steps,
            sampler=_sampler(sampler or cfg.sampling.sampler),
            guidance=cfg.sampling.guidance if guidance is None else guidance,
            class_label=class_label,
        )
        if output_type == "np":
            return batch
        return _output(torch.from_numpy(batch).permute(0, 3, 1, 2).float().div(127.5).sub(1.0), output_type)

    __call__ = sample


def _sampler(name: str) -> str:
    if name not in SAMPLERS:
        raise ULError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    return name


def _as_model_input(images: Any) -> torch.Tensor:
    """Tensors in [−1, 1] pass through; uint8 images (B, H, W, 3) and PIL images are converted as
    `ul reconstruct` converts them, clips (B, T, H, W, 3) as training does."""
    if isinstance(images, torch.Tensor):
        return images.float()
    if isinstance(images, list | tuple):
        images = np.stack([np.asarray(im.convert("RGB") if hasattr(im, "convert") else im) for im in images])
    arr = np.asarray(images)
    if arr.dtype != np.uint8 or arr.ndim not in (3, 4, 5) or arr.shape[-1] != 3:
        raise ULError("images must be a float tensor in [-1, 1], uint8 arrays (B, H, W, 3) or PIL images")
    if arr.ndim == 5:
        return to_model_tensor(np.array(arr))
    return torch.cat([image_to_model_input(np.array(a), 1)[0] for a in (arr[None] if arr.ndim == 3 else arr)])


def _output(x: torch.Tensor, output_type: str) -> Any:
    if output_type == "pt":
        return x
    frames = x.transpose(1, 2).flatten(0, 1) if x.dim() == 5 else x  # clips: (B·T, 3, H, W)
    arr = tensor_to_uint8(frames)
    if x.dim() == 5:
        arr = arr.reshape(x.shape[0], x.shape[2], *arr.shape[1:])
    if output_type == "np":
        return arr
    if output_type == "pil":
        return [Image.fromarray(a) for a in arr] if x.dim() == 4 else [[Image.fromarray(f) for f in a] for a in arr]
    raise ULError(f"output_type must be pt, np or pil, not {output_type!r}")


def build_pipeline(loaded: Any) -> ULPipeline:
    """A `LoadedRun` (loading.load_run: the checkpoint's EMA weights) as a ULPipeline sharing its nets' weights."""
    stage1 = getattr(loaded.stage1, "inner", loaded.stage1)  # a tiled demo model wraps the real one
    cfg1 = stage1.cfg.to_dict()
    nets: dict[str, Any] = {}
    for name, cls in (("encoder", ULEncoderModel), ("prior", ULPriorModel), ("decoder", ULDecoderModel)):
        nets[name] = cls(ul_config=cfg1)
        nets[name].net.load_state_dict(getattr(stage1, name).state_dict())
    if loaded.base is not None:
        nets["base"] = ULBaseModel(ul_config=loaded.base.cfg.to_dict())
        nets["base"].net.load_state_dict(loaded.base.net.state_dict())
    return ULPipeline(**nets).to("cpu")


def export_diffusers(loaded: Any, out: Path) -> list[Path]:
    """`save_pretrained` of the run's pipeline into `out` (safetensors + config.json per net, model_index.json)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ULError(f"--out {out} is a file; give a folder")
    pipe = build_pipeline(loaded)
    pipe.save_pretrained(str(out), safe_serialization=True)
    return sorted(p for p in out.rglob("*") if p.is_file())
