"""The empirical-Bayes head prior and the task-vector combination, on generated numbers."""

from __future__ import annotations

import numpy as np
import pytest

from piaa.priors.gaussian import HeadPrior, fit_head_prior, posterior, rater_moments
from piaa.priors.task_vector import combine, task_vectors, prior_head


def _prior(rng, dim=7, rank=2, noise=0.3) -> HeadPrior:
    return HeadPrior(rng.normal(size=dim), rng.normal(size=(dim, rank)), rng.uniform(0.05, 0.2, size=dim), noise)


def test_posterior_equals_brute_force_precision_form():
    rng = np.random.default_rng(1)
    prior = _prior(rng)
    x, y = rng.normal(size=(12, 7)), rng.normal(size=12) + 3.0
    head, xm, ym = posterior(x, y, prior)
    # Brute force: the precision form with the full covariance, offset integrated out by centring.
    xc, yc = x - x.mean(axis=0), y - y.mean()
    precision = np.linalg.inv(prior.cov)
    expected = np.linalg.solve(xc.T @ xc / prior.noise + precision, xc.T @ yc / prior.noise + precision @ prior.mean)
    np.testing.assert_allclose(head, expected, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(xm, x.mean(axis=0))
    assert ym == pytest.approx(y.mean())


def test_posterior_with_no_support_is_the_prior_mean_and_many_shots_reach_the_truth():
    rng = np.random.default_rng(2)
    prior = _prior(rng)
    head, _, _ = posterior(np.zeros((0, 7)), np.zeros(0), prior)
    np.testing.assert_array_equal(head, prior.mean)
    truth = rng.normal(size=7)
    x = rng.normal(size=(4000, 7))
    y = 1.5 + x @ truth + rng.normal(scale=0.1, size=4000)
    head, _, _ = posterior(x[:400], y[:400], prior.with_noise(0.01))
    assert np.max(np.abs(head - truth)) < 0.03


def test_em_recovers_a_known_mean_covariance_and_noise():
    rng = np.random.default_rng(3)
    dim, n_raters, n_rows = 5, 600, 80
    mean = np.array([1.0, -0.5, 0.0, 0.3, 0.8])
    factor = np.array([[0.9], [0.6], [-0.5], [0.0], [0.3]])
    diag = np.full(dim, 0.04)
    cov = factor @ factor.T + np.diag(diag)
    heads = rng.multivariate_normal(mean, cov, size=n_raters)
    raters = []
    for w in heads:
        x = rng.normal(size=(n_rows, dim))
        raters.append((x, rng.normal() + x @ w + rng.normal(scale=0.5, size=n_rows)))
    prior, history = fit_head_prior(raters, rank=1, iterations=300)
    assert prior.rank == 1
    assert np.max(np.abs(prior.mean - mean)) < 0.1
    assert np.linalg.norm(prior.cov - cov) / np.linalg.norm(cov) < 0.15
    assert prior.noise == pytest.approx(0.25, rel=0.05)
    assert history[-1] > history[0]  # marginal likelihood went up
    # The rank-0 (diagonal) prior cannot represent the correlation: it explains the data worse.
    diagonal, diag_history = fit_head_prior(rater_moments(raters), rank=0, iterations=300)
    assert diag_history[-1] < history[-1]


def test_task_vector_fit_recovers_a_known_combination():
    rng = np.random.default_rng(4)
    dim, n_vectors = 12, 6
    mu, basis = rng.normal(size=dim), rng.normal(size=(n_vectors, dim))
    coef = np.array([0.5, -1.0, 0.0, 0.3, 0.0, 0.8])
    x = rng.normal(size=(40, dim))
    y = 2.0 + x @ (mu + basis.T @ coef)
    head, _, ym = combine(x, y, mu, basis, lam=1e-8)
    np.testing.assert_allclose(head, mu + basis.T @ coef, atol=1e-5)
    # A strong penalty keeps the combination near zero: the prior head.
    shrunk, _, _ = combine(x, y, mu, basis, lam=1e6)
    assert np.linalg.norm(shrunk - mu) < 1e-3 * np.linalg.norm(basis.T @ coef)


def test_task_vectors_are_fine_tuned_heads_minus_the_prior_head():
    rng = np.random.default_rng(5)
    dim = 4
    raters = []
    truths = rng.normal(size=(5, dim))
    for w in truths:
        x = rng.normal(size=(3000, dim))
        raters.append((x, x @ w + rng.normal(scale=0.1, size=3000)))
    moments = rater_moments(raters)
    mu = prior_head(moments)
    np.testing.assert_allclose(mu, truths.mean(axis=0), atol=0.05)
    tau = task_vectors(moments, mu, strength=1e-6)  # almost no pull: each rater's own least squares
    np.testing.assert_allclose(mu + tau, truths, atol=0.02)
