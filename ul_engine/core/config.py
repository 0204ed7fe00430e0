"""Typed, validated run configuration: presets (TOML) + `key=value` overrides → one resolved config.

Torch-free so the GUI can validate a form with the engine's own messages. Every field carries a
one-sentence description (used for tooltips and the generated Advanced form) and its allowed range.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import ErrorDetails

from ul_engine.core import RESOURCES_DIR
from ul_engine.core.errors import ConfigError
from ul_engine.core.samplers import SamplerName

PRESETS_DIR = RESOURCES_DIR / "presets"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    kind: Literal["shapes", "image-folder", "bouncing", "video-folder", "latents"] = Field(
        "shapes",
        description="Where training images (shapes, image-folder) or clips (bouncing, video-folder) come from; "
        "latents: stage 2 from a folder written by `ul encode`",
    )
    resolution: int = Field(32, ge=8, le=4096, description="Side of the square training images in pixels.")
    path: str = Field(
        "", description="Folder of images or videos (the folder kinds), searched recursively; or of encoded latents."
    )
    frames: int = Field(1, ge=1, le=1024, description="Frames per training clip (1: images; video kinds need ≥ 2).")
    frame_stride: int = Field(
        1, ge=1, le=64, description="video-folder: take every n-th frame of a file when cutting clips."
    )
    fps: float = Field(8.0, gt=0.0, le=240.0, description="Frame rate written to video files of this run's clips.")
    crop: Literal["center", "random"] = Field("center", description="How images are cropped to a square.")
    class_subfolders: bool = Field(False, description="Use each image's top-level subfolder as its class label.")
    num_classes: int = Field(0, ge=0, le=100000, description="Number of class labels (0: unconditional).")
    seed: int = Field(0, ge=0, description="Seed of the data stream (procedural data and shuffling).")


class EncoderConfig(_Section):
    patch: int = Field(1, ge=1, le=8, description="Pixel patching (space-to-depth) before the first conv.")
    channels: list[int] = Field(
        [32, 64, 96], min_length=1, description="Channels per stage; each later stage halves the resolution."
    )
    blocks: int = Field(1, ge=1, le=8, description="Residual blocks per stage.")
    final_blocks: int = Field(2, ge=1, le=8, description="Residual blocks in the last stage.")


class PriorConfig(_Section):
    width: int = Field(128, ge=16, le=8192, description="Transformer width of the latent prior.")
    depth: int = Field(4, ge=1, le=64, description="Transformer blocks of the latent prior.")
    heads: int = Field(4, ge=1, le=64, description="Attention heads of the latent prior.")


class DecoderConfig(_Section):
    patch: int = Field(1, ge=1, le=8, description="Pixel patching before the decoder's conv stages.")
    channels: list[int] = Field(
        [32, 64],
        min_length=1,
        description="Conv channels per level; each level halves the resolution, the transformer runs below the last.",
    )
    blocks: int = Field(1, ge=1, le=8, description="Residual blocks per conv level (down and up).")
    width: int = Field(128, ge=16, le=8192, description="Width of the transformer at the latent's resolution.")
    depth: int = Field(2, ge=1, le=64, description="Transformer blocks at the latent's resolution.")
    heads: int = Field(4, ge=1, le=64, description="Attention heads of the decoder transformer.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout in the decoder (the paper uses 0.1).")


class BaseConfig(_Section):
    widths: list[int] = Field(
        [192, 256], min_length=1, max_length=2, description="Widths of the two transformer levels."
    )
    depths: list[int] = Field([2, 4], min_length=1, max_length=2, description="Blocks per transformer level.")
    heads: int = Field(4, ge=1, le=64, description="Attention heads of the base model.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout in the base model (the paper uses 0.1).")
    label_dropout: float = Field(
        0.1, ge=0.0, le=1.0, description="Probability of dropping the class label (for guidance)."
    )
    context_frames: int = Field(
        0,
        ge=0,
        le=256,
        description="Video: latent frames given clean (with a mask) in conditional training examples (0: off).",
    )
    context_prob: float = Field(
        0.5, ge=0.0, le=1.0, description="Video: fraction of training examples that are conditional on context."
    )

    @model_validator(mode="after")
    def _same_levels(self) -> BaseConfig:
        if len(self.widths) != len(self.depths):
            raise ValueError("base.widths and base.depths must have the same length")
        return self


class ModelConfig(_Section):
    latent_channels: int = Field(4, ge=1, le=1024, description="Channels of the latent z.")
    time_axis: bool = Field(
        False, description="Video model: 3D convolutions and space-time tokens over (T, H, W) clips."
    )
    time_downsample: int = Field(
        1, ge=1, le=64, description="Video: frames per latent frame (a power of 2; the paper's Kinetics model: 4)."
    )
    encoder: EncoderConfig = EncoderConfig()
    prior: PriorConfig = PriorConfig()
    decoder: DecoderConfig = DecoderConfig()
    base: BaseConfig = BaseConfig()

    def downsample(self) -> int:
        """Pixels per latent position along one side."""
        return self.encoder.patch * 2 ** (len(self.encoder.channels) - 1)

    def time_halvings(self) -> int:
        """How many of the nets' stride-2 steps also halve time (0 for image models)."""
        return self.time_downsample.bit_length() - 1 if self.time_axis else 0


