"""PsychoFlickr (Cristani et al. / Segalin et al.): users with Big-Five scores and the images they
liked → "personality" raters with likes.csv, merged into an existing rating dataset in one step.

Accepted inputs:
- the per-image form used by the PA-IAA code: one line per liked image, space-separated: the image
  path, then five trait values in [-1, 1] (O, C, E, A, N). The user is the folder the image sits in
  (`user_from="folder"`), or, when paths carry no folder, the distinct trait vector (`"traits"`);
- a per-user table (CSV: `user` and the five traits, by full name or as O,C,E,A,N) with a likes
  table (CSV: `user,image`).
Image ids are file names (the last path component), the way FLICKR-AES names its images.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from piaa.errors import DataError
from piaa.tasks.feature_store import FeatureStore, open_store
from piaa.tasks.format import BIG_FIVE, read_dataset, write_dataset
from piaa.tasks.importers.common import ImportReport, ParsedDataset, gather_features, match_features, read_table, read_text_lines, require_file
from piaa.tasks.importers.registry import Importer, Option

_LETTERS = dict(zip("OCEAN", BIG_FIVE))


def _check_traits(values: np.ndarray, file: str, lines: np.ndarray, fields: list[str]) -> None:
    bad = ~np.isfinite(values) | (values < -1) | (values > 1)
    if bad.any():
        r, c = map(int, np.argwhere(bad)[0])
        raise DataError(file, f"expected a Big-Five value in [-1, 1], got {float(values[r, c]):g}", line=int(lines[r]), field=fields[c])


def read_per_image(path: str | Path, *, user_from: str = "auto") -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """The PA-IAA per-image file → (users with Big-Five, likes, how users were identified)."""
    path = require_file(path, "the per-image file: image path and five trait values per line")
    images, traits, lines = [], [], []
    for i, line in enumerate(read_text_lines(path)):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 6:
            raise DataError(str(path), f"expected an image path and five trait values (O C E A N), got {len(parts)} field(s)", line=i + 1)
        try:
            traits.append([float(v) for v in parts[-5:]])
        except ValueError:
            raise DataError(str(path), f"expected five numbers after the image path, got {' '.join(parts[-5:])!r}", line=i + 1) from None
        images.append(" ".join(parts[:-5]).replace("\\", "/"))
        lines.append(i + 1)
    if not images:
        raise DataError(str(path), "holds no lines")
    values = np.asarray(traits, dtype=np.float64)
    lines_arr = np.asarray(lines)
    _check_traits(values, str(path), lines_arr, list(BIG_FIVE))
    folders = [str(PurePosixPath(p).parent) for p in images]
    if user_from == "auto":
        user_from = "folder" if all(f not in ("", ".") for f in folders) else "traits"
    if user_from == "folder":
        user_ids = [PurePosixPath(f).name for f in folders]
    elif user_from == "traits":
        keys = [tuple(np.round(v, 6)) for v in values]
        order: dict[tuple, str] = {}
        for k in keys:
            order.setdefault(k, f"pf{len(order) + 1:04d}")
        user_ids = [order[k] for k in keys]
    else:
        raise DataError(str(path), f"user_from must be 'folder', 'traits' or 'auto', got {user_from!r}")
    frame = pd.DataFrame(values, columns=list(BIG_FIVE))
    frame.insert(0, "user", user_ids)
    frame["_line"] = lines_arr
    # One user, one personality: every line of a user must carry the same five values.
    first = frame.groupby("user", sort=False)[list(BIG_FIVE)].transform("first")
    differs = ~np.isclose(frame[list(BIG_FIVE)].to_numpy(), first.to_numpy(), atol=1e-6).all(axis=1)
    if differs.any():
        r = int(np.flatnonzero(differs)[0])
        raise DataError(str(path), f"user {user_ids[r]!r} (from the image folder) has different Big-Five values on different lines", line=int(lines_arr[r]))
    users = frame.drop_duplicates("user")[["user", *BIG_FIVE]].reset_index(drop=True)
    likes = pd.DataFrame({"user": user_ids, "image": [PurePosixPath(p).name for p in images]}).drop_duplicates().reset_index(drop=True)
    return users, likes, user_from


def read_per_user(users_file: str | Path, likes_file: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A per-user Big-Five table plus a user,image likes table."""
    users_path = require_file(users_file, "a CSV with user and the five Big-Five columns")
    df = read_table(users_path, ["user"])
    rename = {c: _LETTERS[c.upper()] for c in df.columns if c.upper() in _LETTERS and len(c) == 1}
    rename.update({c: c.lower() for c in df.columns if c.lower() in BIG_FIVE})
    df = df.rename(columns=rename)
    for col in BIG_FIVE:
        if col not in df.columns:
            raise DataError(str(users_path), f"missing column '{col}' (or its letter {col[0].upper()})", line=1)
    values = df[list(BIG_FIVE)].apply(lambda s: pd.to_numeric(s.str.strip(), errors="coerce")).to_numpy(dtype=np.float64)
    _check_traits(values, str(users_path), np.arange(len(df)) + 2, list(BIG_FIVE))
    users = pd.DataFrame(values, columns=list(BIG_FIVE))
    users.insert(0, "user", df["user"].str.strip())
    dup = users["user"].duplicated().to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise DataError(str(users_path), f"user {users['user'].iloc[i]!r} is listed twice", line=i + 2, field="user")
    likes_path = require_file(likes_file, "a CSV with columns user,image")
    likes = read_table(likes_path, ["user", "image"])
    likes = pd.DataFrame({"user": likes["user"].str.strip(), "image": likes["image"].str.strip().map(lambda p: PurePosixPath(p.replace("\\", "/")).name)})
    unknown = ~likes["user"].isin(set(users["user"]))
    if unknown.any():
        i = int(np.flatnonzero(unknown.to_numpy())[0])
        raise DataError(str(likes_path), f"user {likes['user'].iloc[i]!r} is not in {users_path.name}", line=i + 2, field="user")
    return users, likes.drop_duplicates().reset_index(drop=True)


