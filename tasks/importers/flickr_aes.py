"""FLICKR-AES (Ren et al., ICCV 2017) in its published form → a rater dataset.

Accepted inputs (see docs/datasets.md):
- `FLICKR-AES_image_labeled_by_each_worker.csv`, header `worker, imagePair, score` (a space after
  each comma), one row per rating, integer scores 1..5; or a folder of per-worker `<worker>.csv`
  files with the header `image,score` (other CSVs in that folder are skipped and reported).
- optionally `FLICKR-AES_image_score.txt` (image and mean score, whitespace-separated), used only
  as a consistency check;
- the test-worker list (37 workers in the standard split): a CSV with header `ID`, or a
  space-separated table with a `worker` column. Without one, a seeded split is derived and flagged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from piaa.errors import DataError
from piaa.tasks.importers.common import (
    ParsedDataset,
    apply_test_list,
    collapse_duplicates,
    derive_test_split,
    parse_scores,
    read_table,
    read_text_lines,
    read_worker_list,
    split_options,
)
from piaa.tasks.importers.registry import Importer, Option

LABELS_FILE = "FLICKR-AES_image_labeled_by_each_worker.csv"
SCORES_FILE = "FLICKR-AES_image_score.txt"
SCORE_RANGE = (1.0, 5.0)
N_TEST_WORKERS = 37  # the standard split (173 train workers)
TEST_RATINGS = (105, 171)  # the test workers of the standard split rated between 105 and 171 images


def read_labels_csv(path: Path) -> pd.DataFrame:
    """The main label file → user, image, score."""
    df = read_table(path, ["worker", "imagePair", "score"])
    ratings = pd.DataFrame({"user": df["worker"].str.strip(), "image": df["imagePair"].str.strip()})
    for col, src in (("user", "worker"), ("image", "imagePair")):
        empty = (ratings[col] == "").to_numpy()
        if empty.any():
            raise DataError(str(path), f"empty {src}", line=int(np.flatnonzero(empty)[0]) + 2, field=src)
    ratings["score"] = parse_scores(df["score"], str(path), "score", *SCORE_RANGE, integer=True)
    return ratings


def read_worker_folder(folder: Path, notes: list[str]) -> pd.DataFrame:
    """A folder of `<worker>.csv` files (header `image,score`) → user, image, score."""
    frames, skipped = [], []
    for path in sorted(folder.glob("*.csv")):
        lines = read_text_lines(path)
        header = [c.strip() for c in lines[0].split(",")] if lines else []
        if header[:2] != ["image", "score"]:
            skipped.append(path.name)
            continue
        df = read_table(path, ["image", "score"])
        images = df["image"].str.strip()
        empty = (images == "").to_numpy()
        if empty.any():
            raise DataError(str(path), "empty image", line=int(np.flatnonzero(empty)[0]) + 2, field="image")
        scores = parse_scores(df["score"], str(path), "score", *SCORE_RANGE, integer=True)
        frames.append(pd.DataFrame({"user": path.stem, "image": images, "score": scores}))
    if not frames:
        raise DataError(str(folder), f"holds neither {LABELS_FILE} nor per-worker CSV files with the header image,score")
    if skipped:
        notes.append(f"{folder}: skipped {len(skipped)} CSV file(s) without the header image,score: {', '.join(skipped[:5])}{' ...' if len(skipped) > 5 else ''}")
    notes.append(f"read {len(frames)} per-worker files from {folder}")
    return pd.concat(frames, ignore_index=True)


def check_image_scores(path: Path, ratings: pd.DataFrame) -> str:
    """Compare the published per-image means with the worker ratings; returns a one-line note."""
    names, values = [], []
    for i, line in enumerate(read_text_lines(path)):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise DataError(str(path), f"expected an image name and a mean score separated by whitespace, got {line.strip()!r}", line=i + 1)
        try:
            values.append(float(parts[1]))
        except ValueError:
            raise DataError(str(path), f"expected a number, got {parts[1]!r}", line=i + 1, field="score") from None
        names.append(parts[0])
    published = pd.Series(values, index=names)
    means = ratings.groupby("image")["score"].mean()
    common = means.index.intersection(published.index)
    only_rated = len(means.index.difference(published.index))
    diff = float(np.abs(published[common].to_numpy() - means[common].to_numpy()).max()) if len(common) else float("nan")
    return (
        f"{path.name}: {len(published):,} images; {len(common):,} also rated, {only_rated} rated but absent; "
        f"largest difference between published mean and mean of worker ratings {diff:.3f}"
    )


def parse_flickr_aes(
    root: str | Path | None = None,
    *,
    labels: str | Path | None = None,
    test_workers: str | Path | None = None,
    seed: int = 0,
    n_test: int = N_TEST_WORKERS,
    test_ratings: tuple[int, int] = TEST_RATINGS,
) -> ParsedDataset:
    """Parse FLICKR-AES. `labels` (a file or a per-worker folder) defaults to what `root` holds."""
    notes: list[str] = []
    root = Path(root) if root is not None else None
    if labels is None:
        if root is None:
            raise DataError("flickr-aes", "give --root (the dataset folder) or --labels")
        if not root.is_dir():
            raise DataError(str(root), "is not a directory")
        labels = root / LABELS_FILE if (root / LABELS_FILE).is_file() else root
    labels = Path(labels)
    if labels.is_dir():
        ratings = read_worker_folder(labels, notes)
    elif labels.is_file():
        ratings = read_labels_csv(labels)
    else:
        raise DataError(str(labels), f"not found (expected {LABELS_FILE} or a folder of <worker>.csv files)")
    ratings = collapse_duplicates(ratings, notes, labels.name)

    if root is not None and (root / SCORES_FILE).is_file():
        notes.append(check_image_scores(root / SCORES_FILE, ratings))

    counts = ratings.groupby("user").size()
    users_sorted = sorted(counts.index)
    if test_workers is not None:
        ids, form, lines = read_worker_list(test_workers)
        users = apply_test_list(users_sorted, ids, lines, str(test_workers))
        split = {"source": "file", "file": str(test_workers), "form": form, "n_test": len(ids)}
        notes.append(f"test workers from {test_workers} ({len(ids)} workers, {form})")
        if len(ids) != N_TEST_WORKERS:
            notes.append(f"the standard FLICKR-AES split has {N_TEST_WORKERS} test workers; this list has {len(ids)}")
    else:
        users, rule = derive_test_split(counts, n_test=n_test, min_ratings=test_ratings[0], max_ratings=test_ratings[1], seed=seed, dataset="flickr-aes")
        split = {"source": "derived", "rule": rule, "seed": seed}
        notes.append(f"WARNING: no test-worker list given; derived split: {rule}. Numbers are not comparable with papers that use the published 37-worker list (--test-workers).")
    return ParsedDataset(
        name="FLICKR-AES",
        score_range=SCORE_RANGE,
        ratings=ratings.reset_index(drop=True),
        users=users,
        meta={"source": "FLICKR-AES", "labels": str(labels), "split": split},
        notes=notes,
    )


IMPORTER = Importer(
    summary="FLICKR-AES: worker ratings (1..5) of 40K Flickr images; 37 test workers in the standard split.",
    parse=parse_flickr_aes,
    options=(
        Option("root", "Folder with FLICKR-AES_image_labeled_by_each_worker.csv (or per-worker <worker>.csv files)."),
        Option("labels", "The label CSV, or a folder of per-worker CSVs (default: found in --root)."),
        *split_options("test_workers"),
    ),
    help={"out": "Rater-dataset directory to create."},
)
