"""A feature store: image features computed once by `piaa features extract`, read by the importers.

```
manifest.json  {"format": "piaa-features", "backbone": str, "dim": int, "dtype": "float32"|"float16",
                "preprocessing": {...}, "weights": str|null, "images_root": str, "n_images": int,
                "n_failed": int}
images.csv     image            relative path under the extracted folder (POSIX separators); row i
                                 names row i of features.npy
features.npy   float32/float16 [n_images, dim]
failed.csv     image,error      images that could not be read (corrupt, truncated, not an image)
```
The format lives in `tasks/` (not in `piaa.features`) because importers read it and data flows one
way: tasks → features. `manifest.json` is written last, so a store without it is unfinished.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

import numpy as np
import pandas as pd

from piaa.errors import DataError
from piaa.tasks.format import load_npy, read_json_object

MANIFEST = "manifest.json"
IMAGES = "images.csv"
FEATURES = "features.npy"
FAILED = "failed.csv"
STORE_FORMAT = "piaa-features"


@dataclass
class FeatureStore:
    """An opened feature store; `features` stays memory-mapped."""

    path: Path
    manifest: dict[str, Any]
    images: pd.Index
    features: np.ndarray
    failed: dict[str, str] = field(default_factory=dict)  # image → error message

    @property
    def backbone(self) -> str:
        return str(self.manifest.get("backbone"))

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    @cached_property
    def _by_path(self) -> pd.Series:
        return pd.Series(np.arange(len(self.images), dtype=np.int64), index=self.images)

    def _unique_keys(self, keys: pd.Series) -> pd.Series:
        """key → row; -1 for a key that names more than one stored image (ambiguous)."""
        rows = pd.Series(np.arange(len(keys), dtype=np.int64), index=keys.to_numpy())
        dup = rows.index.duplicated(keep=False)
        rows[dup] = -1
        return rows[~rows.index.duplicated(keep="first")]

    @cached_property
    def _by_basename(self) -> pd.Series:
        return self._unique_keys(_basename(pd.Series(self.images, dtype=object)))

    @cached_property
    def _by_stem(self) -> pd.Series:
        return self._unique_keys(_basename(pd.Series(self.images, dtype=object)).str.replace(r"\.[^.]*$", "", regex=True))

    @cached_property
    def _failed_names(self) -> set[str]:
        names = set(self.failed)
        names |= {PurePosixPath(n).name for n in self.failed}
        names |= {PurePosixPath(n).stem for n in self.failed}
        return names

    def locate(self, names: Iterable[str], *, by: str = "name") -> np.ndarray:
        """Row of each image in features.npy, or -1 when the store has no features for it.

        `by="name"` matches the relative path, else the file name (e.g. `farm1_..._b.jpg` finds
        `40K/farm1_..._b.jpg`); `by="stem"` matches the file name without extension (AVA ids).
        A file name that occurs twice in the store is ambiguous and raises.
        """
        query = pd.Series(list(names), dtype=object).astype(str)
        if by == "name":
            rows = query.map(self._by_path)
            secondary = _basename(query).map(self._by_basename)
        else:
            rows = pd.Series(np.nan, index=query.index)
            secondary = query.map(self._by_stem)
        rows = rows.fillna(secondary)
        ambiguous = (rows == -1).to_numpy()
        if ambiguous.any():
            key = query.iloc[int(np.flatnonzero(ambiguous)[0])]
            raise DataError(str(self.path / IMAGES), f"image name {key!r} occurs in more than one folder of the store; cannot tell which one is meant")
        return rows.fillna(-1).to_numpy(dtype=np.int64)

    def was_unreadable(self, name: str) -> bool:
        name = str(name)
        return name in self._failed_names or PurePosixPath(name).name in self._failed_names


def _basename(paths: pd.Series) -> pd.Series:
    """The file name of each path ('/' or '\\' separated), by a plain loop: far faster than chained
    .str methods for the tens of thousands of names of a large dataset."""
    names = [str(v).replace("\\", "/").rpartition("/")[2] for v in paths.to_numpy(dtype=object)]
    return pd.Series(names, index=paths.index, dtype=object)


def open_store(path: str | Path) -> FeatureStore:
    """Open and check a finished feature store. Raises `DataError` naming the problem."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(str(root), "is not a directory (expected a feature store written by `piaa features extract`)")
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        hint = " (an unfinished extraction: re-run `piaa features extract` with the same --out to finish it)" if (root / ".partial").exists() else ""
        raise DataError(str(manifest_path), f"is missing; not a finished feature store{hint}")
    manifest = read_json_object(manifest_path)
    if manifest.get("format") != STORE_FORMAT:
        raise DataError(str(manifest_path), f"expected a JSON object with \"format\": \"{STORE_FORMAT}\"")
    images_path = root / IMAGES
    if not images_path.is_file():
        raise DataError(str(images_path), "is missing from the feature store")
    images_df = _read_store_csv(images_path, ["image"])
    if list(images_df.columns) != ["image"]:
        raise DataError(str(images_path), f"expected the single column 'image', got {', '.join(images_df.columns)}", line=1)
    images = pd.Index(images_df["image"], name="image")
    if not (root / FEATURES).is_file():
        raise DataError(str(root / FEATURES), "is missing from the feature store")
    features = load_npy(root / FEATURES)
    if features.ndim != 2 or features.shape[0] != len(images):
        raise DataError(str(root / FEATURES), f"has shape {features.shape} but images.csv lists {len(images)} images")
    failed: dict[str, str] = {}
    if (root / FAILED).is_file():
        failed_df = _read_store_csv(root / FAILED, ["image", "error"], allow_empty=True)
        if {"image", "error"} <= set(failed_df.columns):
            failed = dict(zip(failed_df["image"], failed_df["error"]))
    return FeatureStore(path=root, manifest=manifest, images=images, features=features, failed=failed)


