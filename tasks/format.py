"""The rater-dataset format: one directory every loader writes and every method reads.

```
dataset.json   {"name": str, "score_range": [lo, hi], "backbone": str|null, ...}
ratings.csv    user,image,score
users.csv      user,split[,openness,conscientiousness,extraversion,agreeableness,neuroticism]
images.csv     image                       (row i names row i of features.npy)
features.npy   float32 or float16 [n_images, dim], opened with mmap
likes.csv      user,image                  (optional: images liked by "personality" users)
```

Reading validates everything and reports the first problem as a `DataError` naming file, line and
field. Line numbers are 1-based with the header on line 1, as an editor shows them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import pandas as pd

from piaa.atomic import staged_directory, write_json
from piaa.errors import DataError

BIG_FIVE = ("openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism")


def parse_big_five(value: Any, *, error: Callable[[str], Exception] = lambda message: DataError("big_five", message)) -> np.ndarray:
    """A rater's Big-Five as a user gives them, 'O,C,E,A,N' text or five numbers, → float64 [5].

    Each must be a finite number in [-1, 1]; anything else raises `error(message)`, the message
    naming what is wrong (the caller picks the error class and where it points).
    """
    expected = "five numbers in [-1, 1] (O, C, E, A, N)"
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
    else:
        try:
            items = np.asarray(value, dtype=object).reshape(-1).tolist()
        except (TypeError, ValueError):
            raise error(f"expected {expected}, got {value!r}") from None
    if len(items) != 5:
        raise error(f"expected {expected} as 5 comma-separated values, got {len(items)}: {value!r}")
    try:
        values = np.array([float(v) for v in items], dtype=np.float64)
    except (TypeError, ValueError):
        raise error(f"expected {expected}, got {value!r}") from None
    bad = np.flatnonzero(~np.isfinite(values) | (np.abs(values) > 1))
    if len(bad):
        raise error(f"{BIG_FIVE[bad[0]]} is {values[bad[0]]}, expected {expected}")
    return values
SPLITS = ("train", "test", "personality")
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Rater:
    """One rater as a task: the rows of `features` they rated and their scores."""

    user: str
    split: str
    image_index: np.ndarray  # int64 rows into RaterDataset.features
    scores: np.ndarray  # float32, same order
    big_five: np.ndarray | None  # float32 [5] in O, C, E, A, N order, or None when unknown

    def __len__(self) -> int:
        return len(self.image_index)


@dataclass
class RaterDataset:
    """A validated rater dataset held in memory (features stay memory-mapped)."""

    name: str
    score_range: tuple[float, float]
    ratings: pd.DataFrame  # user, image, score (+ image_index)
    users: pd.DataFrame  # user, split, five Big-Five columns (NaN when unknown)
    images: pd.Index  # image ids; position i is row i of features
    features: np.ndarray
    likes: pd.DataFrame | None = None  # user, image (+ image_index)
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    # -- views ---------------------------------------------------------------------------------
    @property
    def feature_dim(self) -> int:
        return int(self.features.shape[1])

    def users_in(self, split: str) -> list[str]:
        return self.users.loc[self.users["split"] == split, "user"].tolist()

    @cached_property
    def _rater_groups(self) -> dict[str, np.ndarray]:
        return {u: idx for u, idx in self.ratings.groupby("user", sort=False).indices.items()}

    def rater(self, user: str) -> Rater:
        user = str(user)
        row = self.users.loc[self.users["user"] == user]
        if row.empty:
            raise DataError("users.csv", f"unknown user {user!r} (see `piaa data describe`)")
        rows = self._rater_groups.get(user, np.empty(0, dtype=np.int64))
        big5 = row[list(BIG_FIVE)].to_numpy(dtype=np.float32)[0]
        return Rater(
            user=user,
            split=str(row["split"].iloc[0]),
            image_index=self.ratings["image_index"].to_numpy()[rows].astype(np.int64),
            scores=self.ratings["score"].to_numpy()[rows].astype(np.float32),
            big_five=None if np.isnan(big5).any() else big5,
        )

    def raters(self, split: str | None = None) -> list[Rater]:
        users = self.users["user"].tolist() if split is None else self.users_in(split)
        return [self.rater(u) for u in users]

    def without(self, split: str) -> "RaterDataset":
        """The same dataset with one split's raters and ratings removed (e.g. hide test raters from fit)."""
        keep_users = self.users[self.users["split"] != split].reset_index(drop=True)
        keep = self.ratings["user"].isin(set(keep_users["user"]))
        likes = None
        if self.likes is not None:
            likes = self.likes[self.likes["user"].isin(set(keep_users["user"]))].reset_index(drop=True)
        return RaterDataset(
            name=self.name,
            score_range=self.score_range,
            ratings=self.ratings[keep].reset_index(drop=True),
            users=keep_users,
            images=self.images,
            features=self.features,
            likes=likes,
            meta=dict(self.meta),
            path=self.path,
        )

    def image_positions(self, images: Iterable[str], *, source: str = "input") -> np.ndarray:
        lookup = self._image_lookup
        out = []
        for i, image in enumerate(images):
            pos = lookup.get(str(image))
            if pos is None:
                raise DataError(source, f"image {image!r} is not in the dataset's images.csv", line=i + 2, field="image")
            out.append(pos)
        return np.asarray(out, dtype=np.int64)

    @cached_property
    def _image_lookup(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.images)}


