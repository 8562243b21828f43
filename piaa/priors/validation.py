"""Choosing a prior's hyperparameters on validation raters: a seeded split of the training raters.

Test raters are never seen. Validation raters play the protocol's game (k support images, score the
rest by SROCC) with their own seeded draws, so a choice is judged by the job it will do.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from piaa.metrics import srocc
from piaa.one_se import mean_score
from piaa.seeding import numpy_rng
from piaa.tasks.sampling import draw_support

# (support rows, support scores) → a function that scores query rows
Adapter = Callable[[np.ndarray, np.ndarray], Callable[[np.ndarray], np.ndarray]]


def split_raters(n: int, fraction: float, *, seed: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(fit positions, validation positions) of n training raters; at least 3 on each side."""
    n_val = min(max(int(round(n * fraction)), 3), n - 3)
    order = numpy_rng(seed, name, "validation-raters").permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def validation_scores(
    adapter: Adapter,
    raters: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    shots: Sequence[int],
    repeats: int,
    seed: int,
    min_query: int = 10,
) -> np.ndarray:
    """Per validation rater: SROCC averaged over repeats, then over the shot settings the rater has
    enough ratings for (NaN if none). Per rater, so choices can use paired standard errors."""
    out = np.full(len(raters), np.nan)
    for i, (phi, y) in enumerate(raters):
        per_shot = []
        for k in shots:
            if len(y) < k + min_query:
                continue
            scores = []
            for repeat in range(repeats):
                support, query = draw_support(len(y), k, seed=seed, user=f"validation-{i}", repeat=repeat)
                predict = adapter(phi[support], y[support])
                scores.append(srocc(predict(phi[query]), y[query]))
            per_shot.append(np.nanmean(scores))
        if per_shot and np.isfinite(per_shot).any():
            out[i] = np.nanmean(per_shot)
    return out


def validation_srocc(adapter: Adapter, raters: Sequence[tuple[np.ndarray, np.ndarray]], **kwargs) -> float:
    """Mean over validation raters of `validation_scores`."""
    return mean_score(validation_scores(adapter, raters, **kwargs))
