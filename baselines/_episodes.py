"""Practice episodes on training raters, for baselines that tune an adaptation setting at fit time.

A baseline may choose a hyper-parameter of its per-rater adaptation (a ridge strength, a number of
fine-tuning steps, a blending weight) only from training raters: here they are split into support
and query exactly as the protocol splits test raters, so the choice never sees test data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from piaa.seeding import numpy_rng
from piaa.tasks.format import RaterDataset
from piaa.tasks.sampling import MIN_QUERY, draw_support


@dataclass(frozen=True)
class PracticeEpisode:
    user: str
    shots: int
    image_index: np.ndarray  # rows of data.features for all the rater's images
    scores: np.ndarray  # float64, same order
    support: np.ndarray  # positions into image_index
    query: np.ndarray


def practice_episodes(
    data: RaterDataset, shots: Iterable[int], *, n_raters: int, seed: int, label: str, split: str = "train"
) -> list[PracticeEpisode]:
    """Up to `n_raters` seeded training raters per shot setting (those with enough images), one draw each."""
    raters = data.raters(split)
    out: list[PracticeEpisode] = []
    for k in sorted({int(s) for s in shots if int(s) > 0}):
        pool = [r for r in raters if len(r) >= k + MIN_QUERY]
        if not pool:
            continue
        rng = numpy_rng(seed, "practice", label, k)
        chosen = rng.choice(len(pool), size=min(n_raters, len(pool)), replace=False)
        for i in sorted(chosen):
            r = pool[i]
            support, query = draw_support(len(r), k, seed=seed, user=f"practice:{label}:{r.user}", repeat=0)
            out.append(PracticeEpisode(r.user, k, r.image_index, r.scores.astype(np.float64), support, query))
    return out


def nearest_in_log(values: dict[int, float], shots: int) -> float:
    """The setting tuned for the shot count closest to `shots` on a log scale."""
    keys = sorted(values)
    best = min(keys, key=lambda k: abs(np.log(k) - np.log(max(shots, 1))))
    return values[best]
