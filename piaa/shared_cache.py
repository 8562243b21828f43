"""Cached trunk outputs: `Method.shared_representation` of a feature file, computed once per run.

Scoring a million images for one user through a whole network costs seconds of matrix products;
most methods' user models are a small per-user part on a user-independent trunk (the generic
network, the PA-IAA design, the learned prior's φ). The trunk's outputs are computed once per
(run, feature file) and kept as a plain .npy next to the run, so each further user costs only the
small part:

```
<run>/shared/<model id>-<sha256 of the feature file, 24 hex>.npy   float64 [n, k]
<run>/shared/hashes.json   {path: {size, mtime_ns, sha256}}: a file is hashed again only when it changed
```
The key is the feature file's content, so a changed or replaced file is never scored from stale
outputs; a run directory that cannot be written just means no cache (scores are the same).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from piaa.atomic import file_mode, write_json

FOLDER = "shared"
HASHES = "hashes.json"


def content_sha256(path: Path, memo: Path | None = None) -> str:
    """sha256 of a file's bytes, remembered in `memo` by (size, mtime_ns) so an unchanged large
    file is not read again."""
    path = path.resolve()
    stat = path.stat()
    key = str(path)
    known: dict = {}
    if memo is not None and memo.is_file():
        try:
            known = json.loads(memo.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            known = {}
        if not isinstance(known, dict):
            known = {}
        entry = known.get(key)
        if isinstance(entry, dict) and entry.get("size") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns:
            digest = entry.get("sha256")
            if isinstance(digest, str) and len(digest) == 64:
                return digest
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    value = digest.hexdigest()
    if memo is not None:
        known[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": value}
        try:
            write_json(memo, known)
        except OSError:
            pass
    return value


def compute_shared(method, x: np.ndarray, chunk: int, check: Callable[[np.ndarray, int], np.ndarray], out: np.ndarray | None = None) -> np.ndarray | None:
    """`method.shared_representation` of `x` block by block (each block checked by `check(block,
    offset)`), into `out` if given; None when the method has no shared trunk."""
    if len(x) == 0:
        return None
    for start in range(0, len(x), chunk):
        block = method.shared_representation(check(x[start : start + chunk], start))
        if block is None:
            return None
        block = np.asarray(block, dtype=np.float64).reshape(len(block), -1)
        if out is None:
            out = np.empty((len(x), block.shape[1]), dtype=np.float64)
        out[start : start + len(block)] = block
    return out


def cached_shared(method, model_id: str, run_dir: Path, features_file: Path, x: np.ndarray, *, chunk: int, check: Callable[[np.ndarray, int], np.ndarray]) -> np.ndarray | None:
    """The trunk outputs of the rows `x` read from `features_file`: from `<run>/shared/` when they
    were computed before for this model and these file contents, else computed and stored there.
    None when the method has no shared trunk (score with `predict`)."""
    probe = method.shared_representation(check(x[:1], 0)) if len(x) else None
    if probe is None:
        return None
    folder = Path(run_dir) / FOLDER
    try:
        folder.mkdir(exist_ok=True)
        digest = content_sha256(Path(features_file), folder / HASHES)
    except OSError:
        return compute_shared(method, x, chunk, check)
    target = folder / f"{model_id}-{digest[:24]}.npy"
    if target.is_file():
        try:
            shared = np.load(target, mmap_mode="r", allow_pickle=False)
            if shared.ndim == 2 and len(shared) == len(x) and shared.dtype == np.float64:
                return shared
        except (OSError, ValueError):
            pass  # damaged: computed again below
    width = np.asarray(probe).reshape(1, -1).shape[1]
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
        os.close(fd)
    except OSError:
        return compute_shared(method, x, chunk, check)
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float64, shape=(len(x), width))
        compute_shared(method, x, chunk, check, out=out)
        out.flush()
        del out
        os.chmod(tmp, file_mode())
        os.replace(tmp, target)
    except OSError:
        Path(tmp).unlink(missing_ok=True)
        return compute_shared(method, x, chunk, check)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return np.load(target, mmap_mode="r", allow_pickle=False)
