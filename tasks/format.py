"""The rater-dataset format: one directory every loader writes and every method reads.

```
dataset.json   {"name": str, "score_range": [lo, hi], "backbone": str|null, ...}
ratings.csv    user,image,score
users.csv      user,split[,openness,conscientiousness,extraversion,agreeableness,neuroticism]
images.csv     image                       (row i names row i of features.npy)
features.npy   float32 or float16 [n_images, dim], opened with mmap
likes.csv      user,image                  (optional: images liked by "personality" users)
attributes.csv user,image,<name>...        (optional: per-rating attribute scores, extra targets)
```
users.csv may carry further columns (rater attributes such as age, gender, education); they are
kept as text for methods that use them.

Reading validates everything and reports the first problem as a `DataError` naming file, line and
field. Line numbers are 1-based with the header on line 1, as an editor shows them.
"""

from __future__ import annotations

import json
import math
import re
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
# Rater attributes importers write under these names (any other extra users.csv column is kept too).
RATER_ATTRIBUTES = ("age", "gender", "education", "art_experience", "photography_experience", "nationality", "colorblind")
ATTRIBUTES = "attributes.csv"
IMAGE_SPLIT = "giaa_split.csv"  # optional: image,split (train|test), an image-level split published with the dataset


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
    attributes: pd.DataFrame | None = None  # user, image, image_index, one float column per attribute

    # -- views ---------------------------------------------------------------------------------
    @property
    def feature_dim(self) -> int:
        return int(self.features.shape[1])

    @property
    def rater_attribute_names(self) -> list[str]:
        """Extra users.csv columns (age, gender, ...), kept as text; empty cells mean unknown."""
        return [c for c in self.users.columns if c not in ("user", "split", *BIG_FIVE)]

    @property
    def attribute_names(self) -> list[str]:
        """Extra per-rating targets from attributes.csv (e.g. PARA's quality, composition, ...)."""
        if self.attributes is None:
            return []
        return [c for c in self.attributes.columns if c not in ("user", "image", "image_index")]

    def image_attributes(self, split: str | None = "train") -> pd.DataFrame:
        """Per-image means of each attribute over the given split's raters (all raters when None),
        indexed by row of `features`: the image-level extra targets a multi-task head trains on."""
        names = self.attribute_names
        if not names:
            return pd.DataFrame(columns=names)
        frame = self.attributes
        if split is not None:
            frame = frame[frame["user"].isin(set(self.users_in(split)))]
        return frame.groupby("image_index")[names].mean()

    def image_split(self) -> pd.Series | None:
        """The image-level split published with the dataset (PARA's GIAA split), read from
        giaa_split.csv beside it: "train"/"test" indexed by row of `features`; None when absent."""
        if self.path is None or not (self.path / IMAGE_SPLIT).is_file():
            return None
        df = _read_csv(self.path / IMAGE_SPLIT, ["image", "split"])
        split = df["split"].str.strip()
        bad = _first_bad(~split.isin(("train", "test")).to_numpy())
        if bad is not None:
            raise DataError(IMAGE_SPLIT, f"expected train or test, got {split.iloc[bad]!r}", line=bad + 2, field="split")
        index = self.images.get_indexer(df["image"].str.strip())
        bad = _first_bad(index < 0)
        if bad is not None:
            raise DataError(IMAGE_SPLIT, f"image {df['image'].iloc[bad]!r} is not in images.csv", line=bad + 2, field="image")
        dup = _first_bad(pd.Series(index).duplicated().to_numpy())
        if dup is not None:
            raise DataError(IMAGE_SPLIT, f"image {df['image'].iloc[dup]!r} is listed twice", line=dup + 2, field="image")
        return pd.Series(split.to_numpy(), index=pd.Index(index, name="image_index"), name="split")

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
            attributes=None if self.attributes is None else self.attributes[self.attributes["user"].isin(set(keep_users["user"]))].reset_index(drop=True),
        )

    def with_splits(self, splits: Mapping[str, str]) -> "RaterDataset":
        """The same data with some raters' split replaced (user -> split), e.g. one cross-validation fold."""
        users = self.users.copy()
        new = users["user"].map(dict(splits))
        users["split"] = new.fillna(users["split"])
        return RaterDataset(
            name=self.name, score_range=self.score_range, ratings=self.ratings, users=users, images=self.images,
            features=self.features, likes=self.likes, meta=dict(self.meta), path=self.path, attributes=self.attributes,
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
def _read_csv(path: Path, required: Iterable[str], *, text: Iterable[str] | None = None) -> pd.DataFrame:
    """A CSV with every column as text, or, given `text`, only those as text (empty cells as "") and the
    others parsed as numbers by the C parser where they are clean (a column with a non-number stays
    text, so the caller's check can name the cell). Parsing numbers natively is what keeps reading
    ratings and attributes of PARA's size fast."""
    if not path.is_file():
        raise DataError(path.name, f"file is missing from {path.parent}")
    skip = file_has_edge_space(path)  # skipping spaces after delimiters costs the reader; only where there are any
    try:
        if text is None:
            df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=skip, encoding="utf-8")
        else:
            text = list(text)
            df = pd.read_csv(path, dtype={c: str for c in text}, keep_default_na=False, na_values=[""], skipinitialspace=skip, encoding="utf-8")
            for col in text:
                if col in df.columns:
                    df[col] = df[col].fillna("")
    except pd.errors.EmptyDataError:
        raise DataError(path.name, "file is empty; expected a header line") from None
    except UnicodeDecodeError as exc:
        raise DataError(path.name, f"is not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8 CSV") from None
    except pd.errors.ParserError as exc:
        raise DataError(path.name, f"cannot be parsed as CSV ({str(exc).splitlines()[0]})") from None
    except IsADirectoryError:
        raise DataError(str(path), "is a directory; expected a CSV file") from None
    df.columns = [c.strip() for c in df.columns]
    for col in required:
        if col not in df.columns:
            raise DataError(path.name, f"missing column '{col}' (header has: {', '.join(df.columns) or 'nothing'})", line=1)
    return df


