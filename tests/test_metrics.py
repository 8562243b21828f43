"""Metrics agree with scipy and refuse to invent a number for undefined cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr, wasserstein_distance

from piaa.metrics import emd, plcc, srocc


def test_srocc_and_plcc_match_scipy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=60)
    y = np.round(x + rng.normal(size=60)).clip(-2, 2)  # ties, like 1..5 ratings
    assert srocc(x, y) == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    assert plcc(x, y) == pytest.approx(pearsonr(x, y).statistic, abs=1e-12)
    assert srocc(x, -y) == pytest.approx(-srocc(x, y))


@pytest.mark.parametrize("pred,true", [([1, 1, 1], [1, 2, 3]), ([1, 2, 3], [4, 4, 4]), ([1], [2])])
def test_undefined_correlations_are_nan(pred, true):
    assert math.isnan(srocc(pred, true)) and math.isnan(plcc(pred, true))


def test_emd_properties():
    p = np.array([[0.1, 0.2, 0.4, 0.2, 0.1]])
    assert emd(p, p)[0] == 0
    shifted = np.array([[0.0, 0.1, 0.2, 0.4, 0.3]])
    assert emd(p, shifted)[0] > 0
    assert emd(p, shifted)[0] == pytest.approx(emd(shifted, p)[0])
    # r = 1 is the 1-D Wasserstein distance over bin indices divided by the number of bins.
    bins = np.arange(5)
    w = wasserstein_distance(bins, bins, p[0], shifted[0])
    assert emd(p, shifted, r=1)[0] == pytest.approx(w / 5)
    # counts are normalised
    assert emd(p * 7, shifted * 3)[0] == pytest.approx(emd(p, shifted)[0])


@pytest.mark.parametrize("seed", range(5))
def test_average_ranks_match_scipy_with_ties(seed):
    from scipy.stats import rankdata

    from piaa.metrics import average_ranks

    values = np.random.default_rng(seed).integers(1, 6, size=40).astype(float)
    np.testing.assert_array_equal(average_ranks(values), rankdata(values))
    noisy = values + np.random.default_rng(seed + 10).normal(size=40)
    np.testing.assert_array_equal(average_ranks(noisy), rankdata(noisy))
    assert srocc(noisy, values) == pytest.approx(spearmanr(noisy, values).statistic, abs=1e-12)
