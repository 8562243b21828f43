"""Support/query draws: sizes, disjointness, reproducibility, independence from visiting order."""

from __future__ import annotations

import numpy as np
import pytest

from piaa.tasks.sampling import draw_support, episodes, eligible
from piaa.tasks.format import read_dataset


@pytest.mark.parametrize("n,k", [(120, 10), (120, 100), (15, 0), (30, 30)])
def test_support_and_query_partition_the_rater(n, k):
    support, query = draw_support(n, k, seed=1, user="u", repeat=0)
    assert len(support) == k and len(query) == n - k
    assert not set(support) & set(query)
    assert sorted(np.concatenate([support, query]).tolist()) == list(range(n))


def test_draws_are_reproducible_and_vary_by_key():
    a = draw_support(200, 10, seed=0, user="42", repeat=3)[0]
    assert np.array_equal(a, draw_support(200, 10, seed=0, user="42", repeat=3)[0])
    others = [
        draw_support(200, 10, seed=1, user="42", repeat=3)[0],
        draw_support(200, 10, seed=0, user="43", repeat=3)[0],
        draw_support(200, 10, seed=0, user="42", repeat=4)[0],
    ]
    assert all(not np.array_equal(a, o) for o in others)


def test_repeats_differ_and_cover_many_images():
    eps = [draw_support(150, 10, seed=0, user="x", repeat=r)[0] for r in range(10)]
    assert len({tuple(e) for e in eps}) == 10
    assert len(set(np.concatenate(eps))) > 50


def test_episodes_follow_the_rater(tiny_dir):
    rater = read_dataset(tiny_dir).raters("test")[0]
    eps = episodes(rater, 10, 3, seed=5)
    assert [e.repeat for e in eps] == [0, 1, 2]
    assert all(len(e.support) == 10 and len(e.query) == len(rater) - 10 for e in eps)
    assert eligible(rater, len(rater) - 10) and not eligible(rater, len(rater) - 9)


def test_too_many_shots_is_an_error():
    with pytest.raises(ValueError):
        draw_support(5, 6, seed=0, user="u", repeat=0)
