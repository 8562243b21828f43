"""A Gaussian prior over raters' linear heads, fitted by empirical Bayes, and its closed-form posterior.

Each rater u scores an image with a head w_u over a design row φ(x) plus a free offset:

    y = b_u + φ(x) · w_u + ε,      ε ~ N(0, σ²),      w_u ~ N(μ, Σ),      Σ = F Fᵀ + diag(d)

The offset has a flat prior, so every rater's rows are centred first (it then drops out). μ, F, d and
σ² are fitted on training raters by maximising the marginal likelihood with EM (the heads are the
latent variables); a new rater's head is the Gaussian posterior given their support set, in closed
form. Low rank + diagonal: a few directions in which raters really differ (taste), plus a small
independent spread on every column, so the prior neither ignores rare directions nor overfits them.
Only numpy: adapting and scoring must stay cheap to import and run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class HeadPrior:
    mean: np.ndarray  # μ [D]
    factors: np.ndarray  # F [D, r] (r may be 0)
    diag: np.ndarray  # d [D], > 0
    noise: float  # σ²

    @property
    def cov(self) -> np.ndarray:
        return self.factors @ self.factors.T + np.diag(self.diag)

    @property
    def rank(self) -> int:
        return int(self.factors.shape[1])

    def with_mean(self, mean: np.ndarray) -> "HeadPrior":
        return HeadPrior(np.asarray(mean, dtype=np.float64), self.factors, self.diag, self.noise)

    def with_noise(self, noise: float) -> "HeadPrior":
        return HeadPrior(self.mean, self.factors, self.diag, float(noise))


def center(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Rows and scores centred on their means (the flat-prior offset), and those means."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    xm, ym = x.mean(axis=0), float(y.mean())
    return x - xm, y - ym, xm, ym


def posterior(x: np.ndarray, y: np.ndarray, prior: HeadPrior) -> tuple[np.ndarray, np.ndarray, float]:
    """Posterior mean of the head given support rows x [k, D] and scores y [k] (k may be 0).

    Returns (head, design centre, score centre); predictions are ycentre + (φ − xcentre) · head.
    Solved in the k×k data space through Woodbury (k is small at few shots, D may not be):
    mean = μ + Σ Xᵀ (X Σ Xᵀ + σ² I)⁻¹ (y − X μ) with X and y centred.
    """
    if len(y) == 0:
        return prior.mean.copy(), np.zeros_like(prior.mean), 0.0
    xc, yc, xm, ym = center(x, y)
    sx = (xc @ prior.factors) @ prior.factors.T + xc * prior.diag  # X Σ  [k, D]
    gram = sx @ xc.T + prior.noise * np.eye(len(yc))
    resid = yc - xc @ prior.mean
    alpha = np.linalg.solve(gram, resid)
    return prior.mean + sx.T @ alpha, xm, ym


def _lowrank_plus_diag(s: np.ndarray, rank: int, floor: np.ndarray, d: np.ndarray | None = None, steps: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """F, d with F Fᵀ + diag(d) ≈ S: factor analysis by alternating steps from the eigenvectors
    (warm-started from a previous `d` inside EM, where a few steps per M-step suffice)."""
    dim = len(s)
    if rank == 0:
        return np.zeros((dim, 0)), np.maximum(np.diag(s).copy(), floor)
    d = np.maximum(np.diag(s).copy() if d is None else d, floor)
    f = np.zeros((dim, rank))
    for _ in range(steps):
        # Principal factors of S scaled by the current diagonal (the FA fixed point), then refresh d.
        root = 1.0 / np.sqrt(d)
        vals, vecs = np.linalg.eigh(s * root[:, None] * root[None, :])
        top = np.argsort(vals)[::-1][:rank]
        lam = np.maximum(vals[top] - 1.0, 0.0)
        f = (vecs[:, top] * np.sqrt(lam)) / root[:, None]
        d = np.maximum(np.diag(s) - np.sum(f**2, axis=1), floor)
    return f, d


def rater_moments(raters: Sequence[tuple[np.ndarray, np.ndarray]], min_ratings: int = 3) -> "RaterMoments":
    """The centred sufficient statistics of each rater (gram XᵀX, XᵀY, yᵀy, n): all EM needs."""
    grams, rhs, yy, n = [], [], [], []
    for x, y in raters:
        if len(y) >= max(min_ratings, 2):
            xc, yc, _, _ = center(x, y)
            grams.append(xc.T @ xc)
            rhs.append(xc.T @ yc)
            yy.append(float(yc @ yc))
            n.append(len(yc) - 1)  # centring spends one degree of freedom
    return RaterMoments(np.asarray(grams), np.asarray(rhs), np.asarray(yy), np.asarray(n, dtype=np.float64))


@dataclass(frozen=True)
class RaterMoments:
    gram: np.ndarray  # [U, D, D]
    rhs: np.ndarray  # [U, D]
    yy: np.ndarray  # [U]
    dof: np.ndarray  # [U]

    def __len__(self) -> int:
        return len(self.yy)


def fit_head_prior(
    raters: Sequence[tuple[np.ndarray, np.ndarray]] | RaterMoments,
    *,
    rank: int,
    iterations: int = 200,
    floor: float = 1e-3,
    tol: float = 1e-7,
) -> tuple[HeadPrior, list[float]]:
    """Empirical Bayes by EM over training raters, each given as (design rows [n, D], scores [n]).

    Returns the prior and the marginal log-likelihood before each M-step (it rises, up to the
    low-rank projection of the M-step). `floor` bounds the diagonal variances from below, relative
    to the pooled noise-to-signal scale. All raters are processed at once (batched inverses).
    """
    mom = raters if isinstance(raters, RaterMoments) else rater_moments(raters)
    if len(mom) < 3:
        raise ValueError(f"need at least 3 raters with 3+ ratings to fit a head prior, got {len(mom)}")
    dim = mom.gram.shape[1]
    if rank < 0 or rank > dim:
        raise ValueError(f"rank must be between 0 and {dim}, got {rank}")
    # Start: pooled least squares for μ and σ², an isotropic spread of the size the data can resolve.
    gram_all, rhs_all, n_total = mom.gram.sum(axis=0), mom.rhs.sum(axis=0), float(mom.dof.sum())
    mu = np.linalg.solve(gram_all + 1e-6 * np.trace(gram_all) / dim * np.eye(dim), rhs_all)
    noise = float(mom.yy.sum() - 2 * mu @ rhs_all + mu @ gram_all @ mu) / n_total
    scale = noise / max(np.trace(gram_all) / n_total, 1e-12)
    f, dvec = np.zeros((dim, rank)), np.full(dim, scale)
    floor_abs = np.full(dim, floor * scale)
    history: list[float] = []
    for _ in range(iterations):
        cov = f @ f.T + np.diag(dvec)
        prec = np.linalg.inv(cov)
        p = mom.gram / noise + prec  # posterior precisions [U, D, D]
        chol = np.linalg.cholesky(p)
        p_inv = np.linalg.inv(p)
        b = mom.rhs / noise + prec @ mu
        m = np.einsum("uij,uj->ui", p_inv, b)  # posterior means [U, D]
        # log N(y | X μ, X Σ Xᵀ + σ² I) through the determinant lemma, summed over raters.
        quad = mom.yy / noise - np.sum(b * m, axis=1) + float(mu @ prec @ mu)
        logdet = mom.dof * np.log(2 * np.pi * noise) + np.linalg.slogdet(cov)[1] + 2 * np.sum(np.log(np.diagonal(chol, axis1=1, axis2=2)), axis=1)
        history.append(float(-0.5 * np.sum(quad + logdet)))
        if len(history) > 1 and abs(history[-1] - history[-2]) < tol * abs(history[-2]):
            break
        resid = mom.yy - 2 * np.sum(m * mom.rhs, axis=1) + np.einsum("ui,uij,uj->u", m, mom.gram, m)
        noise = float(np.sum(resid) + np.sum(mom.gram * p_inv)) / n_total
        mu = m.mean(axis=0)
        dev = m - mu
        s = (dev.T @ dev + p_inv.sum(axis=0)) / len(mom)
        f, dvec = _lowrank_plus_diag(s, rank, floor_abs, d=None if len(history) == 1 else dvec, steps=20 if len(history) == 1 else 3)
    return HeadPrior(mean=mu, factors=f, diag=dvec, noise=float(noise)), history
