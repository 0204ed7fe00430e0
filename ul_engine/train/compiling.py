"""`torch.compile` where it pays: the transformer parts (the latent prior, the decoder's middle blocks, the
base model); the convolutional encoder and decoder levels stay eager.

Why only those: on these CPUs inductor fuses the transformers' small element-wise ops (adaLN modulation,
GELU, residual gates) and gains about 1.5×, while the convolutions are already single oneDNN calls and
gain nothing (docs/benchmarks.md, "`ul bench --compile`", has the numbers). Compiling in place
(`nn.Module.compile`) keeps every module object and its state-dict keys as they were, with no `_orig_mod.`
prefix, so checkpoints, the EMA, exports and resume are identical with compile on or off.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ul_engine.model import LatentBase, UnifiedLatents

DEFAULT_OPTIONS: dict[str, Any] = {}
"""torch.compile options used unless a call gives its own; a test sets backend="eager" to check the wiring
(dynamo-wrapped training, checkpoints, resume) without inductor's minutes of code generation."""


def transformer_parts(module: nn.Module) -> dict[str, nn.Module]:
    """The submodules worth compiling, by their qualified name (empty for modules without transformers)."""
    if isinstance(module, UnifiedLatents):
        parts = {"prior": module.prior}
        parts.update({f"decoder.mid_blocks.{i}": b for i, b in enumerate(module.decoder.mid_blocks)})
        return parts
    if isinstance(module, LatentBase):
        return {"net": module.net}
    return {}


def compile_transformers(module: nn.Module, **options: object) -> list[str]:
    """Compile the transformer parts of `module` in place; returns their names.

    `options` go to torch.compile (e.g. mode="max-autotune"); compilation itself happens on the first call.
    """
    parts = transformer_parts(module)
    for part in parts.values():
        part.compile(**{**DEFAULT_OPTIONS, **options})
    return list(parts)


def is_compiled(part: nn.Module) -> bool:
    """Whether `part` was compiled in place (its calls go through torch.compile)."""
    return getattr(part, "_compiled_call_impl", None) is not None
