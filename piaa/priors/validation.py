"""Choosing a prior's hyperparameters on validation raters: a seeded split of the training raters.

Test raters are never seen. Validation raters play the protocol's game (k support images, score the
rest by SROCC) with their own seeded draws, so a choice is judged by the job it will do.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from piaa.metrics import srocc
from piaa.seeding import numpy_rng
from piaa.tasks.sampling import draw_support

# (support rows, support scores) → a function that scores query rows
Adapter = Callable[[np.ndarray, np.ndarray], Callable[[np.ndarray], np.ndarray]]


def split_raters(n: int, fraction: float, *, seed: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(fit positions, validation positions) of n training raters; at least 3 on each side."""
    n_val = min(max(int(round(n * fraction)), 3), n - 3)
    order = numpy_rng(seed, name, "validation-raters").permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def validation_srocc(
    adapter: Adapter,
    raters: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    shots: Sequence[int],
    repeats: int,
    seed: int,
    min_query: int = 10,
) -> float:
    """Mean over shot settings of the mean over eligible raters of SROCC (each averaged over repeats)."""
    per_shot = []
    for k in shots:
        values = []
        for i, (phi, y) in enumerate(raters):
            if len(y) < k + min_query:
                continue
            scores = []
            for repeat in range(repeats):
                support, query = draw_support(len(y), k, seed=seed, user=f"validation-{i}", repeat=repeat)
                predict = adapter(phi[support], y[support])
                scores.append(srocc(predict(phi[query]), y[query]))
            values.append(np.nanmean(scores))
        if values:
            per_shot.append(float(np.nanmean(values)))
    return float(np.mean(per_shot)) if per_shot else float("nan")
