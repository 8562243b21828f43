"""`piaa features extract`: images → a feature store, batched, resumable, never silently lossy.

While running, finished work is committed in shards under `OUT/.partial/`:
`shard-NNNNNN.npy` (features), `shard-NNNNNN.failed.csv` (unreadable images) and, written last
and atomically, `shard-NNNNNN.csv` (the images of the shard). A shard without its `.csv` was cut
off and is discarded; everything else is reused, so a killed run continues where it stopped. At the
end the shards are assembled into the store (see `piaa.tasks.feature_store`), `manifest.json`
last, and `.partial/` is removed.
"""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

import piaa
from piaa import distributed
from piaa.atomic import file_mode, write_json, write_text
from piaa.errors import ConfigError, DataError
from piaa.features.registry import Backbone, create_backbone
from piaa.progress import progress_bar
from piaa.tasks.feature_store import FAILED, FEATURES, IMAGES, MANIFEST, STORE_FORMAT

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
PARTIAL = ".partial"
STATE = "state.json"
# What PIL raises for files that are not images, truncated or corrupt. Anything else is a bug and propagates.
_UNREADABLE = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


@dataclass(frozen=True)
class ExtractionResult:
    path: Path
    backbone: str
    dim: int
    n_images: int  # with features in the store
    n_computed: int  # in this run
    n_reused: int  # from an earlier, interrupted run
    n_failed: int  # unreadable, listed in failed.csv


def list_images(root: str | Path) -> list[str]:
    """Image files under `root` (recursive), as sorted relative POSIX paths."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(str(root), "is not a directory of images")
    found = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    found = [f for f in found if not any(part.startswith(".") for part in Path(f).parts)]
    if not found:
        raise DataError(str(root), f"holds no image files (looked for {', '.join(sorted(IMAGE_SUFFIXES))}, recursively)")
    return sorted(found)


def _read_image(path: Path, backbone: Backbone) -> tuple[Any, str | None]:
    try:
        with Image.open(path) as image:
            return backbone.prepare(image), None
    except _UNREADABLE as exc:
        message = str(exc).splitlines()[0] if str(exc) else ""
        return None, f"{type(exc).__name__}: {message}".strip()


class _Shards:
    """The committed shards of an unfinished extraction."""

    def __init__(self, folder: Path, *, clean: bool = True, rank: int = 0, world_size: int = 1):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        for npy in folder.glob("shard-*.npy") if clean else ():  # cut off before its .csv was committed
            if not npy.with_suffix(".csv").exists():
                npy.unlink()
                npy.with_suffix(".failed.csv").unlink(missing_ok=True)
        self.committed = sorted(p for p in folder.glob("shard-*.csv") if not p.name.endswith(".failed.csv"))
        # under torchrun, ranks share the folder: rank r numbers its shards base + r, base + r + world, ...
        self._next = 1 + max((self._index(p) for p in self.committed), default=-1) + rank
        self._stride = world_size

    @staticmethod
    def _index(path: Path) -> int:
        return int(path.name.split("-")[1].split(".")[0])

    def done(self) -> tuple[set[str], set[str]]:
        ok: set[str] = set()
        failed: set[str] = set()
        for names in self.committed:
            ok.update(pd.read_csv(names, dtype=str, keep_default_na=False)["image"])
            failed.update(pd.read_csv(names.with_suffix(".failed.csv"), dtype=str, keep_default_na=False)["image"])
        return ok, failed

    def commit(self, names: list[str], features: list[np.ndarray], failed: list[tuple[str, str]], dim: int) -> None:
        index, self._next = self._next, self._next + self._stride
        stem = self.folder / f"shard-{index:06d}"
        array = np.stack(features).astype(np.float32) if features else np.zeros((0, dim), np.float32)
        tmp = stem.with_name(stem.name + ".npy.tmp")
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)
        os.replace(tmp, stem.with_suffix(".npy"))
        write_text(stem.with_suffix(".failed.csv"), pd.DataFrame(failed, columns=["image", "error"]).to_csv(index=False))
        write_text(stem.with_suffix(".csv"), pd.DataFrame({"image": names}).to_csv(index=False))  # the commit
        self.committed.append(stem.with_suffix(".csv"))

    def assemble(self) -> tuple[dict[str, tuple[int, int]], list[np.ndarray], dict[str, str]]:
        where: dict[str, tuple[int, int]] = {}
        arrays: list[np.ndarray] = []
        failed: dict[str, str] = {}
        for s, names in enumerate(self.committed):
            arrays.append(np.load(names.with_suffix(".npy"), mmap_mode="r", allow_pickle=False))
            for row, name in enumerate(pd.read_csv(names, dtype=str, keep_default_na=False)["image"]):
                where[name] = (s, row)
            fail = pd.read_csv(names.with_suffix(".failed.csv"), dtype=str, keep_default_na=False)
            failed.update(zip(fail["image"], fail["error"]))
        return where, arrays, failed


def _prepare_out(out: Path, overwrite: bool, *, delete: bool = True) -> None:
    """Refuse to touch a folder that is not ours; with `overwrite`, start over (a finished store or
    an unfinished run is removed, unless `delete` is False: then this only checks)."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} is a file; --out must be a directory for the feature store (choose another --out)")
    if (out / MANIFEST).exists() and not overwrite:
        raise FileExistsError(f"{out} already holds a finished feature store (use --overwrite or another --out)")
    if overwrite and ((out / MANIFEST).exists() or (out / PARTIAL).exists()):
        if not delete:
            return
        for name in (MANIFEST, FEATURES, IMAGES, FAILED):
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / PARTIAL, ignore_errors=True)
    elif out.exists() and any(out.iterdir()) and not (out / PARTIAL).exists():
        raise FileExistsError(f"{out} exists and is not a feature store (choose an empty or new --out)")


