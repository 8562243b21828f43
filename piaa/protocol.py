"""The few-shot protocol: SROCC at k shots, averaged per rater over repeats, then over raters.

For each test rater and each k: draw k of the rater's images as support (seeded by seed, user, k and
repeat), adapt, predict all the rater's other images and score the ranking. Raters with fewer than
k + 10 images are skipped and counted. k = 0 uses no rated images (the prior, or the rater's Big-Five
where a method uses it) and needs one repeat only, because there is nothing to draw. A method that
uses Big-Five (`uses_big_five`) has nothing to go on at k = 0 for a rater whose Big-Five is unknown:
such raters are skipped at k = 0 and listed in `no_big_five`.
"""

from __future__ import annotations

import math
import traceback
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import pandas as pd

from piaa.method import Method
from piaa.metrics import plcc, srocc
from piaa.errors import ConfigError
from piaa.progress import progress_bar
from piaa.seeding import derive_seed
from piaa.tasks.format import RaterDataset
from piaa.tasks.sampling import MIN_QUERY, draw_support, eligible
from piaa.threads import single_threaded

ROW_COLUMNS = ["user", "shots", "repeat", "n_support", "n_query", "srocc", "plcc", "error"]


@dataclass
class Evaluation:
    """Tidy results: one row per (user, shots, repeat); `summary` is a group-by of `rows`."""

    rows: pd.DataFrame
    skipped: dict[int, list[str]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    no_big_five: dict[int, list[str]] = field(default_factory=dict)  # skipped at 0 shots: Big-Five unknown

    @property
    def per_rater(self) -> pd.DataFrame:
        """Mean over repeats for each (shots, user), ignoring repeats whose SROCC is undefined."""
        ok = self.rows[self.rows["error"].isna()]
        return ok.groupby(["shots", "user"], sort=True)[["srocc", "plcc"]].mean().reset_index()

    @property
    def summary(self) -> pd.DataFrame:
        out = []
        per_rater = self.per_rater
        settings = set(self.rows["shots"].unique()) | {k for k, v in self.no_big_five.items() if v}
        for shots in sorted(int(k) for k in settings):
            rows = self.rows[self.rows["shots"] == shots]
            rater = per_rater[per_rater["shots"] == shots]
            defined = rater.dropna(subset=["srocc"])
            out.append({
                "shots": int(shots),
                "srocc_mean": _num(defined["srocc"].mean()),
                "srocc_std": _num(defined["srocc"].std(ddof=0)),
                "plcc_mean": _num(defined["plcc"].mean()),
                "n_users": int(len(defined)),
                "n_skipped": len(self.skipped.get(int(shots), [])),
                "n_undefined": int((rows["srocc"].isna() & rows["error"].isna()).sum()),
                "n_failed": int(rows.loc[rows["error"].notna(), "user"].nunique()),
                "n_no_big_five": len(self.no_big_five.get(int(shots), [])),
            })
        return pd.DataFrame(out)

    def failures(self) -> pd.DataFrame:
        return self.rows[self.rows["error"].notna()][["user", "shots", "repeat", "error"]]

    def to_json(self) -> dict[str, Any]:
        """The CLI's --json schema: rows of {user, shots, repeat, srocc, plcc} and per-shot summary."""
        rows = [
            {"user": r.user, "shots": int(r.shots), "repeat": int(r.repeat), "srocc": _num(r.srocc), "plcc": _num(r.plcc)}
            for r in self.rows.itertuples(index=False)
        ]
        summary = self.summary.to_dict(orient="records")
        for s in summary:
            for key, value in s.items():
                s[key] = None if value is None else _num(value) if isinstance(value, float) else int(value)
        out = {"rows": rows, "summary": summary, "skipped": {str(k): v for k, v in sorted(self.skipped.items())}, **self.meta}
        if any(self.no_big_five.values()):
            out["no_big_five"] = {str(k): v for k, v in sorted(self.no_big_five.items()) if v}
        return out


def _num(value: float) -> float | None:
    value = float(value)
    return None if math.isnan(value) else round(value, 6)


def evaluate(
    method: Method,
    data: RaterDataset,
    *,
    shots: Iterable[int] = (10, 100),
    repeats: int = 10,
    seed: int = 0,
    users: Iterable[str] | None = None,
    split: str = "test",
    use_big_five: bool = True,
    progress: bool = False,
) -> Evaluation:
    """Run the protocol for a fitted `method` on `data`'s `split` raters (or the given `users`)."""
    shots = sorted({int(k) for k in shots})
    if any(k < 0 for k in shots):
        raise ConfigError(f"--shots must be >= 0, got {min(shots)}")
    if int(repeats) < 1:
        raise ConfigError(f"--repeats must be at least 1, got {repeats}")
    raters = [data.rater(u) for u in users] if users is not None else data.raters(split)
    rows: list[dict[str, Any]] = []
    skipped: dict[int, list[str]] = {k: [] for k in shots}
    no_big_five: dict[int, list[str]] = {k: [] for k in shots if k == 0}
    total = sum(1 if k == 0 else repeats for k in shots) * len(raters)
    with single_threaded(), progress_bar(f"evaluating {method.name}", total=total, enabled=progress) as advance:
        for rater in raters:
            x_all = np.asarray(data.features[rater.image_index], dtype=np.float32)
            big_five = rater.big_five if use_big_five else None
            for k in shots:
                n_rep = 1 if k == 0 else repeats
                if not eligible(rater, k):
                    skipped[k].append(rater.user)
                    advance(n_rep)
                    continue
                if k == 0 and big_five is None and getattr(method, "uses_big_five", False):
                    no_big_five[k].append(rater.user)
                    advance(n_rep)
                    continue
                for repeat in range(n_rep):
                    support, query = draw_support(len(rater), k, seed=seed, user=rater.user, repeat=repeat)
                    rows.append(_episode(method, rater.user, k, repeat, x_all, rater.scores, support, query, big_five, seed))
                    advance(1)
    frame = pd.DataFrame(rows, columns=ROW_COLUMNS)
    frame["error"] = frame["error"].astype(object)
    return Evaluation(
        rows=frame, skipped={k: v for k, v in skipped.items()}, meta={"method": method.name, "seed": seed, "repeats": repeats},
        no_big_five=no_big_five,
    )


def _episode(method: Method, user: str, k: int, repeat: int, x_all, y_all, support, query, big_five, seed: int) -> dict[str, Any]:
    row = {"user": user, "shots": k, "repeat": repeat, "n_support": len(support), "n_query": len(query), "error": None}
    try:
        model = method.adapt(x_all[support], y_all[support], big_five=big_five, seed=derive_seed(seed, "adapt", user, k, repeat))
        pred = np.asarray(model.predict(x_all[query]), dtype=np.float64)
        if pred.shape != (len(query),) or not np.isfinite(pred).all():
            raise ValueError(f"predictions must be {len(query)} finite numbers, got shape {pred.shape}")
        row.update(srocc=srocc(pred, y_all[query]), plcc=plcc(pred, y_all[query]))
    except Exception as exc:  # one rater's failure must not lose the others' results
        last = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        where = f" ({last.filename.rsplit('/', 1)[-1]}:{last.lineno})" if last else ""
        row.update(srocc=float("nan"), plcc=float("nan"), error=f"{type(exc).__name__}: {exc}{where}")
    return row


__all__ = ["Evaluation", "evaluate", "MIN_QUERY"]
