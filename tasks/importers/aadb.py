"""AADB (Kong et al., ECCV 2016) per-rater annotations → a rater dataset.

Two published shapes are accepted, per file, recognised by their header:
- raw MTurk results: one row per assignment, a `WorkerId` column (any case) and pairs
  `Input.image_url<k>` / `Answer.overallScore<k>` (k = 1..N); empty pairs are skipped;
- long tables: `worker,image,score` (`user` is accepted for `worker`).
Image ids are the file names at the end of the URLs. Overall scores are integers 1..5.
Without a test-worker list, a seeded split is derived (piaa's rule, documented in docs/datasets.md).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse

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

SCORE_RANGE = (1.0, 5.0)
MIN_TEST_RATINGS = 110  # enough for the 100-shot protocol plus 10 query images
TEST_SHARE = 0.1
_URL_COL = re.compile(r"^Input\.image_url(\d+)$")


def _image_from_url(url: str) -> str:
    path = urlparse(url).path if "://" in url else url
    return path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def read_mturk_wide(path: Path) -> pd.DataFrame:
    """Raw MTurk results (WorkerId + Input.image_url<k>/Answer.overallScore<k>) → user, image, score."""
    df = read_table(path, [])
    worker_col = next((c for c in df.columns if c.lower().replace("_", "") in ("workerid", "worker")), None)
    if worker_col is None:
        raise DataError(str(path), f"has Input.image_url<k> columns but no WorkerId column (header has: {', '.join(df.columns)})", line=1)
    ks = sorted(int(m.group(1)) for c in df.columns if (m := _URL_COL.match(c)))
    frames = []
    for k in ks:
        score_col = f"Answer.overallScore{k}"
        if score_col not in df.columns:
            raise DataError(str(path), f"missing column '{score_col}' to go with 'Input.image_url{k}'", line=1)
        urls = df[f"Input.image_url{k}"].str.strip()
        used = (urls != "").to_numpy()
        lines = np.flatnonzero(used) + 2
        scores = parse_scores(df[score_col][used], str(path), score_col, *SCORE_RANGE, integer=True, lines=lines)
        frames.append(pd.DataFrame({"user": df[worker_col][used].str.strip().to_numpy(), "image": [_image_from_url(u) for u in urls[used]], "score": scores, "_line": lines}))
    ratings = pd.concat(frames, ignore_index=True)
    empty = (ratings["user"] == "").to_numpy()
    if empty.any():
        raise DataError(str(path), f"empty {worker_col}", line=int(ratings["_line"].iloc[int(np.flatnonzero(empty)[0])]), field=worker_col)
    return ratings.sort_values("_line", kind="stable").drop(columns="_line").reset_index(drop=True)


def read_long(path: Path) -> pd.DataFrame:
    df = read_table(path, [])
    worker = "worker" if "worker" in df.columns else "user" if "user" in df.columns else None
    if worker is None or "image" not in df.columns or "score" not in df.columns:
        raise DataError(str(path), f"expected raw MTurk columns (WorkerId, Input.image_url1, Answer.overallScore1, ...) or worker,image,score; header has: {', '.join(df.columns)}", line=1)
    ratings = pd.DataFrame({"user": df[worker].str.strip(), "image": df["image"].str.strip().map(_image_from_url)})
    for col, src in (("user", worker), ("image", "image")):
        empty = (ratings[col] == "").to_numpy()
        if empty.any():
            raise DataError(str(path), f"empty {src}", line=int(np.flatnonzero(empty)[0]) + 2, field=src)
    ratings["score"] = parse_scores(df["score"], str(path), "score", *SCORE_RANGE, integer=True)
    return ratings


def read_annotations(path: Path) -> pd.DataFrame:
    lines = read_text_lines(path)
    header = [c.strip().strip('"') for c in lines[0].split(",")] if lines else []
    return read_mturk_wide(path) if any(_URL_COL.match(c) for c in header) else read_long(path)


def parse_aadb(
    annotations: list[str | Path],
    *,
    test_workers: str | Path | None = None,
    seed: int = 0,
    min_test_ratings: int = MIN_TEST_RATINGS,
    test_share: float = TEST_SHARE,
) -> ParsedDataset:
    """Parse AADB annotation files (or folders of CSVs) into a rater dataset without features."""
    files: list[Path] = []
    for item in annotations:
        p = Path(item)
        if p.is_dir():
            found = sorted(p.glob("*.csv"))
            if not found:
                raise DataError(str(p), "holds no .csv annotation files")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(str(p), "not found (expected an AADB annotation CSV or a folder of them)")
    if not files:
        raise DataError("aadb", "give at least one --annotations file or folder")
    notes: list[str] = []
    ratings = pd.concat([read_annotations(f) for f in files], ignore_index=True)
    ratings = collapse_duplicates(ratings, notes, "AADB annotations")
    counts = ratings.groupby("user").size()
    users_sorted = sorted(counts.index)
    if test_workers is not None:
        ids, form, lines = read_worker_list(test_workers)
        users = apply_test_list(users_sorted, ids, lines, str(test_workers))
        split = {"source": "file", "file": str(test_workers), "form": form, "n_test": len(ids)}
        notes.append(f"test workers from {test_workers} ({len(ids)} workers, {form})")
    else:
        eligible = int((counts >= min_test_ratings).sum())
        n_test = max(1, round(test_share * eligible))
        users, rule = derive_test_split(counts, n_test=n_test, min_ratings=min_test_ratings, max_ratings=float("inf"), seed=seed, dataset="aadb")
        split = {"source": "derived", "rule": rule, "seed": seed}
        notes.append(f"no test-worker list given; derived split (piaa's rule): {rule}")
    notes.append(f"read {len(files)} annotation file(s): {len(ratings):,} ratings by {len(counts)} raters")
    return ParsedDataset(
        name="AADB",
        score_range=SCORE_RANGE,
        ratings=ratings.reset_index(drop=True),
        users=users,
        meta={"source": "AADB", "annotations": [str(f) for f in files], "split": split},
        notes=notes,
    )


IMPORTER = Importer(
    summary="AADB: per-rater overall scores (1..5) from the released MTurk annotations.",
    parse=parse_aadb,
    options=(
        Option("annotations", "Raw MTurk result CSV, long worker,image,score CSV, or a folder of them (repeatable).", required=True, multiple=True),
        *split_options("test_workers"),
    ),
)
