"""Validation on held-out train raters: mean SROCC after test-time adaptation, for model selection,
early stopping and choosing the test-time step size (never test raters).

The step size follows the one-standard-error rule (`piaa.one_se`): the smallest step within
one paired standard error of the best is the most conservative choice the validation raters cannot
tell from the best.

The support sets of one shot count are adapted together (stacked per-episode parameters, the
functional core's inner loop); query sets are padded to one shape and trimmed again before scoring.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch.func import functional_call, vmap

from piaa.meta.core import Meta, Params
from piaa.one_se import one_se_choice
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
    rater: np.ndarray  # index of each episode's validation rater (episodes of one rater share it)


def episode_groups(features, raters, shots: tuple[int, ...], repeats: int, seed: int, normalise: Callable) -> list[EpisodeGroup]:
    groups = []
    for k in shots:
        episodes, owner = [], []
        for i, r in enumerate(raters):
            x = np.asarray(features[r.image_index], dtype=np.float32)
            for repeat in range(repeats if len(r) >= k + MIN_QUERY else 0):
                support, query = draw_support(len(r), k, seed=seed, user=r.user, repeat=repeat)
                episodes.append((x[support], r.scores[support], x[query], r.scores[query]))
                owner.append(i)
        if episodes:
            n_q = max(len(e[3]) for e in episodes)
            groups.append(EpisodeGroup(
                k,
                torch.from_numpy(np.stack([e[0] for e in episodes])),
                torch.from_numpy(np.stack([normalise(e[1]) for e in episodes]).astype(np.float32)),
                torch.from_numpy(np.stack([np.pad(e[2], ((0, n_q - len(e[2])), (0, 0))) for e in episodes])),
                [e[3] for e in episodes],
                np.asarray(owner),
            ))
    return groups


RULE = "one-SE: the smallest step size whose mean validation SROCC is within one paired standard error (over validation raters) of the best"


def _mean_over_shots(per_shot: list[np.ndarray | None]) -> np.ndarray:
    """Per rater, the mean over the shot counts where the rater has a score (NaN where it has none)."""
    per = [v for v in per_shot if v is not None]
    if not per:
        return np.array([])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a rater without any score: NaN
        return np.nanmean(np.stack(per), axis=0)


class Validator:
    """`per_rater(meta, lr)`: per shot count, each validation rater's own mean SROCC (the units of the
    one-SE rule's standard error); calling it: each rater's mean over shot counts."""

    def __init__(self, module: torch.nn.Module, buffers: Params, groups: list[EpisodeGroup], adapt: Adapt, seed: int):
        self.module, self.buffers, self.groups, self.adapt, self.seed = module, buffers, groups, adapt, seed

    def _episode_sroccs(self, meta: Meta, lr: float | None) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Per shot count: SROCC of every episode (NaN where undefined) and the episode's rater."""
        out = {}
        for g in self.groups:
            adapted = self.adapt(meta, g.xs, g.ys, lr, derive_seed(self.seed, "validation", g.shots))
            with torch.no_grad():
                self.module.eval()
                xq = g.xq.to(next(iter(adapted.values())).device)  # end to end the model may sit on a GPU
                pred = vmap(lambda p, x: functional_call(self.module, {**self.buffers, **p}, (x,)))(adapted, xq).cpu().numpy()
                self.module.train()
            values = np.array([srocc(pred[i, : len(y)], y) for i, y in enumerate(g.yq)], dtype=np.float64)
            out[g.shots] = (np.where(np.isfinite(values), values, np.nan), g.rater)
        return out

    def per_rater(self, meta: Meta, lr: float | None = None) -> dict[int, np.ndarray]:
        """Per shot count, each validation rater's mean SROCC over its support draws, indexed by
        validation rater (NaN for a rater without an episode of that size or a defined SROCC)."""
        n = 1 + max((int(g.rater.max()) for g in self.groups if len(g.rater)), default=-1)
        out = {}
        for k, (values, rater) in self._episode_sroccs(meta, lr).items():
            means = np.full(n, np.nan)
            for r in np.unique(rater):
                v = values[rater == r]
                if np.isfinite(v).any():
                    means[r] = float(np.mean(v[np.isfinite(v)]))
            if np.isfinite(means).any():
                out[k] = means
        return out

    def tuned_per_rater(self, meta: Meta, lrs: dict[int, float]) -> np.ndarray:
        """Each validation rater's SROCC averaged over shot counts, every shot count adapted with its
        own step size `lrs[shots]` (what test-time adaptation will use)."""
        return _mean_over_shots([self.per_rater(meta, lr).get(k) for k, lr in lrs.items()])

    def __call__(self, meta: Meta) -> np.ndarray:
        """Each validation rater's SROCC averaged over shot counts at the configured step size: the
        checkpoint rule's scores (`piaa.meta.selection`), paired over the same raters and draws."""
        return _mean_over_shots(list(self.per_rater(meta).values()))

    def choose_step_sizes(self, meta: Meta, grid: tuple[float, ...], max_extensions: int = 2) -> tuple[dict[int, float], list[dict]]:
        """Per shot count, the test-time step size by the one-SE rule (`one_se_choice`) on validation raters.

        A grid edge is never the silent answer: while the best value sits at the largest step size, or
        the chosen one at the smallest positive step (and 0 is not tied with it), the grid is extended
        by a factor 3 beyond that edge, up to `max_extensions` times; a choice still at an edge is
        flagged in the log.
        """
        scores = {lr: self.per_rater(meta, lr) for lr in grid}
        shots = sorted({k for per in scores.values() for k in per})
        choice = lambda k: one_se_choice({lr: per[k] for lr, per in scores.items() if k in per})
        for _ in range(max_extensions):
            top, low = max(scores), min((lr for lr in scores if lr > 0), default=None)
            choices = [choice(k) for k in shots]
            wanted = {top * 3 for c in choices if c.best == top and top > 0}
            wanted |= {low / 3 for c in choices if low is not None and low in (c.best, c.chosen) and len(scores) > 1}
            if not wanted:
                break
            scores.update({lr: self.per_rater(meta, lr) for lr in wanted})
        chosen, log = {}, []
        top, low = max(scores), min((lr for lr in scores if lr > 0), default=None)
        for k in shots:
            c = choice(k)
            chosen[int(k)] = float(c.chosen)
            entry = {"adapt_lr_for_shots": int(k), "adapt_lr": float(c.chosen), "val_srocc": round(c.mean[c.chosen], 6),
                     "best_adapt_lr": float(c.best), "best_val_srocc": round(c.mean[c.best], 6),
                     "se_vs_best": round(c.se[c.chosen], 6), "rule": RULE,
                     "grid": sorted(float(x) for x in scores),
                     "val_srocc_by_lr": [[float(lr), round(c.mean[lr], 6), round(c.se[lr], 6)] for lr in sorted(c.mean)]}
            if c.chosen > 0 and (c.chosen == top or c.chosen == low) and len(scores) > 1:
                entry["at_grid_edge"] = True
            log.append(entry)
        return chosen, log
