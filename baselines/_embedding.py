"""A low-dimensional view of image features, learned on training images (principal components).

kNN needs a similarity that is not dominated by the noise in hundreds of feature dimensions, and
the PAM-style residual needs a handful of "attribute" axes it can afford to fit from ten ratings.
Both use the leading principal components of the standardised features, scaled to unit variance.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch


class PrincipalAxes:
    def __init__(self, mean: np.ndarray, scale: np.ndarray, components: np.ndarray, sd: np.ndarray):
        self.mean, self.scale, self.components, self.sd = mean, scale, components, sd

    @classmethod
    def fit(cls, x: np.ndarray, n_components: int) -> "PrincipalAxes":
        x = np.asarray(x, dtype=np.float64)
        mean = x.mean(axis=0)
        scale = np.maximum(x.std(axis=0), 1e-6)
        z = (x - mean) / scale
        # Eigenvectors of the covariance; signs fixed so the result does not depend on the LAPACK build.
        cov = z.T @ z / max(len(z) - 1, 1)
        values, vectors = np.linalg.eigh(cov)
        order = np.argsort(values)[::-1][: min(n_components, x.shape[1])]
        vectors = vectors[:, order]
        vectors *= np.where(vectors[np.argmax(np.abs(vectors), axis=0), np.arange(len(order))] < 0, -1.0, 1.0)
        sd = np.sqrt(np.maximum(values[order], 1e-12))
        return cls(mean, scale, vectors, sd)

    def transform(self, x: np.ndarray) -> np.ndarray:
        """[n, dim] features → [n, n_components] coordinates with unit variance on training images."""
        return ((np.asarray(x, dtype=np.float64) - self.mean) / self.scale) @ self.components / self.sd

    def state_dict(self, prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}.{k}": torch.from_numpy(np.ascontiguousarray(getattr(self, k))) for k in ("mean", "scale", "components", "sd")}

    @classmethod
    def from_state(cls, state: Mapping[str, torch.Tensor], prefix: str) -> "PrincipalAxes":
        return cls(*(state[f"{prefix}.{k}"].double().numpy() for k in ("mean", "scale", "components", "sd")))


def training_images(data) -> np.ndarray:
    """Rows of `data.features` rated by training raters (the images a method may learn from)."""
    users = set(data.users_in("train"))
    return np.unique(data.ratings.loc[data.ratings["user"].isin(users), "image_index"].to_numpy())
