"""Score distributions per image (AVA): the generic aesthetics target, beside the rater format.

A distribution set is a directory with the same `dataset.json`, `images.csv` and `features.npy` as
a rater dataset, plus
```
distributions.csv   image,n1,...,nK      vote counts for the K score values of dataset.json "scores"
```
and no raters (dataset.json has "kind": "score-distributions"). A rater dataset may also carry a
distributions.csv; `read_distributions` reads either. PA-IAA's aesthetics head consumes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from piaa.errors import DataError

DISTRIBUTIONS = "distributions.csv"
KIND = "score-distributions"


@dataclass
class ScoreDistributions:
    name: str
    scores: np.ndarray  # [K] the score values, e.g. 1..10
    images: pd.Index  # images with a distribution
    counts: np.ndarray  # int64 [n, K]
    image_index: np.ndarray  # int64 [n]: row of each image in features.npy
    features: np.ndarray  # the directory's full feature matrix (memory-mapped)

    @property
    def probabilities(self) -> np.ndarray:
        return self.counts / self.counts.sum(axis=1, keepdims=True)

    @property
    def mean_scores(self) -> np.ndarray:
        return self.probabilities @ self.scores


def read_distributions(path: str | Path) -> ScoreDistributions:
    """Read and check a directory's distributions.csv against its images.csv and features.npy."""
    root = Path(path)
    meta_path = root / "dataset.json"
    if not meta_path.is_file():
        raise DataError(str(meta_path), "is missing (expected a distribution set or rater dataset)")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    scores = np.asarray(meta.get("scores") or [], dtype=np.float64)
    file = root / DISTRIBUTIONS
    if not file.is_file():
        raise DataError(str(file), "is missing: this dataset has no score distributions")
    df = pd.read_csv(file, dtype={"image": str}, keep_default_na=False)
    cols = [f"n{k + 1}" for k in range(len(scores))]
    if not len(scores) or list(df.columns) != ["image", *cols]:
        raise DataError(str(file), f"expected the header image,{','.join(cols) or 'n1,...'} matching dataset.json \"scores\" ({len(scores)} values)", line=1)
    counts = df[cols].to_numpy()
    if counts.dtype.kind not in "iu" or (counts < 0).any() or (counts.sum(axis=1) == 0).any():
        bad = int(np.flatnonzero((counts.sum(axis=1) <= 0) | (counts < 0).any(axis=1))[0]) if counts.dtype.kind in "iu" else 0
        raise DataError(str(file), "expected non-negative integer vote counts with at least one vote per image", line=bad + 2)
    images = pd.read_csv(root / "images.csv", dtype=str, keep_default_na=False)["image"]
    position = pd.Series(np.arange(len(images)), index=images)
    idx = df["image"].map(position)
    if idx.isna().any():
        i = int(np.flatnonzero(idx.isna().to_numpy())[0])
        raise DataError(str(file), f"image {df['image'].iloc[i]!r} is not in images.csv", line=i + 2, field="image")
    features = np.load(root / "features.npy", mmap_mode="r", allow_pickle=False)
    return ScoreDistributions(name=str(meta.get("name", root.name)), scores=scores, images=pd.Index(df["image"]), counts=counts.astype(np.int64), image_index=idx.to_numpy(np.int64), features=features)
