"""`pam`: a rater-specific residual on top of the generic score, from content and attribute features.

The idea of the personalized aesthetics model of Ren et al. (ICCV 2017, "Personalized Image
Aesthetics"): keep the generic aesthetics score and learn, per rater, only how their scores deviate
from it, as a function of what an image shows (content) and of its aesthetic attributes. The
residual is low-dimensional on purpose so that ten rated images can pin it down.

On a rater dataset that has only image features (no attribute or scene labels), both are derived
from the features on training images: "attributes" are the leading principal axes of the features,
"content" is a one-hot scene cluster (k-means on those axes), and the generic score itself is one
more input, so a rater can also weigh the consensus up or down. The residual is a ridge regression
whose strength is fixed at fit time from practice episodes on training raters (a population-level
choice, like a prior variance), so adaptation is one small closed-form solve.
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
from piaa.seeding import numpy_rng
from piaa.tasks.format import RaterDataset


@dataclass(frozen=True)
class PAMConfig(GIAAConfig):
    n_attributes: int = 16  # principal axes standing in for aesthetic attributes
    n_content: int = 8  # k-means clusters standing in for content categories
    lambda_grid: tuple[float, ...] = tuple(float(v) for v in np.logspace(-1, 4, 11))
    practice_shots: tuple[int, ...] = (10, 30, 100)
    practice_raters: int = 40


def kmeans(x: np.ndarray, k: int, *, seed: int, iterations: int = 25) -> np.ndarray:
    """Lloyd's algorithm with k-means++ seeding from a derived RNG; returns the [k, dim] centres."""
    rng = numpy_rng(seed, "pam-kmeans")
    k = min(k, len(x))
    centres = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        d2 = np.min(((x[:, None, :] - np.asarray(centres)[None]) ** 2).sum(-1), axis=1)
        centres.append(x[rng.choice(len(x), p=d2 / d2.sum()) if d2.sum() > 0 else rng.integers(len(x))])
    c = np.asarray(centres)
    for _ in range(iterations):
        label = _nearest(x, c)
        new = np.array([x[label == j].mean(axis=0) if np.any(label == j) else c[j] for j in range(k)])
        if np.allclose(new, c):
            break
        c = new
    return c


