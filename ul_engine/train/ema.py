"""Exponential moving average of a module's parameters, updated only on optimizer steps."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class EMA:
    """Shadow copies of every floating-point parameter and buffer, in fp32."""

    def __init__(self, module: nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow: dict[str, Tensor] = {
            name: t.detach().float().clone() for name, t in module.state_dict().items() if t.is_floating_point()
        }

    def decay_at(self, updates: int) -> float:
        """Warm-up: min(decay, (1 + n)/(10 + n)), so a short run's EMA is not mostly its initial weights."""
        return min(self.decay, (1.0 + updates) / (10.0 + updates))

    @torch.no_grad()
    def update(self, module: nn.Module, updates: int) -> None:
        """`updates`: optimizer steps taken before this one (part of the checkpoint, so resume is exact)."""
        decay = self.decay_at(updates)
        for name, t in module.state_dict().items():
            if name in self.shadow:
                self.shadow[name].lerp_(t.detach().float(), 1.0 - decay)

    def state_dict(self) -> dict[str, Tensor]:
        return self.shadow

    def load_state_dict(self, tensors: dict[str, Tensor]) -> None:
        missing = set(self.shadow) - set(tensors)
        if missing:
            raise KeyError(f"EMA state lacks {sorted(missing)[:3]}…")
        for name in self.shadow:
            self.shadow[name] = tensors[name].float().clone().to(self.shadow[name].device)

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> None:
        """Load the averaged weights into `module` (e.g. an inference copy)."""
        state = module.state_dict()
        for name, t in self.shadow.items():
            state[name].copy_(t.to(state[name].dtype))