def parse_psychoflickr(
    *, per_image: str | Path | None = None, users: str | Path | None = None, likes: str | Path | None = None, user_from: str = "auto", user_prefix: str = ""
) -> ParsedDataset:
    """Parse either form into personality raters (no ratings, likes only)."""
    notes = []
    if per_image is not None:
        if users is not None or likes is not None:
            raise DataError("psychoflickr", "give either the per-image file or --users with --likes, not both")
        table, liked, how = read_per_image(per_image, user_from=user_from)
        notes.append(f"{per_image}: users identified by {'image folder' if how == 'folder' else 'distinct Big-Five vector'}")
        source = {"form": "per-image", "file": str(per_image), "users_from": how}
    elif users is not None and likes is not None:
        table, liked = read_per_user(users, likes)
        source = {"form": "per-user", "users": str(users), "likes": str(likes)}
    else:
        raise DataError("psychoflickr", "give --per-image FILE, or --users FILE together with --likes FILE")
    if user_prefix:
        table = table.assign(user=user_prefix + table["user"])
        liked = liked.assign(user=user_prefix + liked["user"])
    table.insert(1, "split", "personality")
    no_likes = sorted(set(table["user"]) - set(liked["user"]))
    if no_likes:
        notes.append(f"{len(no_likes)} personality user(s) have no liked images, e.g. {no_likes[0]!r}")
    notes.append(f"{len(table)} personality users, {len(liked):,} likes of {liked['image'].nunique():,} images")
    return ParsedDataset(
        name="PsychoFlickr",
        score_range=(1.0, 5.0),
        ratings=pd.DataFrame({"user": pd.Series(dtype=str), "image": pd.Series(dtype=str), "score": pd.Series(dtype=np.float32)}),
        users=table,
        likes=liked,
        meta={"personality_source": {"dataset": "PsychoFlickr", **source}},
        notes=notes,
    )


