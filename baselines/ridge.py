"""`ridge`: the generic prior plus a closed-form ridge regression on the rater's residuals.

The residual model is linear in the standardised features and in the prior score itself, so it can
both re-weight the prior and add the rater's own preferences. Its strength is chosen by exact
leave-one-out error on the support set (closed form from one eigendecomposition), never by looking
at the query images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from piaa.method import UserModel
from piaa.baselines.giaa import GenericPrior, GIAAConfig


@dataclass(frozen=True)
class RidgeConfig(GIAAConfig):
    lambda_min: float = 1e-2  # grid of ridge strengths, relative to the mean diagonal of the kernel
    lambda_max: float = 1e4
    lambda_steps: int = 13
    prior_weight: float = 1.0  # scale of the prior-score column next to the features


class RidgeUserModel(UserModel):
    def __init__(self, method: "RidgeResidual", offset: float, g_center: float, phi_center: np.ndarray, w: np.ndarray, lam: float):
        self.method, self.offset, self.g_center = method, offset, g_center
        self.phi_center, self.w, self.lam = phi_center, w, lam

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self._from_g(x, self.method.generic_z(x))

    def predict_from_shared(self, shared: np.ndarray | None, x: np.ndarray) -> np.ndarray:
        """The generic network's output from `shared`; the per-user ridge still reads `x` (linear)."""
        return self.predict(x) if shared is None else self._from_g(x, shared[:, 0])

    def _from_g(self, x: np.ndarray, g: np.ndarray) -> np.ndarray:
        base = self.offset + self.method.rater_std * (g - self.g_center)
        if self.w.size:
            base = base + self._residual(x, g)
        lo, hi = self.method.score_range
        return np.clip(base, lo, hi)

    def _residual(self, x: np.ndarray, g: np.ndarray, chunk: int = 8192) -> np.ndarray:
        """(design(x, g) - phi_center) @ w with the standardisation folded into w: the same numbers
        without building the [n, dim + 1] float64 design matrix (fast on 100k-image catalogues)."""
        std = self.method.model.standardize
        scale = std.scale.numpy().astype(np.float64) * np.sqrt(x.shape[1])
        a = self.w[:-1] / scale
        const = -float(std.mean.numpy().astype(np.float64) @ a) - float(self.phi_center @ self.w)
        out = np.empty(len(x), dtype=np.float64)
        for i in range(0, len(x), chunk):
            out[i : i + chunk] = np.asarray(x[i : i + chunk], dtype=np.float64) @ a
        return out + const + self.method.config.prior_weight * self.w[-1] * g

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {
            "offset": torch.tensor([self.offset, self.g_center, self.lam], dtype=torch.float64),
            "phi_center": torch.from_numpy(self.phi_center.astype(np.float32)),
            "w": torch.from_numpy(self.w.astype(np.float32)),
        }


def _hat_diagonal(u: np.ndarray, shrink: np.ndarray, k: int, intercept: bool) -> np.ndarray:
    diag = np.einsum("ij,j,ij->i", u, shrink, u)
    # A fitted intercept (the caller centred the data) adds 1/k to every leverage.
    return diag + 1.0 / k if intercept else diag


def loo_residuals(phi: np.ndarray, r: np.ndarray, lam: float, *, intercept: bool = True) -> np.ndarray:
    """Exact leave-one-out residuals of ridge regression with strength `lam` (λ=inf: intercept only).

    With `intercept`, `phi` and `r` must be centred; each left-out fit then re-estimates the centre,
    as refitting on the other points would.
    """
    k = len(r)
    s, u = np.linalg.eigh(phi @ phi.T)
    shrink = np.zeros_like(s) if np.isinf(lam) else np.clip(s, 0.0, None) / (np.clip(s, 0.0, None) + lam)
    fitted = u @ (shrink * (u.T @ r))
    return (r - fitted) / np.clip(1.0 - _hat_diagonal(u, shrink, k, intercept), 1e-9, None)


def loo_ridge(phi: np.ndarray, r: np.ndarray, lambdas: np.ndarray, *, intercept: bool = True) -> tuple[np.ndarray, float]:
    """Ridge fit of `r` on `phi` with λ chosen by exact leave-one-out error; λ=inf (no fit) competes.

    Works in the dual (k×k kernel, one eigendecomposition for all λ), which is cheap for few shots
    and many features. Returns the primal weights and the chosen λ.
    """
    k = len(r)
    s, u = np.linalg.eigh(phi @ phi.T)
    s = np.clip(s, 0.0, None)
    ur = u.T @ r
    no_fit = r / (1.0 - 1.0 / k) if intercept else r
    best_err, best = float(np.mean(no_fit**2)), (np.zeros(phi.shape[1]), float("inf"))
    for lam in lambdas:
        shrink = s / (s + lam)
        fitted = u @ (shrink * ur)
        loo = (r - fitted) / np.clip(1.0 - _hat_diagonal(u, shrink, k, intercept), 1e-9, None)
        err = float(np.mean(loo**2))
        if err < best_err:
            alpha = u @ (ur / (s + lam))
            best_err, best = err, (phi.T @ alpha, float(lam))
    return best


class RidgeResidual(GenericPrior):
    Config = RidgeConfig
    summary = "generic prior + closed-form ridge on the rater's residuals (λ by leave-one-out)"

    def design(self, x: np.ndarray, g: np.ndarray) -> np.ndarray:
        """Residual-model inputs: standardised features (scaled to unit total variance) and the prior."""
        self.check_fitted()
        std = self.model.standardize
        z = (np.asarray(x, dtype=np.float32) - std.mean.numpy()) / std.scale.numpy()
        z = z / np.sqrt(z.shape[1])
        return np.concatenate([z.astype(np.float64), self.config.prior_weight * g[:, None]], axis=1)

    def adapt(self, x_support, y_support, *, big_five=None, seed: int = 0) -> UserModel:
        y = np.asarray(y_support, dtype=np.float64)
        empty = np.zeros(0)
        if len(y) == 0:
            return RidgeUserModel(self, self.score_mean, 0.0, empty, empty, float("inf"))
        x = self.check_features(x_support, "support features")
        g = self.generic_z(x)
        offset, g_center = float(y.mean()), float(g.mean())
        if len(y) < 3:
            return RidgeUserModel(self, offset, g_center, empty, empty, float("inf"))
        residual = y - (offset + self.rater_std * (g - g_center))
        phi = self.design(x, g)
        phi_center = phi.mean(axis=0)
        phi = phi - phi_center
        scale = max(float(np.mean(np.sum(phi**2, axis=1))), 1e-12)
        cfg = self.config
        lambdas = scale * np.logspace(np.log10(cfg.lambda_min), np.log10(cfg.lambda_max), cfg.lambda_steps)
        w, lam = loo_ridge(phi, residual, lambdas)
        if not np.isfinite(lam):
            return RidgeUserModel(self, offset, g_center, empty, empty, lam)
        return RidgeUserModel(self, offset, g_center, phi_center, w, lam)

    def user_model_from_state(self, state) -> UserModel:
        offset, g_center, lam = (float(v) for v in state["offset"])
        w = state["w"].numpy().astype(np.float64)
        return RidgeUserModel(self, offset, g_center, state["phi_center"].numpy().astype(np.float64), w, lam)
