"""The jobs behind the CLI, as plain functions: train a run, evaluate it, adapt one rater."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from piaa import distributed
from piaa.errors import ConfigError, DataError, PiaaError, RunError
from piaa.method import Method
from piaa.protocol import Evaluation, evaluate
from piaa.registry import create_method
from piaa.runs import Run, load_run, resolve_data, runs_root, save_run
from piaa.tasks.format import BIG_FIVE, RaterDataset
from piaa.tasks.format import parse_big_five as _parse_big_five
from piaa.tasks.sampling import MIN_QUERY, eligible
from piaa.threads import job_threads

# The best all-round method on the demo (best at 0 and 10 shots, tied-best at 100 with task-vector),
# adapting in milliseconds; see docs/results.md. Every command takes --method to choose another.
DEFAULT_METHOD = "learned-prior"


def meta_train(
    method: str = DEFAULT_METHOD,
    data: str | os.PathLike | None = None,
    *,
    out: str | os.PathLike | None = None,
    seed: int = 0,
    overrides: list[str] | None = None,
    progress: bool = False,
    resume: bool = True,
    force: bool = False,
    threads: int = 1,
    device: str | None = None,
) -> Path:
    """Fit `method` on the train raters of `data` (default: the demo) and save it as a run.

    Methods that checkpoint (the meta-learners) write to `checkpoint_dir_for(...)` while training; a
    later call with the same method, config, data and seed resumes from there (unless `resume` is
    False, which starts over). The checkpoints are removed once the run is saved. An existing
    non-empty `out` is refused unless `force`; two calls writing to one `out` at once: the second
    fails at once with a RunError. Training runs on `threads` threads (default one: piaa's networks
    are small, and on a busy machine extra threads only wait for each other). Under torchrun the
    methods that support it split their training over the processes; rank 0 alone writes.
    """
    if device is not None:  # --device: shorthand for --set device=..., for methods trained end to end
        from piaa.registry import method_class

        if "device" not in {f.name for f in dataclasses.fields(method_class(method).Config)}:
            raise ConfigError(f"--device: {method} trains on features on the CPU; --device is for methods trained end to end (e.g. blg-piaa --set backbone=small-cnn)")
        overrides = [*(overrides or []), f"device={device}"]
    model = create_method(method, overrides)
    with distributed.session() as group:
        if group.active and not model.supports_distributed:
            raise ConfigError(f"{model.name} trains in one process; run it without torchrun (distributed: {', '.join(distributed_methods())})")
        if not group.is_main:
            distributed.barrier(group)  # rank 0 may write the demo dataset first
        dataset, ref = resolve_data(data, pixels=model.uses_images)
        if group.is_main:
            distributed.barrier(group)
        with _exclusive(out) if group.is_main else contextlib.nullcontext():
            if out is not None and Path(out).exists():
                if not Path(out).is_dir():
                    raise RunError(f"--out {out} is a file; expected a directory for the run (choose another --out)")
                if any(Path(out).iterdir()):
                    if not force:
                        raise RunError(f"{out} already exists and is not empty (choose another --out, or --force to replace it)")
            checkpoints = checkpoint_dir_for(model.name, model.config.to_dict(), ref, seed, out, content=data_content_hash(dataset))
            distributed.barrier(group)  # every rank has checked --out before rank 0 may change anything
            if not resume and checkpoints.exists() and group.is_main:
                shutil.rmtree(checkpoints)
            distributed.barrier(group)
            with job_threads(threads):
                model.fit(dataset.without("test"), seed=seed, progress=progress and group.is_main, checkpoint_dir=checkpoints)
            path = save_run(model, data_ref=ref, seed=seed, out=out, overwrite=force) if group.is_main else None
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


@contextlib.contextmanager
def _exclusive(out: str | os.PathLike | None) -> Iterator[None]:
    """Hold an exclusive lock for `out` while training into it: a second `meta_train` to the same
    `out` fails at once, saying so, instead of both training and one result being lost."""
    if out is None:
        yield
        return
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = out.parent / f".{out.name}.lock"
    with open(lock, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunError(f"another meta-train is writing to {out} right now; this one stopped (wait for it, or choose another --out)") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def data_content_hash(data: RaterDataset) -> str:
    """SHA-256 of what training reads (ratings, users, images, likes, features, score range), so a
    checkpoint is resumed only on exactly the same data, whatever the directory or name."""
    digest = hashlib.sha256()
    digest.update(json.dumps([data.score_range, list(data.features.shape), str(data.features.dtype)]).encode())
    fingerprint_rows = getattr(data.features, "fingerprint", None)
    if fingerprint_rows is not None:  # images: their files' sizes and times, not every decoded pixel
        digest.update(fingerprint_rows().encode("utf-8"))
        features = data.features[:0]
    else:
        features = data.features
    for frame in (data.ratings[["user", "image", "score"]], data.users, data.likes):
        if frame is not None:
            digest.update(frame.to_csv(index=False).encode("utf-8"))
    digest.update("\n".join(map(str, data.images)).encode("utf-8"))
    step = max(1, 2**24 // max(1, features.shape[1] * features.dtype.itemsize))
    for start in range(0, features.shape[0], step):
        digest.update(np.ascontiguousarray(features[start : start + step]).tobytes())
    return digest.hexdigest()


def checkpoint_dir_for(method: str, config: dict, data_ref: str, seed: int, out: str | os.PathLike | None = None, *, content: str = "") -> Path:
    """Where an interrupted `meta_train` left its checkpoints: keyed by everything that shapes the run,
    including the data's content (`data_content_hash`), so changed data starts over instead of
    resuming a checkpoint trained on other ratings."""
    key = hashlib.sha256(json.dumps([method, config, data_ref, seed, content], sort_keys=True, default=str).encode()).hexdigest()[:12]
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
    dataset, loaded, fresh = _job_input(run, method, data, overrides)
    if loaded is None:
        model = fresh
        model.fit(dataset.without("test"), seed=seed, progress=progress)
        return model, dataset, evaluate(model, dataset, shots=shots, repeats=repeats, seed=seed, progress=progress)
    return loaded.method, dataset, evaluate_run(loaded, dataset, shots=shots, repeats=repeats, seed=seed, progress=progress)


def _job_input(
    run: Run | str | os.PathLike | None, method: str | None, data: str | os.PathLike | None, overrides: list[str] | None = None
) -> tuple[RaterDataset, Run | None, Method | None]:
    """(dataset, saved run, fresh method): with `method`, an unfitted instance of it and no run;
    otherwise the saved run (default the latest) and no fresh method. `data` replaces the run's
    dataset. A method that trains on images reads the dataset's pixel rows. A bad method name or
    override fails here, before any fitting."""
    if method is not None:
        if run is not None:
            raise ConfigError("give either --run or --method, not both")
        fresh = create_method(method, overrides)
        return resolve_data(data, pixels=fresh.uses_images)[0], None, fresh
    loaded = run if isinstance(run, Run) else load_run(run)
    return (resolve_data(data, pixels=loaded.method.uses_images)[0] if data is not None else loaded.load_data()), loaded, None


def cross_validation_job(
    *,
    folds: int | None,
    fold_file: str | os.PathLike | None = None,
    run: Run | str | os.PathLike | None = None,
    method: str | None = None,
    data: str | os.PathLike | None = None,
    overrides: list[str] | None = None,
    shots: Iterable[int] = (10, 100),
    repeats: int = 10,
    seed: int = 0,
    progress: bool = False,
):
    """What `piaa evaluate --folds K` does: k-fold rater cross-validation of `method` (or of a run's
    method and configuration, refitted per fold) on `data`. The fold assignment is read from
    `fold_file` when it exists; otherwise it is drawn with `seed` and written there (default
    ./folds-k<K>-seed<S>.csv), so it can be published and reused. Returns (CrossValidation, dataset,
    fold file path, whether the file was written now)."""
    from piaa.atomic import write_text
    from piaa.folds import cross_validate
    from piaa.tasks.splits import assign_folds, folds_text, read_folds

    if method is None and overrides:
        raise ConfigError("--set needs --method (a run's configuration is used as saved)")
    dataset, loaded, fresh = _job_input(run, method, data, overrides)
    template = fresh if loaded is None else loaded.method  # refitted per fold with its configuration

    def make() -> Method:
        return type(template)(template.config)

    path = Path(fold_file) if fold_file is not None else None
    if path is not None and path.exists():
        table = read_folds(path, dataset)
        if folds is not None and table["fold"].nunique() != folds:
            raise ConfigError(f"--folds {folds} but {path} assigns raters to {table['fold'].nunique()} folds")
        written = False
    else:
        if folds is None:
            raise ConfigError("give --folds K (or an existing --fold-file)")
        table = assign_folds(dataset, folds, seed=seed)
        text = folds_text(table)
        if path is None:
            path = Path(f"folds-k{folds}-seed{seed}.csv")
            if path.exists() and path.read_text(encoding="utf-8") != text:
                raise ConfigError(f"{path} exists with a different fold assignment; pass --fold-file {path} to reuse it or --fold-file NEW.csv")
        written = not path.exists()
        if written:
            write_text(path, text)
    result = cross_validate(make, dataset, table, shots=shots, repeats=repeats, seed=seed, progress=progress)
    result.meta["fold_file"] = str(path)
    return result, dataset, path, written


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


def adapt_context(run: Run, user: str) -> dict:
    """What makes one rater's SROCC readable: which run and method answered, the rater's split (a
    train rater was seen in training, so its number is optimistic), the generic prior's SROCC on the
    same rater (the method with no ratings and no Big-Five, scored on all their images) and, for the
    simulated demo, its ceilings from the ground truth (dataset.json)."""
    from piaa.metrics import srocc

    data = run.load_data()
    rater = data.rater(user)
    generic = None
    try:
        x = np.asarray(data.features[rater.image_index], dtype=np.float32)
        prior = run.method.adapt(np.zeros((0, x.shape[1]), np.float32), np.zeros(0, np.float32), big_five=None, seed=0)
        generic = float(srocc(prior.predict(x), rater.scores))
    except (PiaaError, ValueError, RuntimeError):  # a method that cannot predict without ratings or Big-Five
        generic = None
    truth = data.meta.get("ground_truth") if isinstance(data.meta.get("ground_truth"), dict) else None
    return {
        "run": str(run.path), "method": run.info["method"], "data": run.data_ref, "split": rater.split,
        "n_images": len(rater), "generic_srocc": generic, "ceilings": truth,
        "test_raters": data.users_in("test")[:5],
    }


def training_summary(run: Run) -> dict:
    """What a run was trained on, in numbers: raters per split, ratings, and config fields changed
    from the method's defaults (what `piaa meta-train` prints instead of a config dump)."""
    data = run.load_data()
    train = data.users_in("train")
    defaults = type(run.method.config)().to_dict()
    changed = {k: v for k, v in run.method.config.to_dict().items() if defaults.get(k) != v}
    return {
        "method": run.info["method"], "data": run.data_ref, "dataset": data.name, "seed": run.seed,
        "train_raters": len(train), "train_ratings": int(data.ratings["user"].isin(set(train)).sum()),
        "personality_raters": len(data.users_in("personality")), "test_raters": len(data.users_in("test")),
        "changed_config": changed,
    }