def _cell(value) -> str:
    """A cell as the user wrote it: text as is, a parsed number in its shortest form."""
    return value if isinstance(value, str) else f"{value:g}"


def _first_bad(mask: np.ndarray) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if len(hits) else None


def _numeric(df: pd.DataFrame, col: str, file: str, what: str) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(df[col].dtype):  # parsed by the C reader: empty cells are NaN
        values = df[col].to_numpy(dtype=np.float64)
        bad = _first_bad(np.isinf(values))
        if bad is not None:
            raise DataError(file, f"expected {what}, got {_cell(df[col].iloc[bad])!r}", line=bad + 2, field=col)
        return values
    values = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64)  # surrounding spaces are accepted
    missing = np.flatnonzero(np.isnan(values))  # only these cells need a closer look (empty, or not a number)
    filled = np.zeros(len(values), dtype=bool)
    filled[missing] = (df[col].iloc[missing].str.strip() != "").to_numpy()
    bad = _first_bad(filled)
    if bad is None:
        bad = _first_bad(~np.isfinite(values) & ~np.isnan(values))
    if bad is not None:
        raise DataError(file, f"expected {what}, got {df[col].iloc[bad]!r}", line=bad + 2, field=col)
    return values


def read_dataset(path: str | Path, *, pixels: bool = False) -> RaterDataset:
    """Read and validate a rater-dataset directory. Raises `DataError` on the first problem.

    With `pixels`, `features` are the images under dataset.json's `images_root` as pixel rows
    (`piaa.tasks.images.PixelArray`, for end-to-end training) instead of features.npy.
    """
    return _read_dataset(Path(path), pixels=pixels)


