"""Raters as meta-learning tasks: fixed-shape support/query batches with padding weights.

Every rater in a batch is drawn into the same tensor shape so the batch can be mapped with `vmap`;
a rater with fewer images than the shape fills the rest with weight-0 rows that the loss ignores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from piaa.meta.core import TaskBatch
from piaa.seeding import numpy_rng
from piaa.tasks.format import Rater

MIN_TASK_QUERY = 10  # a task keeps at least this many (or half its) images for the query set


@dataclass
class TaskPool:
    """Training raters with their normalised scores, drawing support/query batches."""

    features: np.ndarray  # the dataset's feature matrix (may be memory-mapped)
    raters: list[Rater]
    score_range: tuple[float, float]

    def __len__(self) -> int:
        return len(self.raters)

    def sampler(self, meta_batch: int, support_shots: tuple[int, ...], query_size: int, seed: int):
        """step -> that meta-step's batch of `meta_batch` raters, drawn from (seed, step) alone."""

        def sample(step: int) -> TaskBatch:
            rng = numpy_rng(seed, "meta-batch", step)
            which = rng.choice(len(self), size=min(meta_batch, len(self)), replace=False)
            return self.batch(which, support_shots, query_size, rng)

        return sample

    def batch(self, which: np.ndarray, support_shots: tuple[int, ...], query_size: int, rng: np.random.Generator) -> TaskBatch:
        """Stacked xs/ys/ws (support) and xq/yq/wq (query) for raters `which` (positions in the pool)."""
        s_max = max(support_shots)
        lo, hi = self.score_range
        rows_s, rows_q, ys, yq, ws, wq = [], [], [], [], [], []
        for i in which:
            rater = self.raters[int(i)]
            n = len(rater)
            k = int(support_shots[rng.integers(len(support_shots))])
            n_s = max(1, min(k, n - min(MIN_TASK_QUERY, n // 2)))
            perm = rng.permutation(n)
            sup, qry = perm[:n_s], perm[n_s : n_s + query_size]
            y = (rater.scores.astype(np.float32) - lo) / (hi - lo)
            for pos, size, rows, targets, weights in ((sup, s_max, rows_s, ys, ws), (qry, query_size, rows_q, yq, wq)):
                pad = size - len(pos)
                full = np.concatenate([pos, np.full(pad, pos[0], dtype=pos.dtype)])
                rows.append(rater.image_index[full])
                targets.append(y[full])
                weights.append(np.concatenate([np.ones(len(pos)), np.zeros(pad)]).astype(np.float32))
        feats = lambda rows: torch.from_numpy(np.asarray(self.features[np.concatenate(rows)], dtype=np.float32)).reshape(len(rows), -1, self.features.shape[1])
        return TaskBatch(
            xs=feats(rows_s), ys=torch.from_numpy(np.stack(ys)), ws=torch.from_numpy(np.stack(ws)),
            xq=feats(rows_q), yq=torch.from_numpy(np.stack(yq)), wq=torch.from_numpy(np.stack(wq)),
        )
