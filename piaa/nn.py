"""Small networks over image feature vectors, shared by the methods."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn


class FeatureStandardizer(nn.Module):
    """Standardises features with statistics of the training images, kept as buffers in the weights."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))

    def fit(self, x: np.ndarray) -> "FeatureStandardizer":
        x64 = np.asarray(x, dtype=np.float64)
        self.mean.copy_(torch.from_numpy(x64.mean(axis=0)).float())
        self.scale.copy_(torch.from_numpy(np.maximum(x64.std(axis=0), 1e-6)).float())
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.scale


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int = 1, dropout: float = 0.0) -> nn.Sequential:
    """Linear → ReLU (→ Dropout) blocks, then a linear output. No BatchNorm: inner loops stay functional."""
    layers: list[nn.Module] = []
    last = in_dim
    for width in hidden:
        layers += [nn.Linear(last, width), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        last = width
    layers.append(nn.Linear(last, out_dim))
    return nn.Sequential(*layers)


class FeatureRegressor(nn.Module):
    """Standardise features, then an MLP to one score per row."""

    def __init__(self, in_dim: int, hidden: Sequence[int], dropout: float = 0.0):
        super().__init__()
        self.standardize = FeatureStandardizer(in_dim)
        self.body = mlp(in_dim, hidden, 1, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.standardize(x)).squeeze(-1)


def as_tensor(x: np.ndarray) -> torch.Tensor:
    """A float32 tensor view of `x`; read-only arrays (memory-mapped features) are copied first."""
    array = np.ascontiguousarray(x, dtype=np.float32)
    if not array.flags.writeable:
        array = array.copy()
    return torch.from_numpy(array)


@torch.no_grad()
def predict_batched(model: nn.Module, x: np.ndarray, batch: int = 65536) -> np.ndarray:
    was_training = model.training
    model.eval()
    out = [model(as_tensor(np.asarray(x[i : i + batch]))).double().numpy() for i in range(0, len(x), batch)]
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros(0)
