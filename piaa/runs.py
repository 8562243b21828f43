"""Run directories: a trained method that can be reloaded anywhere, without pickle.

```
runs/<method>-<YYYYmmdd-HHMMSS>/
  config.json          method name, resolved config, dataset reference, seed, versions, extra state
  weights.safetensors  the method's learned tensors
  train_log.jsonl      one JSON object per logged training step/epoch
runs/LATEST            name of the most recent run (so commands work without --run)
```
A run directory is written to a staging folder and renamed when complete, so an interrupted or
failed training never leaves a half-written run behind.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import piaa
from piaa.atomic import file_mode, staged_directory, write_json, write_text
from piaa.errors import DataError, PiaaError, RunError
from piaa.method import Method
from piaa.registry import method_class
from piaa.tasks.format import RaterDataset, read_dataset, read_json_object
from piaa.tasks.simulate import ensure_demo

CONFIG = "config.json"
WEIGHTS = "weights.safetensors"
LOG = "train_log.jsonl"
LATEST = "LATEST"
DEMO = "demo"


def runs_root() -> Path:
    """Where runs go by default: $PIAA_RUNS, else ./runs."""
    return Path(os.environ.get("PIAA_RUNS", "runs"))


def resolve_data(ref: str | os.PathLike | None, *, pixels: bool = False) -> tuple[RaterDataset, str]:
    """Load a dataset from a directory, or the embedded demo for None/'demo'. Returns (data, ref).

    `pixels`: the images as input rows instead of features.npy (methods trained end to end).
    """
    if ref is None or str(ref) == DEMO:
        return read_dataset(ensure_demo(), pixels=pixels), DEMO
    path = Path(ref).expanduser().resolve()
    return read_dataset(path, pixels=pixels), str(path)


@dataclass
class Run:
    path: Path
    method: Method
    data_ref: str
    seed: int
    info: dict[str, Any]
    _data: RaterDataset | None = field(default=None, repr=False, compare=False)

    def load_data(self) -> RaterDataset:
        """The run's dataset, read once per Run (adapting and its report both need it)."""
        if self._data is None:
            self._data = resolve_data(self.data_ref, pixels=self.method.uses_images)[0]
        return self._data


def save_run(method: Method, *, data_ref: str, seed: int, out: str | os.PathLike | None = None, extra: dict[str, Any] | None = None, overwrite: bool = False) -> Path:
    """Write a fitted method as a run directory and point LATEST at it. Returns the run path."""
    if out is None:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = runs_root() / f"{method.name}-{stamp}"
        suffix = 1
        while Path(out).exists():
            suffix += 1
            out = runs_root() / f"{method.name}-{stamp}-{suffix}"
    out = Path(out)
    info = {
        "piaa_version": piaa.__version__,
        "method": method.name,
        "config": method.config.to_dict(),
        "data": data_ref,
        "seed": seed,
        "created": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "extra_state": method.extra_state(),
        **(extra or {}),
    }
    from safetensors.torch import save_file

    with staged_directory(out, overwrite=overwrite) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in method.state_dict().items()}, str(tmp / WEIGHTS))
        os.chmod(tmp / WEIGHTS, file_mode())  # safetensors creates files 0600 whatever the umask
        write_text(tmp / LOG, "".join(json.dumps(entry) + "\n" for entry in method.fit_log))
        write_json(tmp / CONFIG, info)
    _point_latest(out)
    return out


def _point_latest(run: Path) -> None:
    """The most recent run is found from the default runs folder wherever it was written."""
    root = run.resolve().parent
    write_text(root / LATEST, run.name + "\n")
    default = runs_root().resolve()
    if default != root:
        write_text(default / LATEST, str(run.resolve()) + "\n")


def latest_run(root: str | os.PathLike | None = None) -> Path:
    root = Path(root) if root is not None else runs_root()
    pointer = root / LATEST
    if not pointer.is_file():
        raise RunError(f"no run found under {root}/ (train one first: piaa meta-train)")
    name = pointer.read_text(encoding="utf-8").strip()
    path = Path(name) if os.path.isabs(name) else root / name
    if not path.is_dir():
        raise RunError(f"{pointer} points to {path}, which no longer exists (pass --run or train again)")
    return path


def load_run(path: str | os.PathLike | None = None) -> Run:
    """Load a run directory (default: the latest run) into a ready-to-adapt method."""
    run = Path(path) if path is not None else latest_run()
    config_file = run / CONFIG
    if not config_file.is_file():
        raise RunError(f"{run} is not a run directory ({CONFIG} is missing)")
    info = _read_info(config_file)
    try:
        cls = method_class(info["method"])
        method = cls(cls.Config.from_dict(info["config"]))
    except PiaaError as exc:
        raise RunError(f"{config_file}: {exc}") from None
    weights = run / WEIGHTS
    if not weights.is_file():
        raise RunError(f"{run} has no {WEIGHTS}")
    try:
        if cls.loads_numpy_state:  # no torch import: numpy arrays, read the same way
            from safetensors.numpy import load_file
        else:
            from safetensors.torch import load_file
        state = load_file(str(weights))
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise RunError(f"{weights}: cannot be read ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    try:
        method.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunError(f"{weights}: does not match the {info['method']} configuration in {CONFIG} ({first})") from None
    try:
        method.load_extra_state(info["extra_state"])
    except (KeyError, ValueError, TypeError) as exc:
        raise RunError(f"{config_file}: damaged extra_state ({type(exc).__name__}: {exc})") from None
    return Run(path=run, method=method, data_ref=info["data"], seed=int(info["seed"]), info=info)


def _read_info(config_file: Path) -> dict[str, Any]:
    """A run's config.json, checked field by field so damage is reported against that file (not
    against whatever input meets the damaged value later, e.g. a user's ratings and the score range)."""
    try:
        info = read_json_object(config_file)
    except DataError as exc:
        raise RunError(str(exc)) from None
    expected = {"method": str, "config": dict, "data": str, "extra_state": dict, "seed": int}
    for key, kind in expected.items():
        value = info.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            got = "nothing" if key not in info else f"{type(value).__name__} {value!r}"[:80]
            raise RunError(f"{config_file}, field '{key}': expected a {kind.__name__}, got {got} (the run is damaged; train it again)")
    rng = info["extra_state"].get("score_range")
    ok = (
        isinstance(rng, list) and len(rng) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in rng)
        and rng[0] < rng[1]
    )
    if not ok:
        raise RunError(f"{config_file}, field 'extra_state.score_range': expected [lo, hi] with lo < hi, got {rng!r} (the run is damaged; train it again)")
    dim = info["extra_state"].get("feature_dim")
    if dim is not None and (not isinstance(dim, int) or isinstance(dim, bool) or dim < 1):
        raise RunError(f"{config_file}, field 'extra_state.feature_dim': expected a positive integer, got {dim!r}")
    return info
