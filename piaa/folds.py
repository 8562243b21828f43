"""k-fold rater cross-validation: every rater is a test rater once, the method is refitted per fold.

PARA and LAPIS results are commonly reported as the mean over 4 folds of raters. For fold f, the
raters assigned to f are the test raters and all other train/test raters train the method (personality
raters always train); the protocol runs on fold f's raters. Results keep one row per (fold, user,
shots, repeat); the summary is per fold and the mean (± std) of the fold means.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import pandas as pd

from piaa.method import Method
from piaa.protocol import Evaluation, _num, evaluate
from piaa.tasks.format import RaterDataset
from piaa.tasks.splits import cv_raters


@dataclass
class CrossValidation:
    folds: pd.DataFrame  # user, fold: the assignment used
    evaluations: dict[int, Evaluation]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def rows(self) -> pd.DataFrame:
        return pd.concat([e.rows.assign(fold=f) for f, e in sorted(self.evaluations.items())], ignore_index=True)

    @property
    def per_fold(self) -> pd.DataFrame:
        return pd.concat([e.summary.assign(fold=f) for f, e in sorted(self.evaluations.items())], ignore_index=True)

    @property
    def summary(self) -> pd.DataFrame:
        """Per shot setting: mean and std over folds of the folds' mean SROCC/PLCC, raters summed."""
        per = self.per_fold
        out = []
        for shots, group in per.groupby("shots", sort=True):
            out.append({
                "shots": int(shots),
                "srocc_mean": float(group["srocc_mean"].mean()),
                "srocc_std": float(group["srocc_mean"].std(ddof=0)),
                "plcc_mean": float(group["plcc_mean"].mean()),
                "n_users": int(group["n_users"].sum()),
                "n_folds": int(group["srocc_mean"].notna().sum()),
                **{k: int(group[k].sum()) for k in ("n_skipped", "n_undefined", "n_failed", "n_no_big_five")},
            })
        return pd.DataFrame(out)

    def to_json(self) -> dict[str, Any]:
        """--json with --folds: rows gain "fold"; "summary" is the mean over folds; "per_fold" each fold's."""

        def clean(records: list[dict]) -> list[dict]:
            return [{k: _num(v) if isinstance(v, float) else int(v) for k, v in r.items()} for r in records]

        rows = [
            {"fold": int(r.fold), "user": r.user, "shots": int(r.shots), "repeat": int(r.repeat), "srocc": _num(r.srocc), "plcc": _num(r.plcc)}
            for r in self.rows.itertuples(index=False)
        ]
        return {"rows": rows, "summary": clean(self.summary.to_dict("records")), "per_fold": clean(self.per_fold.to_dict("records")), **self.meta}


def cross_validate(
    make_method: Callable[[], Method],
    data: RaterDataset,
    folds: pd.DataFrame,
    *,
    shots: Iterable[int] = (10, 100),
    repeats: int = 10,
    seed: int = 0,
    progress: bool = False,
) -> CrossValidation:
    """Fit a fresh method per fold on the other folds' raters and evaluate it on the fold's raters."""
    shots = list(shots)
    fold_of = dict(zip(folds["user"].astype(str), folds["fold"].astype(int)))
    evaluations: dict[int, Evaluation] = {}
    for f in sorted(set(fold_of.values())):
        splits = dict.fromkeys(cv_raters(data), "train")  # raters missing from the fold table always train
        splits.update({u: ("test" if k == f else "train") for u, k in fold_of.items()})
        fold_data = data.with_splits(splits)
        method = make_method()
        method.fit(fold_data.without("test"), seed=seed, progress=progress)
        evaluations[f] = evaluate(method, fold_data, shots=shots, repeats=repeats, seed=seed, progress=progress)
    name = evaluations[min(evaluations)].meta.get("method") if evaluations else None
    return CrossValidation(folds=folds, evaluations=evaluations, meta={"method": name, "seed": seed, "repeats": repeats, "n_folds": len(evaluations)})