def _nearest(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    d2 = (x**2).sum(1)[:, None] - 2 * x @ centres.T + (centres**2).sum(1)[None]
    return np.argmin(d2, axis=1)


def ridge_path(phi: np.ndarray, r: np.ndarray, lambdas: np.ndarray) -> np.ndarray:
    """Ridge weights of `r` on (already centred) `phi` for every λ: [len(lambdas), dim]."""
    s, v = np.linalg.eigh(phi.T @ phi)
    proj = v.T @ (phi.T @ r)
    return (proj[None, :] / (np.clip(s, 0, None)[None, :] + lambdas[:, None])) @ v.T


class PAMUserModel(UserModel):
    def __init__(self, method: "PersonalizedResidual", offset: float, g_center: float, phi_center: np.ndarray, w: np.ndarray):
        self.method, self.offset, self.g_center, self.phi_center, self.w = method, offset, g_center, phi_center, w

    def predict(self, x: np.ndarray) -> np.ndarray:
        m = self.method
        g = m.generic_z(x)
        return self._from_design(g, m.design(x, g) if self.w.size else None)

    def predict_from_shared(self, shared: np.ndarray | None, x: np.ndarray) -> np.ndarray:
        if shared is None:
            return self.predict(x)
        m = self.method
        # _from_design on [g, design] with the centring folded into one matrix-vector product
        coef = np.concatenate([[m.rater_std], self.w]) if self.w.size else np.array([m.rater_std])
        out = (shared if self.w.size else shared[:, :1]) @ coef
        out += self.offset - m.rater_std * self.g_center - (float(self.phi_center @ self.w) if self.w.size else 0.0)
        lo, hi = m.score_range
        return np.clip(out, lo, hi, out=out)

    def _from_design(self, g: np.ndarray, design: np.ndarray | None) -> np.ndarray:
        m = self.method
        pred = self.offset + m.rater_std * (g - self.g_center)
        if self.w.size:
            pred = pred + (design - self.phi_center) @ self.w
        lo, hi = m.score_range
        return np.clip(pred, lo, hi)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {
            "offset": torch.tensor([self.offset, self.g_center], dtype=torch.float64),
            "phi_center": torch.from_numpy(self.phi_center.astype(np.float64)),
            "w": torch.from_numpy(self.w.astype(np.float64)),
        }


class PersonalizedResidual(GenericPrior):
    Config = PAMConfig
    summary = "PAM (Ren et al. 2017): generic prior + per-rater ridge residual on content/attribute features"

    def __init__(self, config: PAMConfig | None = None, **overrides):
        super().__init__(config, **overrides)
        self.axes: PrincipalAxes | None = None
        self.centres = np.zeros((0, 0))
        self.lam = float("inf")

    def fit(self, data: RaterDataset, *, seed: int = 0, progress: bool = False, checkpoint_dir=None) -> "PersonalizedResidual":
        self._fit_prior(data, seed=seed, progress=progress)
        cfg = self.config
        x_train = data.features[training_images(data)]
        self.axes = PrincipalAxes.fit(x_train, cfg.n_attributes)
        self.centres = kmeans(self.axes.transform(x_train), cfg.n_content, seed=seed)
        self.lam = self._choose_lambda(data, seed)
        return self

    def shared_representation(self, x: np.ndarray) -> np.ndarray | None:
        """[generic_z, design]: the generic network and the residual inputs are the same for every user."""
        g = self.generic_z(x)
        return np.concatenate([g[:, None], self.design(x, g)], axis=1)

    def design(self, x: np.ndarray, g: np.ndarray) -> np.ndarray:
        """Residual inputs: attribute axes, one-hot content cluster, generic score (all O(1) in scale)."""
        a = self.axes.transform(x)
        content = np.eye(len(self.centres))[_nearest(a, self.centres)]
        return np.concatenate([a, content, g[:, None]], axis=1)

    def _episode_fit(self, x: np.ndarray, y: np.ndarray, s: np.ndarray, lambdas: np.ndarray):
        g = self.generic_z(x)
        offset, g_center = float(y[s].mean()), float(g[s].mean())
        base = offset + self.rater_std * (g - g_center)
        phi = self.design(x, g)
        phi_center = phi[s].mean(axis=0)
        weights = ridge_path(phi[s] - phi_center, y[s] - base[s], lambdas)
        return base, phi - phi_center, weights, offset, g_center, phi_center

    def _choose_lambda(self, data: RaterDataset, seed: int) -> float:
        """The ridge strength with the lowest squared error on training raters' practice queries."""
        cfg = self.config
        lambdas = np.asarray(cfg.lambda_grid, dtype=np.float64)
        episodes = practice_episodes(data, cfg.practice_shots, n_raters=cfg.practice_raters, seed=seed, label="pam")
        if not episodes:
            return float(lambdas[-1])
        errors = np.zeros(len(lambdas))
        for ep in episodes:
            x = np.asarray(data.features[ep.image_index], dtype=np.float32)
            base, phi, weights, *_ = self._episode_fit(x, ep.scores, ep.support, lambdas)
            pred = base[ep.query][None, :] + weights @ phi[ep.query].T  # [n_lambda, n_query]
            errors += np.mean((pred - ep.scores[ep.query][None, :]) ** 2, axis=1)
        return float(lambdas[int(np.argmin(errors))])

    def adapt(self, x_support, y_support, *, big_five=None, seed: int = 0) -> UserModel:
        y = np.asarray(y_support, dtype=np.float64)
        empty = np.zeros(0)
        if len(y) == 0:
            return PAMUserModel(self, self.score_mean, 0.0, empty, empty)
        x = self.check_features(x_support, "support features")
        if len(y) < 2:
            return PAMUserModel(self, float(y.mean()), float(self.generic_z(x).mean()), empty, empty)
        _, _, weights, offset, g_center, phi_center = self._episode_fit(x, y, np.arange(len(y)), np.array([self.lam]))
        return PAMUserModel(self, offset, g_center, phi_center, weights[0])

    def user_model_from_state(self, state: Mapping[str, torch.Tensor]) -> UserModel:
        """Rebuild a rater's model from `PAMUserModel.state_dict()` (stored profiles)."""
        offset, g_center = (float(v) for v in state["offset"])
        return PAMUserModel(self, offset, g_center, state["phi_center"].double().numpy(), state["w"].double().numpy())

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = super().state_dict()
        state.update(self.axes.state_dict("axes"))
        state["content_centres"] = torch.from_numpy(np.ascontiguousarray(self.centres))
        state["lambda"] = torch.tensor([self.lam], dtype=torch.float64)
        return state

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        super().load_state_dict(state)
        self.axes = PrincipalAxes.from_state(state, "axes")
        self.centres = state["content_centres"].double().numpy()
        self.lam = float(state["lambda"][0])
