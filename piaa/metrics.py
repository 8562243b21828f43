"""Agreement between predicted and observed scores. Undefined cases are NaN, never a silent number."""

from __future__ import annotations

import numpy as np


def _defined(pred: np.ndarray, true: np.ndarray) -> bool:
    return len(pred) >= 2 and np.ptp(pred) > 0 and np.ptp(true) > 0


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    return float(np.clip(a @ b / np.sqrt((a @ a) * (b @ b)), -1.0, 1.0))


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties sharing their average rank (scipy's `rankdata(method="average")`)."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    mean_rank = (starts + ends + 1) / 2.0  # average of 1-based positions start+1 .. end
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def srocc(pred, true) -> float:
    """Spearman rank correlation (ties get average ranks); NaN when either side is constant.

    Pearson correlation of average ranks: the same number as `scipy.stats.spearmanr` (tested)
    without its per-call overhead, which dominated the protocol's run time, or its import time.
    """
    pred, true = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    if not _defined(pred, true):
        return float("nan")
    return _pearson(average_ranks(pred), average_ranks(true))


def plcc(pred, true) -> float:
    """Pearson linear correlation; NaN when either side is constant."""
    pred, true = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    if not _defined(pred, true):
        return float("nan")
    return _pearson(pred, true)


def emd(p, q, r: float = 2.0) -> np.ndarray:
    """Earth mover's distance between score distributions over ordered bins (rows of p and q).

    The NIMA form: (mean over bins of |CDF_p - CDF_q|^r)^(1/r); r=1 is the classical 1-D EMD
    divided by the number of bins. Inputs are normalised to sum to one.
    """
    p, q = np.atleast_2d(np.asarray(p, dtype=np.float64)), np.atleast_2d(np.asarray(q, dtype=np.float64))
    if p.shape != q.shape:
        raise ValueError(f"distributions differ in shape: {p.shape} vs {q.shape}")
    p = p / p.sum(axis=1, keepdims=True)
    q = q / q.sum(axis=1, keepdims=True)
    diff = np.abs(np.cumsum(p, axis=1) - np.cumsum(q, axis=1))
    return np.mean(diff**r, axis=1) ** (1.0 / r)
