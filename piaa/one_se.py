"""The one-standard-error rule over validation raters: the statistics behind every choice validation
makes (the test-time step size, the meta-training checkpoint, the meta-trained prior against step 0,
the rank of `learned-prior`'s prior covariance).

Validation scores of neighbouring candidates are often tied within rater-to-rater noise, and a
plain argmax then flips on any tiny change (another engine's rounding, another seed). The rule
(Breiman et al. 1984; Hastie et al., ESL §7.10) takes the most conservative candidate the
validation raters cannot tell from the best: the smallest step size, the earliest checkpoint.
Candidates are compared on the same raters, so the standard error is that of the per-rater
difference (pairing removes what both share: how predictable each rater is).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Generic, Mapping, TypeVar

import numpy as np

K = TypeVar("K", int, float)  # a candidate: a step size, a meta-step; smaller is more conservative


def paired_se(best: np.ndarray, other: np.ndarray) -> float:
    """Standard error of the mean per-rater difference between two candidates scored on the same
    raters (raters where either is undefined are left out)."""
    d = np.asarray(best, dtype=np.float64) - np.asarray(other, dtype=np.float64)
    d = d[np.isfinite(d)]
    return float(np.std(d, ddof=1) / np.sqrt(len(d))) if len(d) >= 2 else 0.0


def mean_score(per_rater: np.ndarray) -> float:
    """Mean over raters with a defined score; -inf when there is none (such a candidate loses)."""
    finite = np.asarray(per_rater, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    return float(finite.mean()) if finite.size else -math.inf


@dataclass
class OneSEChoice(Generic[K]):
    chosen: K  # the smallest candidate within one paired standard error of the best
    best: K  # the plain argmax (ties: the smaller candidate)
    mean: dict[K, float]  # mean validation score over raters, per candidate
    se: dict[K, float]  # paired standard error of (best − this candidate), per candidate


def one_se_choice(per_rater: Mapping[K, np.ndarray]) -> OneSEChoice[K]:
    """Among candidates whose mean score is within one paired standard error of the best's, the
    smallest. `per_rater` maps candidate -> score per rater (the same raters in the same order, NaN
    where undefined)."""
    mean = {k: mean_score(v) for k, v in per_rater.items()}
    best = max(mean, key=lambda k: (mean[k], -k))
    se = {k: paired_se(per_rater[best], per_rater[k]) for k in mean}
    chosen = min(k for k in mean if k == best or mean[best] - mean[k] <= se[k])
    return OneSEChoice(chosen, best, mean, se)


def clearly_beaten(per_rater: Mapping[K, np.ndarray]) -> list[K]:
    """Candidates that another candidate beats by more than one paired standard error: clearly worse
    than one the raters can tell apart from them, so never a conservative stand-in for the best (the
    checkpoint rule drops them for good, which keeps its memory bounded)."""
    mean = {k: mean_score(v) for k, v in per_rater.items()}
    return [c for c in mean if any(mean[e] - mean[c] > paired_se(per_rater[e], per_rater[c]) for e in mean if e != c)]
