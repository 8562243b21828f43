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

from piaa import distributed
from piaa.errors import ConfigError, DataError, RunError
from piaa.method import Method
from piaa.protocol import Evaluation, evaluate
from piaa.registry import create_method
from piaa.runs import Run, load_run, resolve_data, runs_root, save_run
from piaa.tasks.format import BIG_FIVE, RaterDataset
from piaa.tasks.sampling import eligible

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
    device: str | None = None,
) -> Path:
    """Fit `method` on the train raters of `data` (default: the demo) and save it as a run.

    Methods that checkpoint (the meta-learners) write to `checkpoint_dir_for(...)` while training; a
    later call with the same method, config, data and seed resumes from there (unless `resume` is
    False, which starts over). The checkpoints are removed once the run is saved. Under torchrun
    the methods that support it split their training over the processes; rank 0 writes the run.
    """
    if device is not None:  # --device: shorthand for --set device=..., for methods trained end to end
        from piaa.registry import method_class

        if "device" not in {f.name for f in dataclasses.fields(method_class(method).Config)}:
            raise ConfigError(f"--device: {method} trains on features on the CPU; --device is for methods trained end to end (e.g. blg-piaa --set backbone=small-cnn)")
        overrides = [*(overrides or []), f"device={device}"]
    model = create_method(method, overrides)
    # Under torchrun every rank trains on its share of each meta-batch; rank 0 alone writes.
    with distributed.session() as group:
        if group.active and not model.supports_distributed:
            raise ConfigError(f"{model.name} trains in one process; run it without torchrun (distributed: {', '.join(distributed_methods())})")
        if not group.is_main:
            distributed.barrier(group)  # rank 0 may write the demo dataset first
        dataset, ref = resolve_data(data, pixels=model.uses_images)
        if group.is_main:
            distributed.barrier(group)
        if out is not None and Path(out).exists() and any(Path(out).iterdir()):
            raise RunError(f"{out} already exists and is not empty (choose another --out or remove it)")
        checkpoints = checkpoint_dir_for(model.name, model.config.to_dict(), ref, seed, out)
        distributed.barrier(group)  # every rank has checked --out before rank 0 may create anything
        if not resume and checkpoints.exists() and group.is_main:
            shutil.rmtree(checkpoints)
        distributed.barrier(group)
        model.fit(dataset.without("test"), seed=seed, progress=progress and group.is_main, checkpoint_dir=checkpoints)
        path = save_run(model, data_ref=ref, seed=seed, out=out) if group.is_main else None
        path = Path(distributed.broadcast_text(str(path) if path is not None else None, group))
        if group.is_main:
            shutil.rmtree(checkpoints, ignore_errors=True)
            if checkpoints.parent.name == ".checkpoints" and checkpoints.parent.is_dir() and not any(checkpoints.parent.iterdir()):
                checkpoints.parent.rmdir()
    return path


def distributed_methods() -> list[str]:
    """Methods whose training splits over torchrun's processes."""
    from piaa.registry import list_methods

    return [name for name, cls in list_methods().items() if cls.supports_distributed]


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
        model = create_method(method, overrides)
        dataset, _ = resolve_data(data, pixels=model.uses_images)
        model.fit(dataset.without("test"), seed=seed, progress=progress)
        return model, dataset, evaluate(model, dataset, shots=shots, repeats=repeats, seed=seed, progress=progress)
    loaded = run if isinstance(run, Run) else load_run(run)
    dataset = resolve_data(data, pixels=loaded.method.uses_images)[0] if data is not None else loaded.load_data()
    return loaded.method, dataset, evaluate_run(loaded, dataset, shots=shots, repeats=repeats, seed=seed, progress=progress)


def parse_big_five(text: str | Sequence[float]) -> np.ndarray:
    """'O,C,E,A,N' (or five numbers) → float32 [5], each in [-1, 1]; anything else is a ConfigError."""
    items = [v.strip() for v in text.split(",")] if isinstance(text, str) else list(text)
    if len(items) != 5:
        raise ConfigError(f"--big-five expects 5 comma-separated numbers O,C,E,A,N in [-1, 1], got {len(items)}: {text!r}")
    try:
        values = np.array([float(v) for v in items], dtype=np.float64)
    except ValueError:
        raise ConfigError(f"--big-five expects numbers O,C,E,A,N in [-1, 1], got {text!r}") from None
    bad = np.flatnonzero(~np.isfinite(values) | (np.abs(values) > 1))
    if len(bad):
        raise ConfigError(f"--big-five: {BIG_FIVE[bad[0]]} is {values[bad[0]]}, expected a number in [-1, 1]")
    return values.astype(np.float32)


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
        raise DataError("ratings.csv", f"user {user!r} has {len(rater)} rated images; {shots} shots need at least {shots + 10}")
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