class LossConfig(_Section):
    latent_logsnr_max: float = Field(
        5.0, ge=0.0, le=20.0, description="λ_z(0): log-SNR of the fixed latent noise (the paper: 5)."
    )
    latent_logsnr_min: float = Field(
        -10.0, ge=-30.0, le=-5.0, description="λ_z(1): noisiest latent log-SNR of the prior and base model."
    )
    image_logsnr_min: float = Field(
        -10.0, ge=-30.0, le=0.0, description="λ_x(1): noisiest log-SNR of the pixel decoder."
    )
    image_logsnr_max: float = Field(
        10.0, ge=0.0, le=30.0, description="λ_x(0): least noisy log-SNR of the pixel decoder."
    )
    image_shift_ref: int = Field(
        0, ge=0, le=4096, description="Reference side d_ref for the shifted cosine (0: no shift)."
    )
    loss_factor: float = Field(
        1.5, gt=0.0, le=10.0, description="c_lf: up-weights the decoder term; higher means more latent bits."
    )
    sigmoid_bias: float = Field(
        0.0,
        ge=-10.0,
        le=10.0,
        description="b in the decoder weight c_lf·sigmoid(b − λ); higher means more latent bits.",
    )
    base_sigmoid_bias: float = Field(
        0.0, ge=-10.0, le=10.0, description="b_base in the stage-2 weight sigmoid(b_base − λ)."
    )
    base_weighting: Literal["sigmoid", "elbo"] = Field(
        "sigmoid",
        description="Stage 2's loss: sigmoid-weighted (samples well) or the unweighted ELBO, a rate bound to "
        "measure the stage-1 prior's slack against (not for sampling).",
    )
    sigmoid_bias_resolution: int = Field(
        0,
        ge=0,
        le=4096,
        description="Image side at which loss.sigmoid_bias is stated; the decoder uses b + 2·log(this / "
        "data.resolution), the same weighting in resolution-equivalent log-SNR (0: b as given; 512: the paper's b).",
    )
    rate_warmup_steps: int = Field(
        0,
        ge=0,
        description="Stage 1: the rate's weight in the optimised loss rises linearly from 0 to 1 over this many steps "
        "(0: off, as in the paper); the logged rate stays unweighted.",
    )


class AblationConfig(_Section):
    """The paper's ablations (Tables 5 and 6). All off by default: the defaults are UL as published."""

    prior: Literal["diffusion", "normal"] = Field(
        "diffusion",
        description="Latent prior: the diffusion prior (UL) or N(0, I) on the noisy latent z0 (Table 5).",
    )
    decoder_loss: Literal["diffusion", "mse"] = Field(
        "diffusion",
        description="Decoder: the sigmoid-weighted diffusion decoder (UL) or a deterministic MSE decoder (Table 5).",
    )
    prior_stop_gradient: bool = Field(
        False,
        description="Table 6 A: detach the prior's input; it only measures the rate, an N(0, I) KL regularises.",
    )
    normal_kl_weight: float = Field(
        1.0,
        ge=0.0,
        le=10.0,
        description="Weight of the N(0, I) KL on z0 where it regularises (normal prior, stop-gradient); < 1 discounts.",
    )
    learned_variance: bool = Field(
        False,
        description="Table 6 D: the encoder also outputs a log-variance; the rate gains −½·log(σ_z²·e^λ_z(0) + 1).",
    )

    @model_validator(mode="after")
    def _meaningful(self) -> AblationConfig:
        if self.prior == "normal" and self.prior_stop_gradient:
            raise ValueError(
                "ablation.prior_stop_gradient detaches the diffusion prior's input; with ablation.prior = normal "
                "there is no diffusion prior in the loss"
            )
        return self

    def is_default(self) -> bool:
        return self == AblationConfig()


