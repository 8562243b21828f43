"""Training targets derived from raters: the generic (consensus) score of each image."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from piaa.tasks.format import RaterDataset

MIN_STD = 0.25  # floor for a rater's score spread, so a rater who always says "3" does not explode


@dataclass(frozen=True)
class GenericTargets:
    image_index: np.ndarray  # rows of features
    target: np.ndarray  # mean over raters of their standardised score, float32
    n_raters: np.ndarray  # raters behind each target
    score_mean: float  # mean rating over the raters used
    rater_std: float  # typical (mean) spread of one rater's scores


def generic_targets(data: RaterDataset, split: str = "train") -> GenericTargets:
    """Per-image mean of per-rater standardised scores over `split` raters.

    Standardising per rater first removes rater bias and scale, so the consensus reflects what raters
    agree on rather than who happened to rate the image.
    """
    users = set(data.users_in(split))
    r = data.ratings[data.ratings["user"].isin(users)]
    if r.empty:
        raise ValueError(f"no ratings from {split} raters")
    by_user = r.groupby("user", sort=False)["score"]
    mean = by_user.transform("mean").to_numpy(np.float64)
    std = np.maximum(by_user.transform("std", ddof=0).fillna(0).to_numpy(np.float64), MIN_STD)
    z = (r["score"].to_numpy(np.float64) - mean) / std
    image_index = r["image_index"].to_numpy()
    uniq, inverse, counts = np.unique(image_index, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=z)
    per_rater_std = np.maximum(by_user.std(ddof=0).fillna(0).to_numpy(np.float64), MIN_STD)
    return GenericTargets(
        image_index=uniq.astype(np.int64),
        target=(sums / counts).astype(np.float32),
        n_raters=counts.astype(np.int64),
        score_mean=float(r["score"].mean()),
        rater_std=float(per_rater_std.mean()),
    )
