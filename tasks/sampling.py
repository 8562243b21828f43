"""Support/query draws for the few-shot protocol.

A draw depends only on (seed, user, shots, repeat), never on the order in which raters or methods
are visited, so every method sees exactly the same support sets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from piaa.seeding import numpy_rng
from piaa.tasks.format import Rater

MIN_QUERY = 10  # a rater needs at least shots + MIN_QUERY images for that shot setting


@dataclass(frozen=True)
class Episode:
    """One support/query draw of a rater: what the protocol adapts from and scores on."""

    user: str
    shots: int
    repeat: int
    support: np.ndarray  # positions into the rater's images
    query: np.ndarray


def draw_support(n_items: int, shots: int, *, seed: int, user: str, repeat: int) -> tuple[np.ndarray, np.ndarray]:
    """`shots` positions as support (sorted), all the others as query. Disjoint and exhaustive."""
    if shots < 0 or shots > n_items:
        raise ValueError(f"cannot draw {shots} of {n_items} items")
    rng = numpy_rng(seed, "support", user, shots, repeat)
    chosen = np.zeros(n_items, dtype=bool)
    chosen[rng.choice(n_items, size=shots, replace=False)] = True
    return np.flatnonzero(chosen), np.flatnonzero(~chosen)


def eligible(rater: Rater, shots: int, min_query: int = MIN_QUERY) -> bool:
    return len(rater) >= shots + min_query


def episodes(rater: Rater, shots: int, repeats: int, *, seed: int) -> list[Episode]:
    """The protocol's `repeats` draws of `shots` support images for `rater` (see `draw_support`)."""
    out = []
    for repeat in range(repeats):
        support, query = draw_support(len(rater), shots, seed=seed, user=rater.user, repeat=repeat)
        out.append(Episode(rater.user, shots, repeat, support, query))
    return out
