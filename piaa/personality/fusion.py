"""Inter-task fusion: a rater's score is the generic score plus their taste along the personality axes.

    s_user(x) = offset + γ · s_generic(x) + w · p(x)

γ = 1 and offset = 0 give PA-IAA's formula s_generic + w · p. From a support set, θ = (γ, w) is the
posterior mean of Bayesian linear regression on the centred support (the offset is the support's mean
score), under a Gaussian prior N(θ₀, Σ) whose spread Σ and rating noise σ² are estimated once from the
training raters (empirical Bayes). Ten shots therefore move θ only as far as the evidence supports;
a hundred shots mostly overrule the prior. θ₀ is (1, 0) for an unknown rater, or (1, w(Big-Five))
when their Big-Five is known, with Σ shrunk by the taste variance the Big-Five already explains.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

N_THETA = 6  # γ and the five personality weights


def fuse(s_generic: np.ndarray, p: np.ndarray, w: np.ndarray, *, gamma: float = 1.0, offset: float = 0.0) -> np.ndarray:
    """offset + γ · s_generic + p · w, row-wise."""
    return offset + gamma * np.asarray(s_generic, dtype=np.float64) + np.asarray(p, dtype=np.float64) @ np.asarray(w, dtype=np.float64)


def design(s_generic: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Columns the rater's θ multiplies: [s_generic, p_O, p_C, p_E, p_A, p_N]."""
    return np.column_stack([np.asarray(s_generic, dtype=np.float64), np.asarray(p, dtype=np.float64)])


@dataclass(frozen=True)
class TastePrior:
    mean: np.ndarray  # θ₀ [6]
    cov: np.ndarray  # Σ [6, 6]
    noise: float  # σ², rating noise around a rater's own fused model

    def given_big_five(self, w0: np.ndarray) -> "TastePrior":
        """The prior for a rater whose Big-Five predicts taste w0: same spread, centred on w0.

        The spread is not narrowed: train raters' Big-Five are unknown, so how much taste variance
        the Big-Five explains cannot be measured on rated data, and an over-confident prior would keep
        100 shots from correcting a wrong prediction.
        """
        mean = self.mean.copy()
        mean[1:] = w0
        return TastePrior(mean=mean, cov=self.cov, noise=self.noise)


def _psd_floor(cov: np.ndarray, floor: float) -> np.ndarray:
    cov = (cov + cov.T) / 2
    s, u = np.linalg.eigh(cov)
    return (u * np.maximum(s, floor)) @ u.T


def estimate_taste_prior(raters: Iterable[tuple[np.ndarray, np.ndarray]], *, floor: float = 0.05, min_ratings: int = 20) -> TastePrior:
    """Method of moments over training raters, each given as (design [n, 6], scores [n]).

    Each rater's least-squares θ_u scatters around θ₀ = (1, 0) by the true spread of tastes plus its
    own estimation error; subtracting the average estimation covariance leaves Σ. σ² is the pooled
    residual variance. Raters with fewer than `min_ratings` ratings are left out.
    """
    thetas, errs, rss, dof = [], [], 0.0, 0
    n_cols = None
    for x, y in raters:
        n, n_cols = len(y), x.shape[1]
        if n < max(min_ratings, n_cols + 3):
            continue
        xc = x - x.mean(axis=0)
        yc = np.asarray(y, dtype=np.float64) - float(np.mean(y))
        gram = xc.T @ xc
        if np.linalg.cond(gram) > 1e10:
            continue
        theta = np.linalg.solve(gram, xc.T @ yc)
        resid = yc - xc @ theta
        s2 = float(resid @ resid) / (n - n_cols - 1)
        thetas.append(theta)
        errs.append(s2 * np.linalg.inv(gram))
        rss += float(resid @ resid)
        dof += n - n_cols - 1
    if len(thetas) < 3:
        raise ValueError(f"need at least 3 training raters with {min_ratings}+ ratings to estimate the taste prior, got {len(thetas)}")
    theta0 = np.zeros(n_cols)
    theta0[0] = 1.0
    d = np.asarray(thetas) - theta0
    cov = d.T @ d / len(d) - np.mean(errs, axis=0)
    scale = float(np.trace(d.T @ d / len(d))) / n_cols
    return TastePrior(mean=theta0, cov=_psd_floor(cov, floor * scale), noise=rss / dof)


@dataclass(frozen=True)
class FittedTaste:
    offset: float  # support mean score (or the prior's mean score at 0 shots)
    x_center: np.ndarray  # design means over the support [6] (zero at 0 shots)
    theta: np.ndarray  # (γ, w) [6]

    def predict(self, x_design: np.ndarray) -> np.ndarray:
        return self.offset + (x_design - self.x_center) @ self.theta


def posterior_taste(x: np.ndarray, y: np.ndarray, prior: TastePrior, *, pool_center: np.ndarray) -> FittedTaste:
    """Posterior mean of θ from a support set (design rows x [k, 6], scores y [k]); k may be 0.

    With no support the prior mean is used around `pool_center` (the design's mean over training
    images), so predictions stay on the score scale: s_generic + w · (p − mean p).
    """
    y = np.asarray(y, dtype=np.float64)
    if len(y) == 0:
        center = np.asarray(pool_center, dtype=np.float64)
        return FittedTaste(offset=float(center[0]), x_center=center, theta=prior.mean.copy())
    center = x.mean(axis=0)
    xc = x - center
    yc = y - y.mean()
    precision = np.linalg.inv(prior.cov)
    a = xc.T @ xc / prior.noise + precision
    rhs = xc.T @ yc / prior.noise + precision @ prior.mean
    return FittedTaste(offset=float(y.mean()), x_center=center, theta=np.linalg.solve(a, rhs))
