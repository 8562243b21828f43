"""What PA-IAA's two tasks train on, derived from a rater dataset.

Generic aesthetics: one score distribution per image over the dataset's score bins. By default it is
the histogram of the train raters' scores; `distributions_from_counts` turns AVA-style vote counts into
the same shape, so a dataset that ships vote distributions can plug in without touching training.
Personality: (liked image, Big-Five of the rater who liked it) pairs from likes.csv.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from piaa.tasks.format import BIG_FIVE, RaterDataset


class LazyRows:
    """Rows `index` of a row-indexable source (end to end: a PixelArray of decoded images), taken
    only when a batch is asked for, so a training set of images never sits in memory at once.
    Indexing gives another LazyRows; `np.asarray` decodes."""

    def __init__(self, source: Any, index: np.ndarray):
        self.source, self.index = source, np.asarray(index, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, idx: Any) -> "LazyRows":
        return LazyRows(self.source, self.index[idx])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        if not len(self.index):
            return np.zeros((0, self.source.shape[1]), dtype=dtype or np.float32)
        rows = np.asarray(self.source[self.index], dtype=np.float32)
        return rows.astype(dtype) if dtype is not None else rows


def score_bins(score_range: tuple[float, float]) -> np.ndarray:
    """The ordered score values the aesthetics head predicts a distribution over (one per integer step).

    Scales that are not integer steps (e.g. 0..1) get 10 equal bins between the bounds.
    """
    lo, hi = float(score_range[0]), float(score_range[1])
    span = hi - lo
    if span <= 0:
        raise ValueError(f"score range {score_range} is empty")
    if float(lo).is_integer() and float(hi).is_integer() and 2 <= span <= 20:
        return np.arange(lo, hi + 1.0)
    return np.linspace(lo, hi, 10)


def bin_of(scores: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """Index of the nearest bin for each score."""
    return np.abs(np.asarray(scores, dtype=np.float64)[:, None] - bins[None, :]).argmin(axis=1)


@dataclass(frozen=True)
class GenericDistributions:
    image_index: np.ndarray  # rows of features
    dist: np.ndarray  # [n, bins] float32, rows sum to one
    n_votes: np.ndarray  # votes behind each row (used as the example weight)


def distributions_from_counts(image_index: np.ndarray, counts: np.ndarray) -> GenericDistributions:
    """Vote counts per bin [n, bins] (e.g. AVA's) → normalised distributions; rows without votes dropped."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum(axis=1)
    keep = total > 0
    return GenericDistributions(
        image_index=np.asarray(image_index, dtype=np.int64)[keep],
        dist=(counts[keep] / total[keep, None]).astype(np.float32),
        n_votes=total[keep],
    )


def generic_distributions(data: RaterDataset, bins: np.ndarray, split: str = "train") -> GenericDistributions:
    """Each image's histogram of the `split` raters' scores over `bins`."""
    users = set(data.users_in(split))
    r = data.ratings[data.ratings["user"].isin(users)]
    if r.empty:
        raise ValueError(f"no ratings from {split} raters")
    uniq, inverse = np.unique(r["image_index"].to_numpy(), return_inverse=True)
    counts = np.zeros((len(uniq), len(bins)))
    np.add.at(counts, (inverse, bin_of(r["score"].to_numpy(), bins)), 1.0)
    return distributions_from_counts(uniq, counts)


@dataclass(frozen=True)
class PersonalityExamples:
    image_index: np.ndarray  # liked images (rows of features)
    big_five: np.ndarray  # [n, 5] float32: the Big-Five of the rater who liked the image
    user: np.ndarray  # the rater of each row (str)


def personality_unavailable(data: RaterDataset) -> str | None:
    """Why the personality task cannot be trained on `data`, or None when it can."""
    if data.likes is None or data.likes.empty:
        return f"dataset {data.name!r} has no likes.csv (images liked by personality raters)"
    psy = data.users[(data.users["split"] == "personality")].dropna(subset=list(BIG_FIVE))
    if psy.empty:
        return f"dataset {data.name!r} has no personality raters with a known Big-Five"
    if not data.likes["user"].isin(set(psy["user"])).any():
        return f"dataset {data.name!r}: no likes.csv row belongs to a personality rater with a known Big-Five"
    return None


def rated_big_five_raters(data: RaterDataset, min_ratings: int) -> list[str]:
    """Train raters whose Big-Five is known and who rated at least `min_ratings` images (PARA)."""
    train = data.users[data.users["split"] == "train"].dropna(subset=list(BIG_FIVE))
    counts = data.ratings["user"].value_counts()
    return [u for u in train["user"] if counts.get(u, 0) >= min_ratings]


def rating_examples(data: RaterDataset, raters: list[str]) -> PersonalityExamples:
    """(image, Big-Five) pairs from rated data: each rater's images scored above their own mean
    count as liked, so the personality head can train where nobody supplied likes (PARA)."""
    b5 = data.users.set_index("user").loc[raters, list(BIG_FIVE)].astype(np.float32)
    r = data.ratings[data.ratings["user"].isin(set(raters))]
    above = r["score"].to_numpy() > r.groupby("user")["score"].transform("mean").to_numpy()
    liked = r[above]
    return PersonalityExamples(
        image_index=liked["image_index"].to_numpy(np.int64),
        big_five=b5.loc[liked["user"]].to_numpy(np.float32),
        user=liked["user"].to_numpy(dtype=object),
    )


def personality_examples(data: RaterDataset) -> PersonalityExamples:
    """Likes of personality raters whose Big-Five is known, one row per (rater, liked image)."""
    psy = data.users[(data.users["split"] == "personality")].dropna(subset=list(BIG_FIVE))
    b5 = psy.set_index("user")[list(BIG_FIVE)].astype(np.float32)
    likes = data.likes[data.likes["user"].isin(set(psy["user"]))] if data.likes is not None else None
    if likes is None or likes.empty:
        return PersonalityExamples(np.zeros(0, np.int64), np.zeros((0, 5), np.float32), np.zeros(0, dtype=object))
    return PersonalityExamples(
        image_index=likes["image_index"].to_numpy(np.int64),
        big_five=b5.loc[likes["user"]].to_numpy(np.float32),
        user=likes["user"].to_numpy(dtype=object),
    )