# -- reading -------------------------------------------------------------------------------------
def _read_csv(path: Path, required: Iterable[str]) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(path.name, f"file is missing from {path.parent}")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise DataError(path.name, "file is empty; expected a header line") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(path.name, f"cannot be parsed as CSV ({str(exc).splitlines()[0]})") from None
    df.columns = [c.strip() for c in df.columns]
    for col in required:
        if col not in df.columns:
            raise DataError(path.name, f"missing column '{col}' (header has: {', '.join(df.columns) or 'nothing'})", line=1)
    return df


def _first_bad(mask: np.ndarray) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if len(hits) else None


def _numeric(df: pd.DataFrame, col: str, file: str, what: str) -> np.ndarray:
    values = pd.to_numeric(df[col].str.strip(), errors="coerce").to_numpy(dtype=np.float64)
    bad = _first_bad(np.isnan(values) & (df[col].str.strip() != ""))
    if bad is None:
        bad = _first_bad(~np.isfinite(values) & ~np.isnan(values))
    if bad is not None:
        raise DataError(file, f"expected {what}, got {df[col].iloc[bad]!r}", line=bad + 2, field=col)
    return values


def read_dataset(path: str | Path) -> RaterDataset:
    """Read and validate a rater-dataset directory. Raises `DataError` on the first problem."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(str(root), "is not a directory (expected a rater dataset: dataset.json, ratings.csv, ...)")
    meta = _read_meta(root / "dataset.json")
    lo, hi = meta["score_range"]

    images_df = _read_csv(root / "images.csv", ["image"])
    images = pd.Index(images_df["image"].str.strip(), name="image")
    dup = _first_bad(np.asarray(images.duplicated()))
    if dup is not None:
        raise DataError("images.csv", f"duplicate image {images[dup]!r}", line=dup + 2, field="image")
    empty = _first_bad(np.asarray(images == ""))
    if empty is not None:
        raise DataError("images.csv", "empty image id", line=empty + 2, field="image")

    features = _read_features(root / "features.npy", len(images))

    users = _read_users(root / "users.csv")
    known_users = set(users["user"])

    ratings = _read_csv(root / "ratings.csv", ["user", "image", "score"])
    ratings = ratings[["user", "image", "score"]].copy()
    ratings["user"] = ratings["user"].str.strip()
    ratings["image"] = ratings["image"].str.strip()
    scores = _numeric(ratings, "score", "ratings.csv", f"a number in [{lo:g}, {hi:g}]")
    bad = _first_bad(np.isnan(scores) | (scores < lo) | (scores > hi))
    if bad is not None:
        raise DataError("ratings.csv", f"expected a number in [{lo:g}, {hi:g}], got {ratings['score'].iloc[bad]!r}", line=bad + 2, field="score")
    ratings["score"] = scores.astype(np.float32)
    bad = _first_bad(~ratings["user"].isin(known_users).to_numpy())
    if bad is not None:
        raise DataError("ratings.csv", f"user {ratings['user'].iloc[bad]!r} is not listed in users.csv", line=bad + 2, field="user")
    position = pd.Series(np.arange(len(images), dtype=np.int64), index=images)
    image_index = ratings["image"].map(position)
    bad = _first_bad(image_index.isna().to_numpy())
    if bad is not None:
        raise DataError("ratings.csv", f"image {ratings['image'].iloc[bad]!r} is not in images.csv", line=bad + 2, field="image")
    ratings["image_index"] = image_index.to_numpy(dtype=np.int64)
    dup = _first_bad(ratings.duplicated(["user", "image"]).to_numpy())
    if dup is not None:
        u, im = ratings["user"].iloc[dup], ratings["image"].iloc[dup]
        first = int(np.flatnonzero(((ratings["user"] == u) & (ratings["image"] == im)).to_numpy())[0])
        raise DataError("ratings.csv", f"duplicate rating of image {im!r} by user {u!r} (first given on line {first + 2})", line=dup + 2, field="image")

    likes = None
    if (root / "likes.csv").exists():
        likes = _read_csv(root / "likes.csv", ["user", "image"])[["user", "image"]].copy()
        likes["user"] = likes["user"].str.strip()
        likes["image"] = likes["image"].str.strip()
        bad = _first_bad(~likes["user"].isin(known_users).to_numpy())
        if bad is not None:
            raise DataError("likes.csv", f"user {likes['user'].iloc[bad]!r} is not listed in users.csv", line=bad + 2, field="user")
        li = likes["image"].map(position)
        bad = _first_bad(li.isna().to_numpy())
        if bad is not None:
            raise DataError("likes.csv", f"image {likes['image'].iloc[bad]!r} is not in images.csv", line=bad + 2, field="image")
        likes["image_index"] = li.to_numpy(dtype=np.int64)

    splits = set(users["split"])
    for needed in ("train", "test"):
        if needed not in splits:
            raise DataError("users.csv", f"no {needed} raters (expected at least one user with split '{needed}')", field="split")
    return RaterDataset(
        name=str(meta.get("name", root.name)),
        score_range=(float(lo), float(hi)),
        ratings=ratings.reset_index(drop=True),
        users=users,
        images=images,
        features=features,
        likes=likes,
        meta=meta,
        path=root.resolve(),
    )


def _read_meta(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(path.name, f"file is missing from {path.parent}")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(path.name, f"is not valid JSON ({exc.msg})", line=exc.lineno) from None
    if not isinstance(meta, dict):
        raise DataError(path.name, "expected a JSON object")
    rng = meta.get("score_range")
    ok = (
        isinstance(rng, list)
        and len(rng) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in rng)
        and rng[0] < rng[1]
    )
    if not ok:
        raise DataError(path.name, f"expected [lo, hi] with lo < hi, got {rng!r}", field="score_range")
    return meta


def _read_features(path: Path, n_images: int) -> np.ndarray:
    if not path.is_file():
        raise DataError(path.name, f"file is missing from {path.parent}")
    try:
        features = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise DataError(path.name, f"is not a readable .npy array ({exc})") from None
    if features.ndim != 2:
        raise DataError(path.name, f"expected a 2-D array [n_images, dim], got shape {features.shape}")
    if features.dtype not in (np.float32, np.float16):
        raise DataError(path.name, f"expected float32 or float16, got {features.dtype}")
    if features.shape[0] != n_images:
        raise DataError(path.name, f"has {features.shape[0]} rows but images.csv lists {n_images} images (row i of features.npy must be image i)")
    # Check finiteness in chunks so huge memory-mapped files are never loaded whole.
    step = max(1, 2**22 // max(1, features.shape[1]))
    for start in range(0, features.shape[0], step):
        block = np.asarray(features[start : start + step])
        finite = np.isfinite(block).all(axis=1)
        if not finite.all():
            row = start + int(np.flatnonzero(~finite)[0])
            raise DataError(path.name, f"row {row} (image {row + 2} of images.csv counting the header) has NaN or inf values")
    return features


def _read_users(path: Path) -> pd.DataFrame:
    users = _read_csv(path, ["user", "split"])
    users["user"] = users["user"].str.strip()
    users["split"] = users["split"].str.strip()
    dup = _first_bad(users["user"].duplicated().to_numpy())
    if dup is not None:
        raise DataError(path.name, f"user {users['user'].iloc[dup]!r} is listed twice", line=dup + 2, field="user")
    bad = _first_bad(~users["split"].isin(SPLITS).to_numpy())
    if bad is not None:
        raise DataError(path.name, f"expected one of {', '.join(SPLITS)}, got {users['split'].iloc[bad]!r}", line=bad + 2, field="split")
    present = [c for c in BIG_FIVE if c in users.columns]
    if present and len(present) != len(BIG_FIVE):
        missing = [c for c in BIG_FIVE if c not in users.columns]
        raise DataError(path.name, f"has some Big-Five columns but lacks {', '.join(missing)} (give all five or none)", line=1)
    out = users[["user", "split"]].copy()
    for col in BIG_FIVE:
        if col in users.columns:
            values = _numeric(users, col, path.name, "a number in [-1, 1] or an empty cell")
            bad = _first_bad(~np.isnan(values) & ((values < -1) | (values > 1)))
            if bad is not None:
                raise DataError(path.name, f"expected a number in [-1, 1], got {users[col].iloc[bad]!r}", line=bad + 2, field=col)
            out[col] = values.astype(np.float32)
        else:
            out[col] = np.float32(np.nan)
    known = out[list(BIG_FIVE)].notna()
    partial = _first_bad((known.any(axis=1) & ~known.all(axis=1)).to_numpy())
    if partial is not None:
        raise DataError(path.name, "a rater has some Big-Five values but not all five (give all five or leave all empty)", line=partial + 2)
    return out.reset_index(drop=True)


# -- writing -------------------------------------------------------------------------------------
def write_dataset(
    path: str | Path,
    *,
    name: str,
    score_range: tuple[float, float],
    ratings: pd.DataFrame,
    users: pd.DataFrame,
    images: Iterable[str],
    features: np.ndarray,
    likes: pd.DataFrame | None = None,
    meta: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a dataset directory atomically (staged, then renamed) and validate it by reading it back.

    `ratings` needs columns user, image, score; `users` needs user, split and optionally the five
    Big-Five columns. Returns the final path.
    """
    final = Path(path)
    features = np.asarray(features)
    if features.dtype not in (np.float32, np.float16):
        features = features.astype(np.float32)
    with staged_directory(final, overwrite=overwrite) as tmp:
        info = {"name": name, "score_range": [float(score_range[0]), float(score_range[1])], "backbone": None, "format_version": FORMAT_VERSION}
        info.update(dict(meta or {}))
        write_json(tmp / "dataset.json", info)
        pd.DataFrame({"image": [str(i) for i in images]}).to_csv(tmp / "images.csv", index=False)
        np.save(tmp / "features.npy", features, allow_pickle=False)
        out_users = users.copy()
        out_users["user"] = out_users["user"].astype(str)
        cols = ["user", "split"] + [c for c in BIG_FIVE if c in out_users.columns]
        out_users[cols].to_csv(tmp / "users.csv", index=False, float_format="%.6g")
        out_ratings = ratings[["user", "image", "score"]].copy()
        out_ratings["user"] = out_ratings["user"].astype(str)
        out_ratings.to_csv(tmp / "ratings.csv", index=False, float_format="%.6g")
        if likes is not None:
            out_likes = likes[["user", "image"]].copy()
            out_likes["user"] = out_likes["user"].astype(str)
            out_likes.to_csv(tmp / "likes.csv", index=False)
        read_dataset(tmp)  # never publish a dataset we could not read back
    return final