def _read_dataset(root: Path, *, pixels: bool = False, given: Mapping[str, pd.DataFrame] | None = None) -> RaterDataset:
    """`read_dataset`, with ratings.csv / attributes.csv optionally handed over as the tables they
    read back as (text ids, numbers as written): `write_dataset` checks what it wrote this way."""
    given = given or {}
    if not root.is_dir():
        raise DataError(str(root), "is not a directory (expected a rater dataset: dataset.json, ratings.csv, ...)")
    meta = _read_meta(root / "dataset.json")
    lo, hi = meta["score_range"]

    images_df = _read_csv(root / "images.csv", ["image"])
    images = pd.Index(images_df["image"].str.strip(), name="image")
    if len(images) == 0:
        raise DataError("images.csv", "has a header but no images (expected one image id per line)", line=2)
    dup = _first_bad(np.asarray(images.duplicated()))
    if dup is not None:
        raise DataError("images.csv", f"duplicate image {images[dup]!r}", line=dup + 2, field="image")
    empty = _first_bad(np.asarray(images == ""))
    if empty is not None:
        raise DataError("images.csv", "empty image id", line=empty + 2, field="image")

    if pixels:
        from piaa.tasks.images import pixel_array

        features = pixel_array(meta, root, images.tolist())
    elif not (root / "features.npy").exists() and "images_root" in meta:
        raise DataError(str(root / "features.npy"), "is missing: this dataset has images only (images_root); extract features "
                        "(piaa features extract) or train end to end on the images (--set backbone=small-cnn)")
    else:
        features = _read_features(root / "features.npy", len(images))

    users = _read_users(root / "users.csv")
    known_users = set(users["user"])

    if "ratings.csv" in given:
        ratings, spaced = given["ratings.csv"][["user", "image", "score"]].copy(), True
    else:
        ratings = _read_csv(root / "ratings.csv", ["user", "image", "score"], text=("user", "image"))
        ratings = ratings[["user", "image", "score"]].copy()
        spaced = file_has_edge_space(root / "ratings.csv")
    ratings["user"] = strip_text(ratings["user"], may_have_spaces=spaced)
    ratings["image"] = strip_text(ratings["image"], may_have_spaces=spaced)
    scores = _numeric(ratings, "score", "ratings.csv", f"a number in [{lo:g}, {hi:g}]")
    bad = _first_bad(np.isnan(scores) | (scores < lo) | (scores > hi))
    if bad is not None:
        raise DataError("ratings.csv", f"expected a number in [{lo:g}, {hi:g}], got {_cell(ratings['score'].iloc[bad])!r}", line=bad + 2, field="score")
    ratings["score"] = scores.astype(np.float32)
    if len(ratings) == 0:
        raise DataError("ratings.csv", "has a header but no ratings (expected rows user,image,score)", line=2)
    user_codes = pd.Index(users["user"]).get_indexer(ratings["user"]).astype(np.int64)  # -1: not in users.csv
    bad = _first_bad(user_codes < 0)
    if bad is not None:
        raise DataError("ratings.csv", f"user {ratings['user'].iloc[bad]!r} is not listed in users.csv", line=bad + 2, field="user")
    position = pd.Series(np.arange(len(images), dtype=np.int64), index=images)
    image_index = pd.Series(images.get_indexer(ratings["image"]), dtype="float64").where(lambda v: v >= 0)
    bad = _first_bad(image_index.isna().to_numpy())
    if bad is not None:
        raise DataError("ratings.csv", f"image {ratings['image'].iloc[bad]!r} is not in images.csv", line=bad + 2, field="image")
    ratings["image_index"] = image_index.to_numpy(dtype=np.int64)
    dup = _first_bad(pd.Series(user_codes * max(len(images), 1) + ratings["image_index"].to_numpy(np.int64)).duplicated().to_numpy())
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

    attributes = None
    if (root / ATTRIBUTES).exists():
        attributes = _read_attributes(root / ATTRIBUTES, known_users, position, ratings, given=given.get(ATTRIBUTES))

    splits = set(users["split"])
    # An evaluation-only dataset (e.g. REAL-CUR: a few raters' own albums) has test raters only.
    needed_splits = ("test",) if meta.get("evaluation_only") else ("train", "test")
    for needed in needed_splits:
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
        attributes=attributes,
    )


