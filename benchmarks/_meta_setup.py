"""What the meta-gradient benchmarks share: interleaved best-of timing and a demo meta-batch on a head."""

from __future__ import annotations

import time

import numpy as np

from piaa.meta.model import ScoreHead
from piaa.meta.tasks import TaskPool
from piaa.runs import resolve_data


def best_times(fns, repeats: int, clock=time.perf_counter) -> list[float]:
    """Best time of each function (wall clock, or e.g. `time.process_time` for CPU time), timed
    interleaved so that load hits all alike."""
    for fn in fns:
        fn()  # warm-up
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = clock()
            fn()
            best[i] = min(best[i], clock() - start)
    return best


def best_time(fn, repeats: int, clock=time.perf_counter) -> float:
    return best_times([fn], repeats, clock)[0]


def demo_meta_batch(shots: int, query: int, raters: int = 8):
    """(batch, model, theta, buffers): `raters` demo train raters padded to `shots` support and `query`
    query images, and the 256→128→64→1 head (no dropout) the presets meta-train, in train mode."""
    data, _ = resolve_data(None)
    pool = TaskPool(data.features, data.without("test").raters("train"), data.score_range)
    batch = pool.batch(np.arange(raters), (shots,), query, np.random.default_rng(0))
    model = ScoreHead(data.feature_dim, (128, 64), dropout=0.0)
    model.standardize.fit(np.asarray(data.features[:2000]))
    model.train()
    theta = {k: v.detach().clone() for k, v in model.named_parameters()}
    buffers = {k: v for k, v in model.named_buffers()}
    return batch, model, theta, buffers
