"""The jobs behind the CLI, as plain functions: train a run, evaluate it, adapt one rater."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from piaa.errors import ConfigError, DataError, RunError
from piaa.method import Method
from piaa.protocol import Evaluation, evaluate
from piaa.registry import create_method
from piaa.runs import Run, load_run, resolve_data, runs_root, save_run
from piaa.tasks.format import BIG_FIVE, RaterDataset
from piaa.tasks.format import parse_big_five as _parse_big_five
from piaa.tasks.sampling import MIN_QUERY, eligible

# The best all-round method on the demo (best at 0 and 10 shots, close to the best at 100) and quick
# to train; see docs/results.md. Every command takes --method to choose another.
DEFAULT_METHOD = "pa-iaa"


def meta_train(
    method: str = DEFAULT_METHOD,
    data: str | os.PathLike | None = None,
    *,
    out: str | os.PathLike | None = None,
    seed: int = 0,
    overrides: list[str] | None = None,
    progress: bool = False,
    resume: bool = True,
) -> Path:
    """Fit `method` on the train raters of `data` (default: the demo) and save it as a run.

    Methods that checkpoint (the meta-learners) write to `checkpoint_dir_for(...)` while training; a
    later call with the same method, config, data and seed resumes from there (unless `resume` is
    False, which starts over). The checkpoints are removed once the run is saved.
    """
    model = create_method(method, overrides)
    dataset, ref = resolve_data(data)
    if out is not None and Path(out).exists() and any(Path(out).iterdir()):
        raise RunError(f"{out} already exists and is not empty (choose another --out or remove it)")
    checkpoints = checkpoint_dir_for(model.name, model.config.to_dict(), ref, seed, out)
    if not resume and checkpoints.exists():
        shutil.rmtree(checkpoints)
    model.fit(dataset.without("test"), seed=seed, progress=progress, checkpoint_dir=checkpoints)
    path = save_run(model, data_ref=ref, seed=seed, out=out)
    shutil.rmtree(checkpoints, ignore_errors=True)
    if checkpoints.parent.name == ".checkpoints" and checkpoints.parent.is_dir() and not any(checkpoints.parent.iterdir()):
        checkpoints.parent.rmdir()
    return path


def checkpoint_dir_for(method: str, config: dict, data_ref: str, seed: int, out: str | os.PathLike | None = None) -> Path:
    """Where an interrupted `meta_train` left its checkpoints: keyed by everything that shapes the run."""
    key = hashlib.sha256(json.dumps([method, config, data_ref, seed], sort_keys=True, default=str).encode()).hexdigest()[:12]
    if out is not None:
        out = Path(out)
        return out.parent / f".{out.name}.checkpoints-{key}"
    return runs_root() / ".checkpoints" / f"{method}-{key}"


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


def evaluate_job(
    *,
    run: Run | str | os.PathLike | None = None,
    method: str | None = None,
    data: str | os.PathLike | None = None,
    overrides: list[str] | None = None,
    shots: Iterable[int] = (10, 100),
    repeats: int = 10,
    seed: int = 0,
    progress: bool = False,
) -> tuple[Method, RaterDataset, Evaluation]:
    """What `piaa evaluate` does: the protocol over every test rater of a saved run (default the
    latest; `data` replaces its dataset) or, with `method`, of that method fitted first on the train
    raters of `data`. Returns the method, the dataset and the evaluation."""
    if method is not None:
        if run is not None:
            raise ConfigError("give either --run or --method, not both")
        dataset, _ = resolve_data(data)
        model = create_method(method, overrides)
        model.fit(dataset.without("test"), seed=seed, progress=progress)
        return model, dataset, evaluate(model, dataset, shots=shots, repeats=repeats, seed=seed, progress=progress)
    loaded = run if isinstance(run, Run) else load_run(run)
    dataset = resolve_data(data)[0] if data is not None else loaded.load_data()
    return loaded.method, dataset, evaluate_run(loaded, dataset, shots=shots, repeats=repeats, seed=seed, progress=progress)


def parse_big_five(text: str | Sequence[float]) -> np.ndarray:
    """'O,C,E,A,N' (or five numbers) → float32 [5], each in [-1, 1]; anything else is a ConfigError."""
    return _parse_big_five(text, error=lambda message: ConfigError(f"--big-five: {message}")).astype(np.float32)


def with_big_five(data: RaterDataset, user: str, big_five: Sequence[float]) -> RaterDataset:
    """The same dataset with `user`'s Big-Five replaced (what `piaa adapt --big-five` adapts with)."""
    users = data.users.copy()
    users.loc[users["user"] == str(user), list(BIG_FIVE)] = np.asarray(big_five, dtype=np.float64)
    return dataclasses.replace(data, users=users)


def adapt_user(
    run: Run | str | None, user: str, shots: int, *, repeats: int = 10, seed: int = 0, big_five: Sequence[float] | str | None = None
) -> Evaluation:
    """Adapt to one rater from `shots` of their images, `repeats` times, scoring the rest.

    `big_five` (O, C, E, A, N) overrides users.csv for methods that use it; with shots=0 it is all
    such a method adapts from.
    """
    run = run if isinstance(run, Run) else load_run(run)
    data = run.load_data()
    rater = data.rater(user)
    if len(rater) == 0:
        raise DataError("ratings.csv", f"user {user!r} has no ratings")
    if not eligible(rater, shots):
        raise DataError("ratings.csv", f"user {user!r} has {len(rater)} rated images; {shots} shots need at least {shots + MIN_QUERY}")
    method = run.method
    if big_five is not None:
        if not method.uses_big_five:
            raise ConfigError(f"--big-five: method {method.name!r} does not use Big-Five (try pa-iaa)")
        data = with_big_five(data, user, parse_big_five(big_five))
    elif shots == 0 and method.uses_big_five and rater.big_five is None:
        raise DataError(
            "users.csv", f"user {user!r} has no Big-Five; {method.name} at 0 shots predicts from Big-Five alone "
            "(give it with --big-five O,C,E,A,N, or use --shots > 0)", field="openness",
        )
    return evaluate_run(run, data, shots=[shots], repeats=repeats, seed=seed, users=[user])
