"""Rater splits a user can publish: k-fold assignments of raters for cross-validation.

A fold file is a CSV `user,fold` (folds numbered 1..K), one row per rater that is cross-validated:
every train or test rater of the dataset (personality raters only ever help training). The
assignment is a seeded permutation dealt round-robin, so fold sizes differ by at most one and the
same seed gives the same folds. `read_folds` also takes the per-fold id lists circulated with PARA
and LAPIS code (a folder holding TestUserIDs_Fold<k>.txt).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from piaa.errors import DataError
from piaa.seeding import numpy_rng
from piaa.tasks.format import RaterDataset

FOLD_LIST = re.compile(r"^TestUserIDs_Fold(\d+)\.txt$")


def cv_raters(data: RaterDataset) -> list[str]:
    """The raters that take turns as test raters: everyone with split train or test."""
    return sorted(data.users.loc[data.users["split"].isin(["train", "test"]), "user"].astype(str))


def assign_folds(data: RaterDataset, k: int, *, seed: int = 0) -> pd.DataFrame:
    """A seeded k-fold assignment of the dataset's train and test raters: columns user, fold (1..k)."""
    raters = cv_raters(data)
    if k < 2:
        raise DataError("--folds", f"expected at least 2 folds, got {k}")
    if len(raters) < k:
        raise DataError("users.csv", f"{k} folds need at least {k} train/test raters, the dataset has {len(raters)}")
    order = numpy_rng(seed, "folds", k).permutation(len(raters))
    fold = np.empty(len(raters), dtype=np.int64)
    fold[order] = np.arange(len(raters)) % k + 1
    return pd.DataFrame({"user": raters, "fold": fold})


def folds_text(folds: pd.DataFrame) -> str:
    return "user,fold\n" + "".join(f"{u},{int(f)}\n" for u, f in zip(folds["user"], folds["fold"]))


def read_folds(path: str | Path, data: RaterDataset) -> pd.DataFrame:
    """A fold file (CSV user,fold) or a folder of TestUserIDs_Fold<k>.txt lists, checked against `data`:
    every listed rater exists, nobody is in two folds. Raters of the dataset not listed stay in training."""
    path = Path(path)
    if path.is_dir():
        lists = sorted((int(m.group(1)), p) for p in path.iterdir() if (m := FOLD_LIST.match(p.name)))
        if not lists:
            raise DataError(str(path), "holds no TestUserIDs_Fold<k>.txt files")
        rows, where = [], []
        for k, p in lists:
            for i, line in enumerate(p.read_text(encoding="utf-8-sig").splitlines()):
                if line.strip():
                    rows.append((line.strip(), k))
                    where.append((p.name, i + 1))
        folds = pd.DataFrame(rows, columns=["user", "fold"])
    elif path.is_file():
        try:
            folds = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
        except (pd.errors.EmptyDataError, pd.errors.ParserError) as exc:
            raise DataError(str(path), f"cannot be read as a CSV user,fold ({str(exc).splitlines()[0] if str(exc) else 'empty'})") from None
        folds.columns = [c.strip() for c in folds.columns]
        for col in ("user", "fold"):
            if col not in folds.columns:
                raise DataError(str(path), f"missing column '{col}' (expected a CSV user,fold)", line=1)
        folds = pd.DataFrame({"user": folds["user"].str.strip(), "fold": folds["fold"].str.strip()})
        number = pd.to_numeric(folds["fold"], errors="coerce")
        bad = np.flatnonzero(~np.isfinite(number.to_numpy(np.float64)) | (number.to_numpy(np.float64) < 1) | (number.to_numpy(np.float64) % 1 != 0))
        if len(bad):
            raise DataError(str(path), f"expected a fold number 1, 2, ..., got {folds['fold'].iloc[bad[0]]!r}", line=int(bad[0]) + 2, field="fold")
        folds["fold"] = number.astype(np.int64)
        where = [(path.name, i + 2) for i in range(len(folds))]
    else:
        raise DataError(str(path), "not found (expected a fold file user,fold or a folder of TestUserIDs_Fold<k>.txt)")
    known = set(cv_raters(data))
    seen: dict[str, int] = {}
    for (user, _), (file, line) in zip(folds.itertuples(index=False), where):
        if user not in known:
            raise DataError(file, f"rater {user!r} is not a train or test rater of {data.name!r}", line=line, field="user")
        if user in seen:
            raise DataError(file, f"rater {user!r} is in two folds", line=line, field="user")
        seen[user] = line
    if folds["fold"].nunique() < 2:
        raise DataError(str(path), "names fewer than 2 folds")
    return folds.reset_index(drop=True)
