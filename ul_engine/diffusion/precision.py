"""The precision the networks run in while sampling (decoding, generating, the prior's samples).

On a CPU with AMX tiles, bf16 autocast decodes 1.6–2.4× faster than fp32 at the same pictures (the demo's
decoder: 58 dB between the two decodes of the same latents; docs/benchmarks.md § Sampling precision on the
CPU). Without AMX (AVX2-only CPUs) bf16 is emulated and slow, so it stays fp32 there; on CUDA the nets keep
their own path. Only the networks' matmuls and convolutions change: the sampler's arithmetic stays fp32
(samplers.sample casts each prediction back), and training never goes through here.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator

import torch

from ul_engine.core.errors import ULError

PRECISION_ENV = "UL_SAMPLING_PRECISION"
CHOICES = ("auto", "fp32", "bf16")


@functools.cache
def cpu_has_amx() -> bool:
    """True where this CPU has AMX tiles (oneDNN's fast bf16 path); False where torch cannot say."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(probe is not None and probe())


def sampling_precision(device: torch.device | str = "cpu") -> str:
    """"bf16" or "fp32": $UL_SAMPLING_PRECISION (auto, fp32, bf16; default auto = bf16 on an AMX CPU)."""
    choice = os.environ.get(PRECISION_ENV, "").strip().lower() or "auto"
    if choice not in CHOICES:
        raise ULError(f"{PRECISION_ENV} must be one of {', '.join(CHOICES)}, not {choice!r}")
    if torch.device(device).type != "cpu":
        return "fp32"
    return "bf16" if choice == "bf16" or (choice == "auto" and cpu_has_amx()) else "fp32"


@contextlib.contextmanager
def sampling_autocast(device: torch.device | str) -> Iterator[None]:
    """Run the enclosed network calls at the sampling precision of `device`."""
    if sampling_precision(device) == "bf16":
        with torch.autocast("cpu", dtype=torch.bfloat16):
            yield
    else:
        yield
