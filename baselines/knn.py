"""`knn`: predict a rater's score of an image from how they rated the most similar images they rated.

Memory-based collaborative filtering applied to one rater: the images of the support set nearest to
a query image (cosine similarity in the leading principal components of the features) vote with
weights that grow with similarity. Votes are the rater's deviations from the generic prior, so the
prior supplies the ranking where the rater's few images say nothing; the vote is blended in with
weight n / (n + n0), which trusts the neighbours more as the rater rates more. n0 is chosen on
practice episodes of training raters (never on test raters' query images).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch

from piaa.baselines._embedding import PrincipalAxes, training_images
from piaa.baselines._episodes import practice_episodes
from piaa.baselines.giaa import GenericPrior, GIAAConfig
from piaa.method import UserModel
from piaa.tasks.format import RaterDataset


@dataclass(frozen=True)
class KNNConfig(GIAAConfig):
    neighbours: int = 10
    n_components: int = 32  # principal axes the similarity is measured in
    temperature: float = 0.1  # vote weight exp(cosine / temperature)
    blend_grid: tuple[float, ...] = (1.0, 4.0, 16.0, 64.0, 256.0, 1e9)  # candidates for n0
    practice_shots: tuple[int, ...] = (10, 30, 100)
    practice_raters: int = 40


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def neighbour_vote(query: np.ndarray, support: np.ndarray, values: np.ndarray, k: int, temperature: float) -> np.ndarray:
    """Similarity-weighted mean of `values` over each query row's k most similar support rows."""
    sims = _unit(query) @ _unit(support).T  # [q, n]
    k = min(k, support.shape[0])
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < support.shape[0] else np.broadcast_to(np.arange(k), (len(query), k))
    s = np.take_along_axis(sims, top, axis=1)
    w = np.exp((s - s.max(axis=1, keepdims=True)) / temperature)
    return (w * values[top]).sum(axis=1) / w.sum(axis=1)


class KNNUserModel(UserModel):
    def __init__(self, method: "NearestRated", offset: float, support_emb: np.ndarray, residual: np.ndarray, weight: float):
        self.method, self.offset, self.support_emb, self.residual, self.weight = method, offset, support_emb, residual, weight

    def predict(self, x: np.ndarray) -> np.ndarray:
        m = self.method
        return self._from_parts(m.generic_score(x), m.axes.transform(x) if len(self.residual) else None)

    def predict_from_shared(self, shared: np.ndarray | None, x: np.ndarray) -> np.ndarray:
        if shared is None:
            return self.predict(x)
        m, cfg = self.method, self.method.config
        support = _unit(self.support_emb)
        everyone = len(self.residual) and min(cfg.neighbours, len(support)) == len(support)
        out = np.empty(len(shared), dtype=np.float64)
        for i in range(0, len(shared), 16384):  # blocks that stay in cache through the vote's passes
            block = np.asarray(shared[i : i + 16384])
            if not everyone:
                out[i : i + len(block)] = self._from_parts(m.score_from_z(block[:, 0]), block[:, 1:])
                continue
            # neighbour_vote when every support image is a neighbour: no top-k selection, and the
            # embedding in `shared` is already unit length
            s = block[:, 1:] @ support.T
            s -= s.max(axis=1, keepdims=True)
            w = np.exp(s / cfg.temperature)
            vote = (w @ self.residual) / w.sum(axis=1)
            lo, hi = m.score_range
            out[i : i + len(block)] = np.clip(m.score_from_z(block[:, 0]) + self.offset + self.weight * vote, lo, hi)
        return out

    def _from_parts(self, generic: np.ndarray, embedding: np.ndarray | None) -> np.ndarray:
        m = self.method
        base = generic + self.offset
        if len(self.residual):
            cfg = m.config
            base = base + self.weight * neighbour_vote(embedding, self.support_emb, self.residual, cfg.neighbours, cfg.temperature)
        lo, hi = m.score_range
        return np.clip(base, lo, hi)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {
            "offset": torch.tensor([self.offset, self.weight], dtype=torch.float64),
            "support_emb": torch.from_numpy(np.ascontiguousarray(self.support_emb, dtype=np.float64)),
            "residual": torch.from_numpy(np.ascontiguousarray(self.residual, dtype=np.float64)),
        }


class NearestRated(GenericPrior):
    Config = KNNConfig
    summary = "generic prior + similarity-weighted votes of the rater's nearest rated images"

    def __init__(self, config: KNNConfig | None = None, **overrides):
        super().__init__(config, **overrides)
        self.axes: PrincipalAxes | None = None
        self.blend = float("inf")

    def shared_representation(self, x: np.ndarray) -> np.ndarray | None:
        """[generic_z, unit-length principal-axes coordinates]: the neighbour vote compares images there."""
        return np.concatenate([self.generic_z(x)[:, None], _unit(self.axes.transform(x))], axis=1)

    def fit(self, data: RaterDataset, *, seed: int = 0, progress: bool = False, checkpoint_dir=None) -> "NearestRated":
        self._fit_prior(data, seed=seed, progress=progress)
        self.axes = PrincipalAxes.fit(data.features[training_images(data)], self.config.n_components)
        self.blend = self._choose_blend(data, seed)
        return self

    def _choose_blend(self, data: RaterDataset, seed: int) -> float:
        """The n0 with the lowest squared error on training raters' practice query images."""
        cfg = self.config
        episodes = practice_episodes(data, cfg.practice_shots, n_raters=cfg.practice_raters, seed=seed, label="knn")
        if not episodes:
            return float(cfg.blend_grid[-1])
        errors = np.zeros(len(cfg.blend_grid))
        for ep in episodes:
            x = np.asarray(data.features[ep.image_index], dtype=np.float32)
            g, emb = self.generic_score(x), self.axes.transform(x)
            s, q = ep.support, ep.query
            offset = float(np.mean(ep.scores[s] - g[s]))
            vote = neighbour_vote(emb[q], emb[s], ep.scores[s] - g[s] - offset, cfg.neighbours, cfg.temperature)
            for i, n0 in enumerate(cfg.blend_grid):
                w = len(s) / (len(s) + n0)
                errors[i] += np.mean((g[q] + offset + w * vote - ep.scores[q]) ** 2)
        return float(cfg.blend_grid[int(np.argmin(errors))])

    def adapt(self, x_support, y_support, *, big_five=None, seed: int = 0) -> UserModel:
        y = np.asarray(y_support, dtype=np.float64)
        if len(y) == 0:
            return KNNUserModel(self, 0.0, np.zeros((0, 0)), np.zeros(0), 0.0)
        x = self.check_features(x_support, "support features")
        g = self.generic_score(x)
        offset = float(np.mean(y - g))
        weight = len(y) / (len(y) + self.blend)
        return KNNUserModel(self, offset, self.axes.transform(x), y - g - offset, weight)

    def user_model_from_state(self, state: Mapping[str, torch.Tensor]) -> UserModel:
        """Rebuild a rater's model from `KNNUserModel.state_dict()` (stored profiles)."""
        offset, weight = (float(v) for v in state["offset"])
        return KNNUserModel(self, offset, state["support_emb"].double().numpy(), state["residual"].double().numpy(), weight)

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = super().state_dict()
        state.update(self.axes.state_dict("axes"))
        state["blend"] = torch.tensor([self.blend], dtype=torch.float64)
        return state

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        super().load_state_dict(state)
        self.axes = PrincipalAxes.from_state(state, "axes")
        self.blend = float(state["blend"][0])
