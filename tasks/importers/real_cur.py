"""REAL-CUR (Ren et al., ICCV 2017): real users' own photo albums, each photo rated 1..5 by the
album's owner → an evaluation-only rater dataset (every rater is a test rater).

Accepted input: the folder layout public loaders read, `images/<worker>/<score>/<image>`: one folder
per user, inside it one folder per score (1..5) holding the photos given that score. Image ids are
paths relative to the folder given (`<worker>/<score>/<image>`), so a feature store extracted from
the same folder matches them exactly; two users may own photos with the same file name.

Models are trained on another dataset (FLICKR-AES) and adapted to these raters; the dataset is marked
`evaluation_only` in dataset.json so that it needs no train raters.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from piaa.errors import DataError
from piaa.tasks.importers.common import ParsedDataset
from piaa.tasks.importers.registry import Importer, Option

SCORE_RANGE = (1.0, 5.0)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def parse_real_cur(images: str | Path) -> ParsedDataset:
    """Walk `images/<worker>/<score>/<image>` into ratings; every worker becomes a test rater."""
    root = Path(images)
    if not root.is_dir():
        raise DataError(str(root), "is not a directory (expected REAL-CUR's images/<worker>/<score>/<image> folders)")
    if (root / "images").is_dir() and not any(_score_dirs(p) for p in _subdirs(root)):
        root = root / "images"
    rows: list[tuple[str, str, float]] = []
    notes: list[str] = []
    skipped_dirs, skipped_files = [], 0
    for worker in _subdirs(root):
        for entry in sorted(worker.iterdir()):
            if entry.name.startswith("."):
                continue
            if not entry.is_dir():
                skipped_files += 1
                continue
            try:
                score = float(entry.name)
            except ValueError:
                score = float("nan")
            if not SCORE_RANGE[0] <= score <= SCORE_RANGE[1]:
                raise DataError(str(entry), f"expected a score folder named {SCORE_RANGE[0]:g}..{SCORE_RANGE[1]:g} inside the user folder {worker.name!r}, got {entry.name!r}")
            photos = sorted(p for p in entry.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            rows.extend((worker.name, p.relative_to(root).as_posix(), score) for p in photos)
        if not any(r[0] == worker.name for r in rows[-1:]):
            skipped_dirs.append(worker.name)
    if not rows:
        raise DataError(str(root), "holds no photos in <worker>/<score>/ folders (expected REAL-CUR's images/<worker>/<score>/<image> layout)")
    if skipped_dirs:
        notes.append(f"{len(skipped_dirs)} user folder(s) hold no rated photos and are left out, e.g. {skipped_dirs[0]!r}")
    if skipped_files:
        notes.append(f"{skipped_files} file(s) directly inside user folders (not in a score folder) are ignored")
    ratings = pd.DataFrame(rows, columns=["user", "image", "score"])
    ratings["score"] = ratings["score"].astype("float32")
    counts = ratings.groupby("user").size()
    users = pd.DataFrame({"user": sorted(counts.index), "split": "test"})
    notes.append(f"{len(ratings):,} photos rated by their {len(counts)} owners ({counts.min()}..{counts.max()} each); all are test raters (evaluation-only dataset)")
    return ParsedDataset(
        name="REAL-CUR",
        score_range=SCORE_RANGE,
        ratings=ratings,
        users=users,
        meta={"source": "REAL-CUR", "images": str(root), "split": {"source": "all-test", "rule": "every owner is a test rater; train on another dataset"}},
        notes=notes,
        evaluation_only=True,
    )


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _score_dirs(folder: Path) -> list[Path]:
    out = []
    for p in _subdirs(folder):
        try:
            float(p.name)
            out.append(p)
        except ValueError:
            pass
    return out


IMPORTER = Importer(
    summary="REAL-CUR: owners' ratings (1..5) of their own albums, as images/<worker>/<score>/<image>; evaluation only.",
    parse=parse_real_cur,
    options=(Option("images", "The images folder (or its parent) holding <worker>/<score>/<image>.", required=True),),
    help={"out": "Rater-dataset directory to create."},
)
