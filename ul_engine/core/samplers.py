"""The sampler names: the one list the CLI's choices, the config's field, the app's menus and the diffusion
registry (`ul_engine.diffusion.samplers`, which implements exactly these) read."""

from __future__ import annotations

from typing import Literal, get_args

from ul_engine.core.errors import ULError

SamplerName = Literal["ancestral", "ddim", "dpmpp2m"]
SAMPLERS: tuple[str, ...] = get_args(SamplerName)


def check_sampler(name: str) -> str:
    """`name` if it is a sampler, else one line that lists the choices."""
    if name not in SAMPLERS:
        raise ULError(f"unknown sampler {name!r}; choose from {', '.join(SAMPLERS)}")
    return name
