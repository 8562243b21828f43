"""Validation on held-out train raters: mean SROCC after test-time adaptation, for model selection,
early stopping and choosing the test-time step size (never test raters).

The support sets of one shot count are adapted together (stacked per-episode parameters, the
functional core's inner loop); query sets are padded to one shape and trimmed again before scoring.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch.func import functional_call, vmap

from piaa.meta.core import Meta, Params
from piaa.metrics import srocc
from piaa.seeding import derive_seed
from piaa.tasks.sampling import MIN_QUERY, draw_support

Adapt = Callable[[Meta, torch.Tensor, torch.Tensor, float | None, int], Params]  # stacked adapted params


@dataclass
class EpisodeGroup:
    shots: int
    xs: torch.Tensor  # [episodes, shots, dim]
    ys: torch.Tensor  # normalised scores
    xq: torch.Tensor  # [episodes, max query, dim], zero-padded
    yq: list[np.ndarray]  # raw query scores, unpadded


def episode_groups(features, raters, shots: tuple[int, ...], repeats: int, seed: int, normalise: Callable) -> list[EpisodeGroup]:
    groups = []
    for k in shots:
        episodes = []
        for r in raters:
            x = np.asarray(features[r.image_index], dtype=np.float32)
            for repeat in range(repeats if len(r) >= k + MIN_QUERY else 0):
                support, query = draw_support(len(r), k, seed=seed, user=r.user, repeat=repeat)
                episodes.append((x[support], r.scores[support], x[query], r.scores[query]))
        if episodes:
            n_q = max(len(e[3]) for e in episodes)
            groups.append(EpisodeGroup(
                k,
                torch.from_numpy(np.stack([e[0] for e in episodes])),
                torch.from_numpy(np.stack([normalise(e[1]) for e in episodes]).astype(np.float32)),
                torch.from_numpy(np.stack([np.pad(e[2], ((0, n_q - len(e[2])), (0, 0))) for e in episodes])),
                [e[3] for e in episodes],
            ))
    return groups


class Validator:
    """`per_shot(meta, lr)`: mean validation SROCC per shot count; calling it: the mean over shots."""

    def __init__(self, module: torch.nn.Module, buffers: Params, groups: list[EpisodeGroup], adapt: Adapt, seed: int):
        self.module, self.buffers, self.groups, self.adapt, self.seed = module, buffers, groups, adapt, seed

    def per_shot(self, meta: Meta, lr: float | None = None) -> dict[int, float]:
        out = {}
        for g in self.groups:
            adapted = self.adapt(meta, g.xs, g.ys, lr, derive_seed(self.seed, "validation", g.shots))
            with torch.no_grad():
                self.module.eval()
                xq = g.xq.to(next(iter(adapted.values())).device)  # end to end the model may sit on a GPU
                pred = vmap(lambda p, x: functional_call(self.module, {**self.buffers, **p}, (x,)))(adapted, xq).cpu().numpy()
                self.module.train()
            values = [srocc(pred[i, : len(y)], y) for i, y in enumerate(g.yq)]
            values = [v for v in values if np.isfinite(v)]
            if values:
                out[g.shots] = float(np.mean(values))
        return out

    def __call__(self, meta: Meta) -> float:
        scores = self.per_shot(meta)
        return float(np.mean(list(scores.values()))) if scores else 0.0

    def choose_step_sizes(self, meta: Meta, grid: tuple[float, ...], max_extensions: int = 2) -> tuple[dict[int, float], list[dict]]:
        """Per shot count, the best test-time step size on validation raters.

        A grid edge is never the silent answer: while the largest value (or the smallest positive one,
        when it beats 0) wins, the grid is extended by a factor 3 beyond it, up to `max_extensions`
        times; a choice still at an edge is flagged in the log.
        """
        scores = {lr: self.per_shot(meta, lr) for lr in grid}
        shots = sorted({k for per in scores.values() for k in per})
        best = lambda k: max(scores, key=lambda lr: (scores[lr].get(k, float("-inf")), -lr))
        for _ in range(max_extensions):
            top, low = max(scores), min((lr for lr in scores if lr > 0), default=None)
            wanted = {top * 3 for k in shots if best(k) == top and top > 0}
            wanted |= {low / 3 for k in shots if low is not None and best(k) == low and len(scores) > 1}
            if not wanted:
                break
            scores.update({lr: self.per_shot(meta, lr) for lr in wanted})
        chosen, log = {}, []
        top, low = max(scores), min((lr for lr in scores if lr > 0), default=None)
        for k in shots:
            lr = best(k)
            chosen[int(k)] = float(lr)
            entry = {"adapt_lr_for_shots": int(k), "adapt_lr": float(lr), "val_srocc": round(scores[lr][k], 6),
                     "grid": sorted(float(x) for x in scores)}
            if lr > 0 and (lr == top or lr == low) and len(scores) > 1:
                entry["at_grid_edge"] = True
            log.append(entry)
        return chosen, log
