"""The jobs behind the CLI, as plain functions: train a run, evaluate it, adapt one rater."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Iterable

from piaa.errors import DataError, RunError
from piaa.protocol import Evaluation, evaluate
from piaa.registry import create_method
from piaa.runs import Run, load_run, resolve_data, runs_root, save_run
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
