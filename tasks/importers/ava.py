"""AVA (Murray et al., CVPR 2012) → a distribution set: per-image vote counts for scores 1..10.

`AVA.txt` has one whitespace-separated row per image: index, image id, ten vote counts (scores
1..10), two semantic tag ids and the challenge id. Images are `<image id>.jpg`, found in a feature
store by file stem. AVA has no per-rater votes, so the result holds no raters (see
`piaa.tasks.distributions`); tags and challenge ids are kept in dataset.json's summary only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from piaa.atomic import staged_directory, write_json
from piaa.errors import DataError
from piaa.tasks.distributions import DISTRIBUTIONS, KIND, read_distributions
from piaa.tasks.feature_store import FeatureStore, open_store
from piaa.tasks.importers.common import ImportReport, ParsedDataset, gather_features, match_features, read_text_lines, require_file, store_meta
from piaa.tasks.importers.registry import Importer, Option

N_SCORES = 10
N_FIELDS = 15


def parse_ava(path: str | Path) -> ParsedDataset:
    path = require_file(path, "AVA.txt: index, image id, ten vote counts, two tags, challenge id per line")
    ids, counts, challenges = [], [], []
    for i, line in enumerate(read_text_lines(path)):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != N_FIELDS:
            raise DataError(str(path), f"expected {N_FIELDS} whitespace-separated fields (index, image id, 10 vote counts, 2 tags, challenge), got {len(parts)}", line=i + 1)
        if not all(p.isdigit() for p in parts[2:12]):
            bad = next(k for k, p in enumerate(parts[2:12]) if not p.isdigit())
            raise DataError(str(path), f"expected a non-negative integer vote count, got {parts[2 + bad]!r}", line=i + 1, field=f"votes for score {bad + 1}")
        row = [int(p) for p in parts[2:12]]
        if sum(row) == 0:
            raise DataError(str(path), f"image {parts[1]!r} has no votes", line=i + 1)
        ids.append(parts[1])
        counts.append(row)
        challenges.append(parts[14])
    if not ids:
        raise DataError(str(path), "holds no rows")
    dist = pd.DataFrame(np.asarray(counts, dtype=np.int64), columns=[f"n{k + 1}" for k in range(N_SCORES)])
    dist.insert(0, "image", ids)
    dup = dist["image"].duplicated().to_numpy()
    if dup.any():
        raise DataError(str(path), f"image {ids[int(np.flatnonzero(dup)[0])]!r} appears twice", line=int(np.flatnonzero(dup)[0]) + 1)
    votes = dist.iloc[:, 1:].to_numpy().sum(axis=1)
    notes = [f"{len(ids):,} images, {int(votes.sum()):,} votes (median {np.median(votes):g} per image), {len(set(challenges))} challenges"]
    return ParsedDataset(
        name="AVA",
        score_range=(1.0, 10.0),
        ratings=pd.DataFrame({"user": pd.Series(dtype=str), "image": pd.Series(dtype=str), "score": pd.Series(dtype=np.float32)}),
        users=pd.DataFrame({"user": pd.Series(dtype=str), "split": pd.Series(dtype=str)}),
        distributions=dist,
        meta={"source": "AVA", "file": str(path)},
        notes=notes,
        image_match="stem",
    )


def write_ava(parsed: ParsedDataset, features: str | Path | FeatureStore, out: str | Path, *, drop_missing: bool = False, overwrite: bool = False) -> ImportReport:
    """Write the distribution set atomically: dataset.json, images.csv, features.npy, distributions.csv."""
    store = features if isinstance(features, FeatureStore) else open_store(features)
    names, rows, parsed, dropped, notes = match_features(parsed, store, drop_missing=drop_missing)
    out = Path(out)
    with staged_directory(out, overwrite=overwrite) as tmp:
        write_json(tmp / "dataset.json", {
            "name": parsed.name, "kind": KIND, "score_range": [1.0, 10.0], "scores": list(range(1, N_SCORES + 1)),
            "backbone": store.backbone, "format_version": 1, **parsed.meta, "feature_store": store_meta(store), "import_notes": parsed.notes + notes,
        })
        pd.DataFrame({"image": names}).to_csv(tmp / "images.csv", index=False)
        np.save(tmp / "features.npy", gather_features(store, rows), allow_pickle=False)
        parsed.distributions.to_csv(tmp / DISTRIBUTIONS, index=False)
        read_distributions(tmp)  # never publish what we could not read back
    return ImportReport(path=out, images=len(names), ratings=0, raters={}, dropped=dropped, notes=parsed.notes + notes)


IMPORTER = Importer(
    summary="AVA: per-image score distributions (1..10) for generic aesthetics heads.",
    parse=parse_ava,
    options=(Option("ava_txt", "AVA.txt: index, image id, 10 vote counts, 2 tags, challenge id per line.", required=True, arg="path"),),
    write=write_ava,
    help={"out": "Distribution-set directory to create.", "drop_missing": "Drop images without features and report the count."},
)
