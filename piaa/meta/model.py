"""The regression head meta-learned over image features.

Features are standardised with training-image statistics (buffers, not meta-parameters), an MLP maps
them to one number and a sigmoid puts it on the score range normalised to [0, 1], as in the
BLG-PIAA head. No BatchNorm: inner loops must stay purely functional.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from piaa.nn import FeatureStandardizer, mlp


class ScoreHead(nn.Module):
    stacked_forward_via_rule = True  # its weights reach `stacked_forward` only through `rule` (core.Layout)

    def __init__(self, in_dim: int, hidden: Sequence[int], dropout: float = 0.0):
        super().__init__()
        self.standardize = FeatureStandardizer(in_dim)
        self.body = mlp(in_dim, hidden, 1, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.body(self.standardize(x)).squeeze(-1))

    def stacked_forward(self, params, x: torch.Tensor, prefix: str, rule) -> torch.Tensor:
        """The same forward over a leading task axis (see `piaa.meta.core.stacked_forward`)."""
        z = (x - params[f"{prefix}standardize.mean"]) / params[f"{prefix}standardize.scale"]
        return torch.sigmoid(rule(self.body, f"{prefix}body.")(params, z).squeeze(-1))


def normalise(y, score_range: tuple[float, float]):
    lo, hi = score_range
    return (y - lo) / (hi - lo)


def denormalise(y, score_range: tuple[float, float]):
    lo, hi = score_range
    return lo + (hi - lo) * y
