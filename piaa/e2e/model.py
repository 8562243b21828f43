"""The end-to-end scorer: a backbone and a small head, fed the dataset's flattened pixel rows."""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
from torch import nn

from piaa.nn import mlp

BACKBONE_PREFIX = "backbone."  # parameter names under this prefix get the backbone's learning rate


class ImageScoreModel(nn.Module):
    """Pixel rows [..., 3·S·S] → images → backbone features → MLP → sigmoid score in [0, 1].

    Taking rows rather than image tensors lets every piece of piaa that moves feature rows around
    (task batches with a rater axis, the protocol, vmap over raters) carry images unchanged.
    """

    def __init__(self, backbone: nn.Module, feature_dim: int, hidden: Sequence[int], dropout: float = 0.0):
        super().__init__()
        self.backbone = backbone
        self.body = mlp(feature_dim, hidden, 1, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead, dim = x.shape[:-1], x.shape[-1]
        side = math.isqrt(dim // 3)
        images = x.reshape(-1, 3, side, side)
        score = torch.sigmoid(self.body(self.backbone(images)).squeeze(-1))
        return score.reshape(lead)


def lr_scales(names: Sequence[str], backbone_scale: float) -> dict[str, float]:
    """Per-parameter multipliers of a learning rate: `backbone_scale` for backbone weights, 1 for the
    head (BLG-PIAA: backbone 1e-4 with head 1e-3, i.e. 0.1)."""
    return {k: (backbone_scale if k.startswith(BACKBONE_PREFIX) else 1.0) for k in names}


def build_model(
    config: Any, feature_model: Callable[[], nn.Module], image_model: Callable[[nn.Module, int], nn.Module], *, initial_weights: bool = True
) -> tuple[nn.Module, list[str]]:
    """The model a method's config asks for, and its notes. `config.backbone` empty (the default):
    `feature_model()` on the dataset's features. Otherwise `image_model(backbone, feature_dim)` on the
    named trainable backbone, started from `config.backbone_weights`, or, when `initial_weights` is
    False (a run being loaded: its trained weights follow), from a plain random init. The notes say
    where the backbone's weights came from (none on the feature path or when loading)."""
    if not config.backbone:
        return feature_model(), []
    from piaa.e2e.backbones import build_backbone

    built = build_backbone(config.backbone, config.backbone_weights if initial_weights else "")
    return image_model(built.module, built.dim), [built.note] if initial_weights else []


def build_image_model(backbone: str, weights: str, hidden: Sequence[int], dropout: float) -> tuple[ImageScoreModel, str]:
    """The scorer on a named trainable backbone, and the one-line note on where its weights came from."""
    from piaa.e2e.backbones import build_backbone

    built = build_backbone(backbone, weights)
    return ImageScoreModel(built.module, built.dim, hidden, dropout), built.note


class GroupLR:
    """An inner optimiser (piaa.meta.inner's SGD/Adam) whose step size is scaled per parameter, so
    the backbone adapts at `backbone_scale` times the head's rate inside the inner loop too."""

    def __init__(self, base, names: Sequence[str], backbone_scale: float):
        self.base = base
        self.lr = base.lr
        self.lrs = {k: base.lr * s for k, s in lr_scales(names, backbone_scale).items()}

    def init(self, params):
        return self.base.init(params)

    def step(self, params, grads, state, lrs=None):
        return self.base.step(params, grads, state, self.lrs if lrs is None else lrs)


class PixelRows(nn.Module):
    """Stands where a feature regressor standardises its input: pixel rows are already normalised."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class ImageBody(nn.Module):
    """Pixel rows [n, 3·S·S] → backbone → MLP → [n, 1] (no squashing: a regressor's raw output)."""

    def __init__(self, backbone: nn.Module, feature_dim: int, hidden: Sequence[int], dropout: float = 0.0):
        super().__init__()
        self.backbone = backbone
        self.head = mlp(feature_dim, hidden, 1, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        side = math.isqrt(x.shape[-1] // 3)
        return self.head(self.backbone(x.reshape(-1, 3, side, side))).reshape(*x.shape[:-1], 1)


class ImageRegressor(nn.Module):
    """The end-to-end counterpart of `piaa.nn.FeatureRegressor` (same `standardize`/`body` layout,
    so the baselines built on the generic prior fine-tune it the same way)."""

    def __init__(self, backbone: nn.Module, feature_dim: int, hidden: Sequence[int], dropout: float = 0.0):
        super().__init__()
        self.standardize = PixelRows()
        self.body = ImageBody(backbone, feature_dim, hidden, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.standardize(x)).squeeze(-1)
