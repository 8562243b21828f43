"""The jobs behind the CLI, as plain functions: train a run, evaluate it, adapt one rater."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from piaa.errors import DataError, RunError
from piaa.protocol import Evaluation, evaluate
from piaa.registry import create_method
from piaa.runs import Run, load_run, resolve_data, save_run
from piaa.tasks.format import RaterDataset
from piaa.tasks.sampling import eligible

DEFAULT_METHOD = "ridge"


def meta_train(
    method: str = DEFAULT_METHOD,
    data: str | os.PathLike | None = None,
    *,
    out: str | os.PathLike | None = None,
    seed: int = 0,
    overrides: list[str] | None = None,
    progress: bool = False,
) -> Path:
    """Fit `method` on the train raters of `data` (default: the demo) and save it as a run."""
    model = create_method(method, overrides)
    dataset, ref = resolve_data(data)
    if out is not None and Path(out).exists() and any(Path(out).iterdir()):
        raise RunError(f"{out} already exists and is not empty (choose another --out or remove it)")
    model.fit(dataset.without("test"), seed=seed, progress=progress)
    return save_run(model, data_ref=ref, seed=seed, out=out)


def evaluate_run(
    run: Run,
    data: RaterDataset | None = None,
    *,
    shots: Iterable[int] = (10, 100),
    repeats: int = 10,
    seed: int = 0,
    users: Iterable[str] | None = None,
    progress: bool = False,
) -> Evaluation:
    dataset = data if data is not None else run.load_data()
    result = evaluate(run.method, dataset, shots=shots, repeats=repeats, seed=seed, users=users, progress=progress)
    result.meta["run"] = run.path.name
    return result


def adapt_user(run: Run | str | None, user: str, shots: int, *, repeats: int = 10, seed: int = 0) -> Evaluation:
    """Adapt to one rater from `shots` of their images, `repeats` times, scoring the rest."""
    run = run if isinstance(run, Run) else load_run(run)
    data = run.load_data()
    rater = data.rater(user)
    if len(rater) == 0:
        raise DataError("ratings.csv", f"user {user!r} has no ratings")
    if not eligible(rater, shots):
        raise DataError("ratings.csv", f"user {user!r} has {len(rater)} rated images; {shots} shots need at least {shots + 10}")
    return evaluate_run(run, data, shots=[shots], repeats=repeats, seed=seed, users=[user])