def read_json_object(path: Path, name: str | None = None) -> dict[str, Any]:
    """A JSON file that must hold an object: UTF-8, parseable, not absurdly nested; else a DataError
    naming the file (`name`, default the full path)."""
    name = str(path) if name is None else name
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(name, f"is not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except IsADirectoryError:
        raise DataError(name, "is a directory; expected a JSON file") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(name, f"is not valid JSON ({exc.msg})", line=exc.lineno) from None
    except RecursionError:
        raise DataError(name, "is nested too deeply to be a piaa file") from None
    if not isinstance(value, dict):
        raise DataError(name, f"expected a JSON object {{...}}, got a JSON {type(value).__name__}")
    return value


def _read_attributes(path: Path, known_users: set[str], position: pd.Series, ratings: pd.DataFrame, *, given: pd.DataFrame | None = None) -> pd.DataFrame:
    """attributes.csv (or the table it reads back as): user,image and numeric attribute columns
    (empty = unknown), each row a rating."""
    df = _read_csv(path, ["user", "image"], text=("user", "image")) if given is None else given
    names = [c for c in df.columns if c not in ("user", "image")]
    if not names:
        raise DataError(path.name, "has no attribute columns after user,image", line=1)
    spaced = given is not None or file_has_edge_space(path)
    out = pd.DataFrame({"user": strip_text(df["user"], may_have_spaces=spaced), "image": strip_text(df["image"], may_have_spaces=spaced)})
    if _same_rows(out, ratings):  # the usual layout (PARA): one attributes row per rating, in the same order
        out["image_index"] = ratings["image_index"].to_numpy(np.int64)
    else:
        _check_attribute_rows(path, out, known_users, position, ratings)
    for col in names:
        out[col] = _numeric(df, col, path.name, "a number or an empty cell").astype(np.float32)
    return out


def _same_rows(out: pd.DataFrame, ratings: pd.DataFrame) -> bool:
    """Whether `out` names exactly the (user, image) pairs of `ratings`, row for row."""
    return len(out) == len(ratings) and all(
        np.array_equal(out[c].to_numpy(dtype=object), ratings[c].to_numpy(dtype=object)) for c in ("user", "image")
    )


def _check_attribute_rows(path: Path, out: pd.DataFrame, known_users: set[str], position: pd.Series, ratings: pd.DataFrame) -> None:
    """Every attributes row names a known user and image, once, and a rating of ratings.csv; sets
    out["image_index"]."""
    bad = _first_bad(~out["user"].isin(known_users).to_numpy())
    if bad is not None:
        raise DataError(path.name, f"user {out['user'].iloc[bad]!r} is not listed in users.csv", line=bad + 2, field="user")
    index = position.index.get_indexer(out["image"])
    bad = _first_bad(index < 0)
    if bad is not None:
        raise DataError(path.name, f"image {out['image'].iloc[bad]!r} is not in images.csv", line=bad + 2, field="image")
    out["image_index"] = index.astype(np.int64)
    user_codes = pd.Index(sorted(known_users))
    n_images = len(position)
    given = user_codes.get_indexer(out["user"]).astype(np.int64) * n_images + out["image_index"].to_numpy(np.int64)
    dup = _first_bad(pd.Series(given).duplicated().to_numpy())
    if dup is not None:
        raise DataError(path.name, f"attributes of image {out['image'].iloc[dup]!r} by user {out['user'].iloc[dup]!r} are given twice", line=dup + 2, field="image")
    rated = user_codes.get_indexer(ratings["user"]).astype(np.int64) * n_images + ratings["image_index"].to_numpy(np.int64)
    bad = _first_bad(~pd.Series(given).isin(pd.Series(rated)).to_numpy())
    if bad is not None:
        raise DataError(path.name, f"user {out['user'].iloc[bad]!r} has attributes for image {out['image'].iloc[bad]!r} but no rating of it in ratings.csv", line=bad + 2)


def _read_meta(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(path.name, f"file is missing from {path.parent}")
    meta = read_json_object(path, path.name)
    for key in ("name", "backbone"):
        if meta.get(key) is not None and not isinstance(meta[key], str):
            raise DataError(path.name, f"expected a string, got {type(meta[key]).__name__} {meta[key]!r}", field=key)
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


def load_npy(path: str | Path, name: str | None = None) -> np.ndarray:
    """Memory-map a .npy file (never unpickling), or raise a DataError naming it (`name`, default the
    path): empty files, garbage headers and truncated data all end here, not in a traceback."""
    name = str(path) if name is None else name
    path = Path(path)
    if path.is_dir():
        raise DataError(name, "is a directory; expected a .npy file")
    if path.is_file() and path.stat().st_size == 0:
        raise DataError(name, "is empty (0 bytes); expected a .npy array")
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if magic != b"\x93NUMPY":
        raise DataError(name, "is not a readable .npy array (it does not start with the .npy magic bytes)")
    try:
        # open_memmap, not np.load: np.load would treat a zip file as .npz and could unpickle.
        return np.lib.format.open_memmap(path, mode="r")
    except (ValueError, EOFError, OSError, SyntaxError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(name, f"is not a readable .npy array ({first})") from None


def _read_features(path: Path, n_images: int) -> np.ndarray:
    if not path.is_file():
        raise DataError(path.name, f"file is missing from {path.parent}")
    features = load_npy(path, path.name)
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
    for col in users.columns:
        if col not in out.columns:  # optional rater attributes (age, gender, ...), kept as text
            if not col or col.startswith("Unnamed:"):
                raise DataError(path.name, "has a column without a name (every extra column needs a header)", line=1)
            out[col] = users[col].str.strip()
    return out.reset_index(drop=True)


# -- writing -------------------------------------------------------------------------------------
_EDGE_SPACE = re.compile(r"\x00\s|\s\x00")  # a cell starting or ending with white space, in "\x00"-joined text
_ASCII_SPACE = "".join(ch for ch in map(chr, range(128)) if ch.isspace())  # what str.strip removes, in ASCII


def _joined(values) -> str:
    if isinstance(values, pd.Series):
        values = values.to_numpy(dtype=object)  # iterating a numpy array is far faster than a Series
    return "\x00".join(values)


def strip_text(values: pd.Series, *, may_have_spaces: bool = True) -> pd.Series:
    """`values.str.strip()`, skipped when no cell can start or end with white space: the caller knows
    the file has none (`file_has_edge_space`), or one scan of the joined text finds none."""
    values = values.astype(str)
    if not may_have_spaces:
        return values
    joined = "\x00" + _joined(values) + "\x00"
    if joined.isascii() and not any(ch in joined for ch in _ASCII_SPACE):  # single-character scans are fast
        return values
    if _EDGE_SPACE.search(joined) is None:
        return values
    return values.str.strip()


def file_has_edge_space(path: Path) -> bool:
    """Whether any cell of a CSV may start or end with white space: whether the raw bytes hold a
    space, a tab or a no-break space at all (memchr-fast single-byte scans, whatever the delimiter).
    A false positive only costs a strip, or the reader's skipping of spaces after delimiters."""
    raw = path.read_bytes()
    return b" " in raw or b"\t" in raw or b"\xa0" in raw


# Writing large tables: every column is (codes, distinct texts). Ratings and attribute scores take
# few distinct values and ids repeat, so text is formatted once per distinct value and the rows are
# assembled as bytes by numpy, with no Python work per row.
_ROW_BYTES = 1 << 26  # bytes of rows assembled at a time


def _id_columns(ids: Mapping[str, Any]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each id column as (codes, distinct texts)."""
    return [pd.factorize(pd.Series(v).astype(str).to_numpy(dtype=object)) for v in ids.values()]


def _write_table(path: Path, ids: Mapping[str, Any], numbers: Mapping[str, Any], *, id_cols: list | None = None) -> dict[str, np.ndarray]:
    """Id columns (text) then number columns ('%.6g', empty for NaN) as CSV; returns the numbers as
    they read back. If an id or a column name needs quoting (comma, quote, line break) pandas writes
    the file; otherwise the rows are assembled directly, many times faster for millions of cells
    (formatted numbers never need quoting)."""
    header = [*map(str, ids), *map(str, numbers)]
    id_cols = _id_columns(ids) if id_cols is None else id_cols  # (given when another table has the same ids)
    cells = "".join(header) + "".join("".join(texts) for _, texts in id_cols)
    if not any(ch in cells for ch in ',"\n\r\x00'):
        blocks, back = _csv_number_block(list(numbers.values()))
        _write_rows(path, header, id_cols + blocks)
        return dict(zip(numbers, back))
    frame, back = {name: texts[codes] for name, (codes, texts) in zip(header, id_cols)}, {}
    for name, values in numbers.items():
        codes, texts, read_back = _distinct_numbers(values)
        frame[str(name)], back[name] = texts[codes], read_back[codes]
    pd.DataFrame(frame, columns=header).to_csv(path, index=False)
    return back


def _write_rows(path: Path, header: list[str], columns: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """Header and rows of (codes, distinct texts) columns, none needing quotes (the caller checked)."""
    ends = [","] * (len(columns) - 1) + ["\n"]  # each cell's text carries the delimiter after it
    encoded = [np.array([(t + end).encode("utf-8") for t in texts] or [end.encode()], dtype="S") for (_, texts), end in zip(columns, ends)]
    width = sum(e.itemsize for e in encoded)
    n = len(columns[0][0])
    with open(path, "wb") as fh:
        fh.write((",".join(header) + "\n").encode("utf-8"))
        step = max(1, _ROW_BYTES // width)
        for start in range(0, n, step):
            pieces = [enc[codes[start : start + step]] for (codes, _), enc in zip(columns, encoded)]
            table = np.concatenate([p.view(np.uint8).reshape(len(p), p.itemsize) for p in pieces], axis=1)
            fh.write(table[table != 0].tobytes())  # drop the NUL padding of shorter cells


def _distinct_numbers(values) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(each cell's distinct index, text of each distinct value ('%.6g', "" for NaN), the value
    that text reads back as)."""
    codes, uniq = pd.factorize(np.asarray(values, dtype=np.float64), use_na_sentinel=False)
    texts = np.array(["" if np.isnan(u) else f"{u:.6g}" for u in uniq], dtype=object)
    back = np.array([float(t) if t else np.nan for t in texts], dtype=np.float64)
    return codes.astype(np.int64), texts, back


_BLOCK_LIMIT = 1 << 16  # distinct value combinations formatted per block of number columns


def _csv_number_block(columns: list[Any]) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[np.ndarray]]:
    """Number columns as (codes, texts) blocks, adjacent columns pre-joined ("3,4,2.5"), and each
    column's values as they read back. Columns whose distinct values multiply to at most
    `_BLOCK_LIMIT` combinations share a block, so a row of ten attribute scores is one or two cells."""
    blocks: list[tuple[np.ndarray, np.ndarray]] = []
    back: list[np.ndarray] = []
    code, size, parts = None, 0, []
    for values in columns:
        codes, texts, read_back = _distinct_numbers(values)
        back.append(read_back[codes])
        if code is not None and size * len(texts) <= _BLOCK_LIMIT:
            code, size = code * len(texts) + codes, size * len(texts)
            parts.append(texts)
            continue
        if code is not None:
            blocks.append(_block_text(code, parts))
        code, size, parts = codes, len(texts), [texts]
    if code is not None:
        blocks.append(_block_text(code, parts))
    return blocks, back


def _block_text(code: np.ndarray, parts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(codes, texts) of a block: its mixed-radix `code` decoded once per distinct combination."""
    if len(parts) == 1:
        return code, parts[0]
    codes, present = pd.factorize(code)
    digits, rest = [], present
    for texts in reversed(parts):
        digits.append(texts[rest % len(texts)])
        rest = rest // len(texts)
    return codes.astype(np.int64), np.array([",".join(cells) for cells in zip(*reversed(digits))], dtype=object)


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
    attributes: pd.DataFrame | None = None,
    extra_files: Mapping[str, str] | None = None,
) -> Path:
    """Write a dataset directory atomically (staged, then renamed) and validate it by reading it back.

    `ratings` needs columns user, image, score; `users` needs user, split and optionally the five
    Big-Five columns, then any rater-attribute columns (written as text). `attributes` (user, image
    and numeric columns) becomes attributes.csv; `extra_files` maps a file name to text written
    beside the dataset (e.g. the derived split as a publishable list). Returns the final path.
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
        cols += [c for c in out_users.columns if c not in cols]
        out_users[cols].to_csv(tmp / "users.csv", index=False, float_format="%.6g")
        written = {"user": ratings["user"].astype(str).to_numpy(dtype=object), "image": ratings["image"].astype(str).to_numpy(dtype=object)}
        rating_ids, rating_written = _id_columns(written), written
        scores = _write_table(tmp / "ratings.csv", written, {"score": ratings["score"]}, id_cols=rating_ids)["score"]
        # The two large tables are checked as read_dataset reads them, without parsing them back.
        given = {"ratings.csv": pd.DataFrame({**written, "score": scores})}
        if likes is not None:
            out_likes = likes[["user", "image"]].copy()
            out_likes["user"] = out_likes["user"].astype(str)
            out_likes.to_csv(tmp / "likes.csv", index=False)
        if attributes is not None:
            names = [c for c in attributes.columns if c not in ("user", "image", "image_index")]
            written = {"user": attributes["user"].astype(str).to_numpy(dtype=object), "image": attributes["image"].astype(str).to_numpy(dtype=object)}
            same = len(attributes) == len(ratings) and all(np.array_equal(written[c], rating_written[c]) for c in written)
            values = _write_table(tmp / ATTRIBUTES, written, {c: attributes[c] for c in names}, id_cols=rating_ids if same else None)
            given[ATTRIBUTES] = pd.DataFrame({**written, **values})
        for name, text in (extra_files or {}).items():
            if Path(name).name != name or name in ("dataset.json", "ratings.csv", "users.csv", "images.csv", "features.npy", "likes.csv", ATTRIBUTES):
                raise ValueError(f"extra file name {name!r} must be a plain file name that is not part of the format")
            (tmp / name).write_text(text, encoding="utf-8")
        _read_dataset(tmp, given=given).image_split()  # never publish a dataset read_dataset (or image_split) would refuse
    return final
