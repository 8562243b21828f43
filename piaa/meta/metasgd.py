"""Meta-SGD (Li et al., 2017): MAML whose inner step sizes are meta-learned, one per parameter entry.

The step sizes are a second group of meta-parameters (``lrs``), initialised to the scalar inner
step size and updated by the outer optimiser like the weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from piaa.meta.core import Meta, Params
from piaa.meta.inner import InnerSGD
from piaa.meta.maml import MAML


@dataclass
class MetaSGD(MAML):
    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.inner, InnerSGD):
            raise ValueError("Meta-SGD learns the step sizes of plain SGD; use InnerSGD")

    def init_meta(self, params: Params) -> Meta:
        return {"params": dict(params), "lrs": {k: torch.full_like(v, self.inner.lr) for k, v in params.items()}}