class OptimConfig(_Section):
    lr: float = Field(5e-4, gt=0.0, le=1.0, description="Peak AdamW learning rate.")
    beta1: float = Field(0.9, ge=0.0, lt=1.0, description="AdamW β1.")
    beta2: float = Field(0.99, ge=0.0, lt=1.0, description="AdamW β2.")
    weight_decay: float = Field(0.0, ge=0.0, le=1.0, description="AdamW decoupled weight decay.")
    warmup_steps: int = Field(100, ge=0, description="Linear learning-rate warm-up in optimizer steps.")
    cooldown: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Fraction of train.steps at the end over which the learning rate falls linearly to 0 "
        "(0: constant after warm-up, as in the paper). Needs a step budget.",
    )
    grad_clip: float = Field(1.0, ge=0.0, description="Clip the global gradient norm to this (0: off).")
    batch_size: int = Field(32, ge=1, le=65536, description="Examples per optimizer step (all processes together).")
    grad_accum: int = Field(1, ge=1, le=1024, description="Micro-batches accumulated per optimizer step.")
    max_bad_steps: int = Field(20, ge=1, description="Consecutive non-finite steps after which the run stops.")
    prior_lr_scale: float = Field(
        1.0,
        gt=0.0,
        le=100.0,
        description="Stage 1: the latent prior's learning rate as a multiple of optim.lr (1: one rate, as the paper).",
    )
    prior_updates_per_step: int = Field(
        1,
        ge=1,
        le=64,
        description="Stage 1: prior updates per step; each one after the first trains the prior alone on the step's "
        "latents, frozen (1: off, as in the paper).",
    )


class EMAConfig(_Section):
    decay: float = Field(0.999, ge=0.0, lt=1.0, description="EMA decay per optimizer step.")


class TrainConfig(_Section):
    steps: int = Field(2000, ge=0, description="Optimizer steps to train (0: until the time limit).")
    minutes: float = Field(0.0, ge=0.0, description="Wall-clock minutes to train (0: until the step count).")
    seed: int = Field(0, ge=0, description="Seed of model initialisation and of every step's noise.")
    checkpoint_every: int = Field(500, ge=1, description="Optimizer steps between full training-state checkpoints.")
    keep_checkpoints: int = Field(3, ge=1, le=1000, description="How many full checkpoints to keep on disk.")
    log_every: int = Field(1, ge=1, description="Optimizer steps between logged metrics.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where to train; auto picks CUDA when present.")
    num_processes: int = Field(
        1, ge=0, le=1024, description="Processes (one per GPU) for data-parallel training; 0: every GPU."
    )
    threads: int = Field(0, ge=0, le=256, description="CPU threads for torch (0: torch's default).")
    latent_cache_size: int = Field(
        4096, ge=1, le=10_000_000, description="Stage 2: how many images are encoded once into the latent cache."
    )
    compile: bool = Field(False, description="torch.compile the transformers (pays off on long runs).")
    log_to: list[Literal["tensorboard"]] = Field(
        [],
        description='Also write the metrics live elsewhere: ["tensorboard"] → runs/<id>/tensorboard (needs the extra).',
    )
    init_from: str = Field(
        "",
        description="Stage 1: start from an inference bundle folder's weights (fine-tuning); 'demo': the shipped one.",
    )


class SamplingConfig(_Section):
    sampler: SamplerName = Field(
        "ancestral", description="Sampler for the base model and decoder."
    )
    base_steps: int = Field(64, ge=1, le=4096, description="Sampling steps of the base model (noise → z0).")
    decoder_steps: int = Field(64, ge=1, le=4096, description="Sampling steps of the decoder (noise → image).")
    guidance: float = Field(1.0, ge=0.0, le=50.0, description="Classifier-free guidance scale (1: none).")


