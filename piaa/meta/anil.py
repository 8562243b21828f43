"""ANIL (Raghu et al., ICLR 2020, "Rapid Learning or Feature Reuse?"): MAML whose inner loop adapts only
the last layer; the body is shared by all tasks and learned by the outer loop alone."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from piaa.meta.maml import MAML


def last_layer(module: torch.nn.Module) -> tuple[str, ...]:
    """Names of the parameters of the last submodule (in registration order) that owns parameters."""
    owners = [(name, sub) for name, sub in module.named_modules() if any(True for _ in sub.parameters(recurse=False))]
    if not owners:
        raise ValueError(f"{type(module).__name__} has no parameters")
    name, sub = owners[-1]
    return tuple(f"{name}.{k}" if name else k for k, _ in sub.named_parameters(recurse=False))


@dataclass
class ANIL(MAML):
    def __post_init__(self) -> None:
        super().__post_init__()
        if self.adapt is None:
            self.adapt = last_layer(self.module)