def merge_personality(
    parsed: ParsedDataset,
    into: str | Path,
    out: str | Path,
    *,
    features: str | Path | FeatureStore | None = None,
    drop_missing: bool = False,
    overwrite: bool = False,
) -> ImportReport:
    """Write `into` plus the personality raters of `parsed` (and their likes) as a new dataset at `out`.

    Liked images already in `into` reuse its features; new ones come from `features`, a store that
    must have the same backbone and dimension as `into`.
    """
    data = read_dataset(into)
    clash = sorted(set(parsed.users["user"]) & set(data.users["user"]))
    if clash:
        raise DataError("psychoflickr", f"{len(clash)} personality user id(s) already exist in {into}, e.g. {clash[0]!r} (use --user-prefix)")
    likes = parsed.likes
    known = set(data.images)
    new_images = [im for im in dict.fromkeys(likes["image"]) if im not in known]
    notes = list(parsed.notes)
    dropped = {"images": 0, "ratings": 0, "likes": 0, "distributions": 0}
    new_features = np.zeros((0, data.feature_dim), dtype=data.features.dtype)
    if new_images:
        if features is None:
            raise DataError("psychoflickr", f"{len(new_images)} liked images are not in {into}, e.g. {new_images[0]!r}; give --features STORE (same backbone as the dataset) for them")
        store = features if isinstance(features, FeatureStore) else open_store(features)
        backbone = data.meta.get("backbone")
        if store.dim != data.feature_dim or (backbone and store.backbone != backbone):
            raise DataError(str(store.path), f"features are {store.backbone} ({store.dim}-d) but {into} uses {backbone} ({data.feature_dim}-d); extract with the same backbone")
        extra = ParsedDataset(name=parsed.name, score_range=data.score_range, ratings=parsed.ratings, users=parsed.users, likes=likes[likes["image"].isin(set(new_images))].reset_index(drop=True), image_match="name")
        new_images, rows, extra, dropped, more = match_features(extra, store, drop_missing=drop_missing)
        notes += more
        if dropped["images"]:
            likes = pd.concat([likes[likes["image"].isin(known)], extra.likes], ignore_index=True)
        new_features = gather_features(store, rows).astype(data.features.dtype)
    base_likes = None if data.likes is None else data.likes[["user", "image"]]
    all_likes = likes if base_likes is None else pd.concat([base_likes, likes], ignore_index=True)
    users = pd.concat([data.users, parsed.users[["user", "split", *BIG_FIVE]]], ignore_index=True)
    meta = {**data.meta, **parsed.meta}
    meta["import_notes"] = list(data.meta.get("import_notes", [])) + notes
    meta["merged_from"] = str(Path(into).resolve())
    path = write_dataset(
        out, name=data.name, score_range=data.score_range, ratings=data.ratings[["user", "image", "score"]], users=users,
        images=list(data.images) + list(new_images), features=np.concatenate([np.asarray(data.features), new_features]),
        likes=all_likes, meta=meta, overwrite=overwrite, attributes=data.attributes,
    )
    splits = users["split"].value_counts()
    return ImportReport(path=path, images=len(data.images) + len(new_images), ratings=len(data.ratings), raters={s: int(splits.get(s, 0)) for s in ("train", "test", "personality")}, dropped=dropped, notes=notes)


def _merge(parsed: ParsedDataset, features, out, *, drop_missing: bool, overwrite: bool, into) -> ImportReport:
    return merge_personality(parsed, into, out, features=features, drop_missing=drop_missing, overwrite=overwrite)


IMPORTER = Importer(
    summary="PsychoFlickr: Big-Five users and their liked images, merged into a rating dataset in one step.",
    parse=parse_psychoflickr,
    options=(
        Option("into", "Rating dataset to add the personality raters to (required unless --dry-run).", for_write=True),
        Option("per_image", "Space-separated file: image path, then O C E A N in [-1, 1]."),
        Option("users", "CSV: user and the five Big-Five columns (names or O,C,E,A,N)."),
        Option("likes", "CSV: user,image (with --users)."),
        Option("user_from", "Per-image form: users are image folders ('folder') or distinct trait vectors ('traits').", type=str, default="auto"),
        Option("user_prefix", "Prefix for personality user ids (to avoid clashes).", type=str, default=""),
    ),
    write=_merge,
    needs=("into", "out"),
    needs_message="give --into DATASET and --out DIR: personality raters are merged into a rating dataset (or --dry-run)",
    help={"features": "Feature store for liked images not already in --into (same backbone)."},
)