class RunConfig(_Section):
    """Everything that defines a run. Stored, resolved, with each run."""

    preset: str = Field("custom", description="Name of the preset this config started from.")
    description: str = Field("", description="One line about the preset.")
    stage: Literal[1, 2] = Field(
        1, description="1: encoder, prior and decoder jointly; 2: the base model on frozen latents."
    )
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    ablation: AblationConfig = AblationConfig()
    optim: OptimConfig = OptimConfig()
    ema: EMAConfig = EMAConfig()
    train: TrainConfig = TrainConfig()
    sampling: SamplingConfig = SamplingConfig()

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        down = self.model.downsample()
        if self.data.resolution % down:
            raise ValueError(
                f"data.resolution ({self.data.resolution}) must be a multiple of the encoder's downsampling ({down})"
            )
        dec_down = self.model.decoder.patch * 2 ** len(self.model.decoder.channels)
        if dec_down != down:
            raise ValueError(f"model.decoder downsamples by {dec_down} but model.encoder by {down}; they must match")
        if self.optim.batch_size % self.optim.grad_accum:
            raise ValueError("optim.batch_size must be divisible by optim.grad_accum")
        if self.optim.cooldown and not self.train.steps:
            raise ValueError("optim.cooldown needs train.steps > 0: the cooldown ends at the last step")
        if self.data.kind in ("image-folder", "video-folder", "latents") and not self.data.path:
            raise ValueError(f"data.path is required when data.kind is {self.data.kind}")
        if self.data.kind == "latents" and self.stage != 2:
            raise ValueError(
                "data.kind latents (a folder written by `ul encode`) feeds stage 2 only; stage 1 needs images"
            )
        self._video_consistent()
        for name, width, heads in (
            ("model.prior", self.model.prior.width, self.model.prior.heads),
            ("model.decoder", self.model.decoder.width, self.model.decoder.heads),
        ):
            if width % heads:
                raise ValueError(f"{name}.width ({width}) must be divisible by {name}.heads ({heads})")
        if any(w % self.model.base.heads for w in self.model.base.widths):
            raise ValueError("model.base.widths must be divisible by model.base.heads")
        return self

    def _video_consistent(self) -> None:
        """Clip length, temporal downsampling and context fit together; image runs keep frames = 1."""
        m, d = self.model, self.data
        video = m.time_axis if d.kind == "latents" else d.kind in ("bouncing", "video-folder")  # latents: either
        if video != m.time_axis:
            raise ValueError(
                f"data.kind {d.kind} needs model.time_axis = {str(video).lower()} (video data ↔ a video model)"
            )
        if not video:
            if d.frames != 1:
                raise ValueError(f"data.frames is {d.frames} but data.kind {d.kind} is images; use a video kind")
            if m.base.context_frames:
                raise ValueError("model.base.context_frames needs a video model")
            return
        tf = m.time_downsample
        if tf & (tf - 1):
            raise ValueError(f"model.time_downsample ({tf}) must be a power of 2")
        halvings = m.time_halvings()
        if halvings > len(m.encoder.channels) - 1 or halvings > len(m.decoder.channels):
            raise ValueError(
                f"model.time_downsample {tf} needs {halvings} stride-2 stages; the encoder has "
                f"{len(m.encoder.channels) - 1} and the decoder {len(m.decoder.channels)}"
            )
        if d.frames < 2 or d.frames % tf:
            raise ValueError(f"data.frames ({d.frames}) must be ≥ 2 and a multiple of model.time_downsample ({tf})")
        if d.num_classes and d.kind == "video-folder":
            raise ValueError("video-folder data has no labels; set data.num_classes = 0")
        if m.base.context_frames >= d.frames // tf:
            raise ValueError(
                f"model.base.context_frames ({m.base.context_frames}) must be below the latent frames "
                f"({d.frames // tf}); some frames must be left to generate"
            )

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def config_hash(self) -> str:
        """Stable hash of the resolved config: identifies what a run trained."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def training_hash(self) -> str:
        """Hash of what training depends on: the resolved config without its description, so a preset whose
        description was reworded does not make finished runs count as different ones (`ul study` reuses runs)."""
        blob = json.dumps({k: v for k, v in self.to_dict().items() if k != "description"}, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def latent_shape(self) -> tuple[int, ...]:
        """(C, h, w) for images; (C, T', h, w) for video models."""
        side = self.data.resolution // self.model.downsample()
        if self.model.time_axis:
            return (self.model.latent_channels, self.data.frames // self.model.time_downsample, side, side)
        return (self.model.latent_channels, side, side)

    @property
    def is_video(self) -> bool:
        return self.model.time_axis


# ----------------------------------------------------------------------------------------------
# Presets, overrides and error messages


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.toml"))


def load_preset(name: str) -> dict[str, Any]:
    path = PRESETS_DIR / f"{name}.toml"
    if not path.is_file():
        raise ConfigError(f"unknown preset '{name}'; available: {', '.join(list_presets())}")
    with path.open("rb") as f:
        raw = tomllib.load(f)
    raw.setdefault("preset", name)
    return raw


def parse_value(text: str) -> Any:
    """`--set` values: TOML scalars/arrays (1, 2.5, true, "x", [1, 2]); bare words are strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(raw: dict[str, Any], overrides: list[str] | dict[str, Any]) -> dict[str, Any]:
    """Apply dotted `key=value` overrides to a nested dict; unknown sections are caught by validation."""
    items = overrides.items() if isinstance(overrides, dict) else (_split(o) for o in overrides)
    out = json.loads(json.dumps(raw))
    for key, value in items:
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{key}: '{part}' is a value, not a section")
            node = child
        node[parts[-1]] = parse_value(value) if isinstance(value, str) and not isinstance(overrides, dict) else value
    return out


def _split(item: str) -> tuple[str, str]:
    if "=" not in item:
        raise ConfigError(f"--set expects key=value, got '{item}'")
    key, value = item.split("=", 1)
    return key.strip(), value.strip()


def validate(raw: dict[str, Any]) -> RunConfig:
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None


def field_errors(raw: dict[str, Any]) -> dict[str, str]:
    """Field path → message, for inline form validation. Empty when the config is valid."""
    try:
        RunConfig.model_validate(raw)
    except ValidationError as exc:
        return {(".".join(str(p) for p in e["loc"]) or "config"): _message(e) for e in exc.errors()}
    return {}


def format_validation_error(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "config"
        parts.append(f"{loc}: {_message(e)}")
    return "invalid config: " + "; ".join(parts)


def _message(e: ErrorDetails) -> str:
    ctx = e.get("ctx") or {}
    kind = e["type"]
    value = e.get("input")
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return f"{value!r} is out of range ({_range_text(e['loc'])})"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "literal_error":
        return f"{value!r} is not one of {ctx.get('expected', '')}"
    if kind == "value_error":
        return str(ctx.get("error", e["msg"]))
    return f"{e['msg']} (got {value!r})"


def _range_text(loc: tuple[Any, ...]) -> str:
    """The allowed range of a numeric field, read off its schema."""
    model: Any = RunConfig
    info = None
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return "see the schema"
        info = fields[part]
        model = info.annotation
    lo = hi = None
    lo_open = hi_open = False
    for m in info.metadata if info else []:
        for attr, is_lo, is_open in (
            ("ge", True, False),
            ("gt", True, True),
            ("le", False, False),
            ("lt", False, True),
        ):
            v = getattr(m, attr, None)
            if v is not None:
                if is_lo:
                    lo, lo_open = v, is_open
                else:
                    hi, hi_open = v, is_open
    left = "(" if lo_open else "["
    right = ")" if hi_open else "]"
    return f"allowed {left}{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}{right}"


def resolve(preset: str, overrides: list[str] | None = None, stage: int | None = None) -> RunConfig:
    """Preset + overrides (+ stage) → validated config. Raises ConfigError naming the field."""
    raw = load_preset(preset)
    if overrides:
        raw = apply_overrides(raw, overrides)
    if stage is not None:
        raw["stage"] = stage
    return validate(raw)


def schema_fields() -> list[dict[str, Any]]:
    """Flat list of every leaf field (path, type, default, description, range) for generated forms."""
    out: list[dict[str, Any]] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, info in model.model_fields.items():
            ann = info.annotation
            path = f"{prefix}{name}"
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, path + ".")
                continue
            out.append(
                {
                    "path": path,
                    "default": info.default if not isinstance(info.default, BaseModel) else None,
                    "description": info.description or "",
                    "annotation": str(ann),
                    "range": _range_text(tuple(path.split("."))),
                }
            )

    walk(RunConfig, "")
    return out