def _read_store_csv(path: Path, columns: list[str], *, allow_empty: bool = False) -> pd.DataFrame:
    """A CSV of the store, every problem (empty, not UTF-8, unparseable) a DataError naming it."""
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except pd.errors.EmptyDataError:
        if allow_empty:
            return pd.DataFrame(columns=columns)
        raise DataError(str(path), f"is empty; expected a header line ({','.join(columns)}) and one row per image") from None
    except UnicodeDecodeError as exc:
        raise DataError(str(path), f"is not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except pd.errors.ParserError as exc:
        raise DataError(str(path), f"cannot be parsed as CSV ({str(exc).splitlines()[0]})") from None


def write_store(path: str | Path, images: Iterable[str], features: np.ndarray, *, backbone: str, failed: dict[str, str] | None = None, **manifest: Any) -> Path:
    """Write a small feature store in one atomic step: for features computed elsewhere (bring your
    own) and for tests. `piaa features extract` streams large stores itself."""
    from piaa.atomic import staged_directory, write_json

    features = np.asarray(features)
    if features.dtype not in (np.float32, np.float16):
        features = features.astype(np.float32)
    names = [str(i) for i in images]
    if features.ndim != 2 or features.shape[0] != len(names):
        raise DataError(str(path), f"features of shape {features.shape} do not match {len(names)} images")
    root = Path(path)
    with staged_directory(root) as tmp:
        pd.DataFrame({"image": names}).to_csv(tmp / IMAGES, index=False)
        np.save(tmp / FEATURES, features, allow_pickle=False)
        pd.DataFrame(sorted((failed or {}).items()), columns=["image", "error"]).to_csv(tmp / FAILED, index=False)
        write_json(tmp / MANIFEST, {"format": STORE_FORMAT, "backbone": backbone, "dim": int(features.shape[1]), "dtype": features.dtype.name, "n_images": len(names), "n_failed": len(failed or {}), **manifest})
    return root
