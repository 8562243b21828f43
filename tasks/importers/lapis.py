"""LAPIS (Leuven Art Personalized Image Set, Maerten et al., 2025) → a rater dataset.

Accepted input: `annotation/LAPIS_individualratings_metaANDdemodata.csv`, one row per rating with
the image path (`file`; older copies of the metadata call it `image_filename`), `image_id`,
`response` (the rating), `participant_id`, the participant's `age`, `nationality`, `demo_gender`,
`demo_edu`, `demo_colorblind` and art-interest items `VAIAK1`..`VAIAK7`, `2VAIAK1`..`2VAIAK4`, and
the artwork's `style` and `genre`. Header names are matched ignoring case, spaces, `-` and `_`; the
delimiter is read from the header line. Image ids are file names (the last path component).

Rows with an empty response are dropped and counted (public loaders drop them too). Participant
attributes repeat on every row; the first non-empty value per participant is kept in users.csv.
LAPIS has no Big-Five.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from piaa.errors import DataError
from piaa.tasks.importers.common import (
    ParsedDataset,
    find_columns,
    numeric_column,
    parse_range,
    rater_split,
    read_fast_table,
    read_header,
    require_file,
    sniff_delimiter,
    split_options,
    text_column,
)
from piaa.tasks.importers.registry import Importer, Option

RATINGS_FILE = "LAPIS_individualratings_metaANDdemodata.csv"
SCORE_RANGE = (0.0, 10.0)
MIN_TEST_RATINGS = 110
TEST_SHARE = 0.1

COLUMNS = {
    "file": ("file", "image_filename", "imageName", "filename"),
    "image_id": ("image_id",),
    "score": ("response", "score", "rating"),
    "user": ("participant_id", "participant", "user", "userId"),
}
RATER_COLUMNS = {
    "age": ("age",),
    "nationality": ("nationality",),
    "gender": ("demo_gender", "gender"),
    "education": ("demo_edu", "education"),
    "colorblind": ("demo_colorblind", "colorblind"),
    **{f"vaiak{i}": (f"VAIAK{i}",) for i in range(1, 8)},
    **{f"vaiak2_{i}": (f"2VAIAK{i}",) for i in range(1, 5)},
}


def parse_lapis(
    root: str | Path | None = None,
    *,
    ratings_csv: str | Path | None = None,
    test_raters: str | Path | None = None,
    seed: int = 0,
    test_share: float = TEST_SHARE,
    min_test_ratings: int = MIN_TEST_RATINGS,
    score_range: tuple[float, float] | str = SCORE_RANGE,
) -> ParsedDataset:
    """Parse LAPIS's individual-ratings CSV (default: `root/annotation/` or `root/`)."""
    if ratings_csv is not None:
        path = require_file(ratings_csv, RATINGS_FILE)
    elif root is not None:
        root = Path(root)
        path = next((p for p in (root / "annotation" / RATINGS_FILE, root / RATINGS_FILE) if p.is_file()), None)
        if path is None:
            raise DataError(str(root), f"holds neither annotation/{RATINGS_FILE} nor {RATINGS_FILE}")
    else:
        raise DataError("lapis", "give --root (the LAPIS folder) or --ratings FILE")
    lo, hi = parse_range(score_range, "--score-range")
    notes: list[str] = []
    sep = sniff_delimiter(path)
    header = read_header(path, sep)
    cols = find_columns(path, header, {**COLUMNS, **RATER_COLUMNS}, required=("file", "score", "user"))
    df = read_fast_table(path, sep=sep, text=[c for c in header if c != cols["score"]])
    answered = df[cols["score"]].notna().to_numpy()
    if not pd.api.types.is_numeric_dtype(df[cols["score"]].dtype):
        answered &= (df[cols["score"]].astype(str).str.strip() != "").to_numpy()
    if not answered.all():
        notes.append(f"{path.name}: {int((~answered).sum())} row(s) with an empty {cols['score']} dropped")
    lines = np.flatnonzero(answered)
    df = df.iloc[lines].reset_index(drop=True)
    try:
        users_col = text_column(df, cols["user"], path)
        images = text_column(df, cols["file"], path).str.replace("\\", "/", regex=False).str.rsplit("/", n=1).str[-1]
        scores = numeric_column(df, cols["score"], path, lo=lo, hi=hi).astype(np.float32)
    except DataError as exc:  # report the line of the original file, not of the answered rows
        if exc.line is None:
            raise
        hint = " (use --score-range LO,HI if your copy uses another scale)" if exc.field == cols["score"] else ""
        raise DataError(exc.file, exc.detail + hint, line=int(lines[exc.line - 2]) + 2, field=exc.field) from None
    ratings = pd.DataFrame({"user": users_col, "image": images, "score": scores})
    dup = ratings.duplicated(["user", "image"]).to_numpy()
    if dup.any():
        notes.append(f"{path.name}: {int(dup.sum())} repeated (participant, image) rows; scores averaged per pair")
        ratings = ratings.groupby(["user", "image"], sort=False, as_index=False)["score"].mean()

    attrs = [name for name in RATER_COLUMNS if name in cols]
    per_row = pd.DataFrame({"user": users_col, **{name: df[cols[name]].str.strip() for name in attrs}})
    info = per_row.replace("", np.nan).groupby("user", sort=True).first().fillna("").reset_index()
    counts = ratings.groupby("user").size()
    split_users, split = rater_split(counts, dataset="lapis", test_raters=test_raters, seed=seed, test_share=test_share, min_test_ratings=min_test_ratings, notes=notes)
    users = split_users.merge(info, on="user", how="left")
    notes.append(f"{len(ratings):,} ratings of {ratings['image'].nunique():,} artworks by {len(counts)} participants; no Big-Five in LAPIS")
    return ParsedDataset(
        name="LAPIS",
        score_range=(float(lo), float(hi)),
        ratings=ratings,
        users=users,
        meta={"source": "LAPIS", "ratings_csv": str(path), "split": split},
        notes=notes,
    )


IMPORTER = Importer(
    summary="LAPIS: 11,723 artworks rated by 552 participants, with their demographics and art interest.",
    parse=parse_lapis,
    options=(
        Option("root", "LAPIS folder (holding annotation/LAPIS_individualratings_metaANDdemodata.csv)."),
        Option("ratings_csv", "The individual-ratings CSV (default: found in --root)."),
        *split_options("test_raters", test_share=TEST_SHARE, min_test_ratings=MIN_TEST_RATINGS),
        Option("score_range", "Range of the response scale.", type=str, default="0,10"),
    ),
    help={"out": "Rater-dataset directory to create."},
)