def extract_features(
    images: str | Path,
    backbone: str | Backbone,
    out: str | Path,
    *,
    weights: str | Path | None = None,
    download: bool = False,
    seed: int = 0,
    batch_size: int = 32,
    float16: bool = False,
    shard_size: int = 512,
    workers: int = 1,
    progress: bool = True,
    overwrite: bool = False,
) -> ExtractionResult:
    """Compute features for every image under `images` and write a feature store to `out`.

    Re-running with the same `out` after an interruption reuses the committed shards. Unreadable
    images are skipped and listed in `out/failed.csv` (and counted in the result). Under torchrun
    each rank embeds a contiguous share of the images into the shared `.partial/` folder and rank 0
    assembles the store (the others return their own counts).
    """
    with distributed.session() as group:
        return _extract(images, backbone, out, group, weights=weights, download=download, seed=seed, batch_size=batch_size,
                        float16=float16, shard_size=shard_size, workers=workers, progress=progress and group.is_main, overwrite=overwrite)


def _extract(images, backbone, out, group: distributed.Group, *, weights, download, seed, batch_size, float16, shard_size,
             workers, progress, overwrite) -> ExtractionResult:
    if batch_size < 1 or shard_size < 1 or workers < 1:
        raise ConfigError("--batch-size, --shard-size and --workers must be at least 1")
    root, out = Path(images), Path(out)
    names = list_images(root)
    _prepare_out(out, overwrite, delete=False)  # every rank refuses the same things
    distributed.barrier(group)  # every rank has looked at `out` before rank 0 changes it
    if group.is_main:
        _prepare_out(out, overwrite)
    model = create_backbone(backbone, weights=weights, download=download, seed=seed) if isinstance(backbone, str) else backbone
    described = model.describe()
    state = {"backbone": model.name, "dim": model.dim, "weights": described.get("weights"), "preprocessing": described.get("preprocessing"), "images_root": str(root.resolve())}
    partial = out / PARTIAL
    if (partial / STATE).exists():
        before = json.loads((partial / STATE).read_text(encoding="utf-8"))
        changed = [k for k in state if json.dumps(before.get(k)) != json.dumps(state[k])]
        if changed:
            raise ConfigError(f"{out} holds an unfinished extraction with a different {', '.join(changed)} ({before.get('backbone')}); finish it with the same options or choose another --out")
    distributed.barrier(group)
    if group.is_main:
        _Shards(partial)  # drops shards cut off before their commit
        write_json(partial / STATE, state)
    distributed.barrier(group)
    shards = _Shards(partial, clean=False, rank=group.rank, world_size=group.world_size)
    ok, failed_before = shards.done()
    todo = [n for n in names if n not in ok and n not in failed_before]
    n_reused = len(ok & set(names))
    distributed.barrier(group)  # every rank has numbered its shards before any commits
    todo = todo[distributed.shard(len(todo), group)]

    computed = 0
    buf_names: list[str] = []
    buf_feats: list[np.ndarray] = []
    buf_failed: list[tuple[str, str]] = []
    pool = ThreadPoolExecutor(workers) if workers > 1 else None
    try:
        with progress_bar(f"{model.name} features", total=len(todo), enabled=progress) as advance:
            for start in range(0, len(todo), batch_size):
                batch = todo[start : start + batch_size]
                paths = [root / n for n in batch]
                loaded = list(pool.map(lambda p: _read_image(p, model), paths)) if pool else [_read_image(p, model) for p in paths]
                good = [(n, x) for n, (x, e) in zip(batch, loaded) if e is None]
                buf_failed.extend((n, e) for n, (x, e) in zip(batch, loaded) if e is not None)
                if good:
                    z = np.asarray(model.embed([x for _, x in good]), dtype=np.float32)
                    if z.shape != (len(good), model.dim):
                        raise RuntimeError(f"backbone {model.name} returned shape {z.shape}, expected ({len(good)}, {model.dim})")
                    finite = np.isfinite(z).all(axis=1)
                    buf_failed.extend((n, "features are NaN or infinite for this image") for (n, _), ok in zip(good, finite) if not ok)
                    buf_names.extend(n for (n, _), ok in zip(good, finite) if ok)
                    buf_feats.extend(z[finite])
                    computed += int(finite.sum())
                if len(buf_names) + len(buf_failed) >= shard_size:
                    shards.commit(buf_names, buf_feats, buf_failed, model.dim)
                    buf_names, buf_feats, buf_failed = [], [], []
                advance(len(batch))
        if buf_names or buf_failed:
            shards.commit(buf_names, buf_feats, buf_failed, model.dim)
    finally:
        if pool:
            pool.shutdown()
    distributed.barrier(group)
    if not group.is_main:
        return ExtractionResult(path=out, backbone=model.name, dim=model.dim, n_images=computed, n_computed=computed, n_reused=0, n_failed=len(buf_failed))
    shards = _Shards(partial, clean=False)  # every rank's committed shards
    return _finish(out, names, shards, model, described, root, float16, -1 if group.active else computed, n_reused)


def _write_rows(path: Path, rows: list[tuple[int, int]], arrays: list[np.ndarray], dtype: Any, dim: int, chunk: int = 4096) -> None:
    """Write the .npy with plain writes, not a memory map: on a full disk a write raises
    OSError(ENOSPC), reported as one line, where a memory map would kill the process with SIGBUS."""
    with open(path, "wb") as fh:
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": (len(rows), dim)}
        np.lib.format.write_array_header_1_0(fh, header)
        for start in range(0, len(rows), chunk):
            block = np.stack([arrays[s][r] for s, r in rows[start : start + chunk]]).astype(dtype) if rows[start : start + chunk] else None
            if block is not None:
                fh.write(np.ascontiguousarray(block).tobytes())
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(path, file_mode())


def _finish(out: Path, names: list[str], shards: _Shards, model: Backbone, described: dict, root: Path, float16: bool, computed: int, reused: int) -> ExtractionResult:
    where, arrays, failed_all = shards.assemble()
    present = set(names)
    kept = [n for n in names if n in where]
    computed = len(kept) - reused if computed < 0 else computed  # -1: summed over ranks
    failed = {n: e for n, e in failed_all.items() if n in present and n not in where}
    dtype = np.float16 if float16 else np.float32
    tmp = out / f".{FEATURES}.tmp"
    try:
        _write_rows(tmp, [where[name] for name in kept], arrays, dtype, model.dim)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, out / FEATURES)
    write_text(out / IMAGES, pd.DataFrame({"image": kept}).to_csv(index=False))
    write_text(out / FAILED, pd.DataFrame(sorted(failed.items()), columns=["image", "error"]).to_csv(index=False))
    manifest = {
        "format": STORE_FORMAT,
        "backbone": model.name,
        "dim": model.dim,
        "dtype": np.dtype(dtype).name,
        "n_images": len(kept),
        "n_failed": len(failed),
        "images_root": str(root.resolve()),
        "piaa_version": piaa.__version__,
        **described,
    }
    write_json(out / MANIFEST, manifest)  # last: its presence marks a finished store
    shutil.rmtree(out / PARTIAL, ignore_errors=True)
    return ExtractionResult(path=out, backbone=model.name, dim=model.dim, n_images=len(kept), n_computed=computed, n_reused=reused, n_failed=len(failed))
