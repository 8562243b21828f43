"""PARA (Yang et al., CVPR 2022) in its published form → a rater dataset with Big-Five, rater
attributes and per-rating attribute scores.

Accepted inputs (see docs/datasets.md):
- `annotation/PARA-Images.csv`: one row per (rater, image): sessionId, imageName, userId,
  aestheticScore (1..5 in half steps), the attribute scores (qualityScore, compositionScore,
  colorScore, dofScore, contentScore, lightScore, contentPreference, willingnessToShare,
  difficultyOfJudgment, and in some copies isObjectEmphasis) and the labels imgEmotion, semantic;
- `annotation/PARA-UserInfo.csv`: userId, age, gender, EducationalLevel, artExperience,
  photographyExperience and personality-E, -A, -N, -O, -C;
- optionally `annotation/PARA-GiaaTrain.csv` and `PARA-GiaaTest.csv`, the release's image-level GIAA
  split (imageName, sessionId, score distribution and attribute statistics per image): only the image
  names are read, and kept as giaa_split.csv (image,split) beside the dataset.
Header names are matched ignoring case, spaces, `-` and `_` (so `personality_E` and `userid` work),
and the delimiter is taken from the header line (comma, semicolon, tab or `|`).

Big-Five: PARA stores each trait as a BFI-10 score (two 1..5 items summed: 2..10). piaa's form is
O, C, E, A, N in [-1, 1]; the mapping is linear and invertible:

    b = (v - (lo + hi) / 2) / ((hi - lo) / 2)        v = (lo + hi) / 2 + b · (hi - lo) / 2

with (lo, hi) = (2, 10) by default (`big_five_range`); the range used is written to dataset.json.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from piaa.errors import DataError
from piaa.tasks.format import BIG_FIVE, IMAGE_SPLIT
from piaa.tasks.importers.common import (
    ParsedDataset,
    find_columns,
    numeric_column,
    parse_range,
    rater_split,
    split_options,
    read_fast_table,
    read_header,
    require_file,
    sniff_delimiter,
    text_column,
)
from piaa.tasks.importers.registry import Importer, Option

IMAGES_FILE = "PARA-Images.csv"
USERS_FILE = "PARA-UserInfo.csv"
GIAA_FILES = {"train": "PARA-GiaaTrain.csv", "test": "PARA-GiaaTest.csv"}
SCORE_RANGE = (1.0, 5.0)
BIG_FIVE_RANGE = (2.0, 10.0)  # BFI-10: each trait is the sum of two 1..5 items
N_TEST = 40  # derived split: test raters drawn among raters with enough ratings
MIN_TEST_RATINGS = 110  # enough for the 100-shot protocol plus 10 query images

# piaa attribute name -> accepted spellings in PARA-Images.csv
ATTRIBUTE_COLUMNS: dict[str, tuple[str, ...]] = {
    "quality": ("qualityScore", "quality"),
    "composition": ("compositionScore", "composition"),
    "color": ("colorScore", "colourScore", "color"),
    "dof": ("dofScore", "depthOfFieldScore", "dof"),
    "content": ("contentScore", "content"),
    "light": ("lightScore", "light"),
    "content_preference": ("contentPreference",),
    "willingness_to_share": ("willingnessToShare",),
    "difficulty": ("difficultyOfJudgment", "difficultyOfJudgement", "difficulty"),
    "object_emphasis": ("isObjectEmphasis", "objectEmphasis"),
}
LABEL_COLUMNS = {"emotion": ("imgEmotion", "emotion"), "scene": ("semantic", "sceneCategory")}
RATING_COLUMNS = {
    "session": ("sessionId", "session"),
    "image": ("imageName", "image", "imgName"),
    "user": ("userId", "user", "user_id"),
    "score": ("aestheticScore", "aesthetic", "score"),
}
# piaa's rater-attribute name -> accepted spellings in PARA-UserInfo.csv
RATER_COLUMNS = {
    "user": ("userId", "user", "user_id"),
    "age": ("age",),
    "gender": ("gender",),
    "education": ("EducationalLevel", "educationLevel", "education"),
    "art_experience": ("artExperience",),
    "photography_experience": ("photographyExperience", "photoExperience"),
}
TRAIT_COLUMNS = {trait: (f"personality-{trait[0].upper()}", trait, trait[0].upper()) for trait in BIG_FIVE}


def para_to_big_five(values: np.ndarray, value_range: tuple[float, float] = BIG_FIVE_RANGE) -> np.ndarray:
    """PARA trait scores (lo..hi) → piaa's [-1, 1]."""
    lo, hi = value_range
    return (np.asarray(values, dtype=np.float64) - (lo + hi) / 2) / ((hi - lo) / 2)


def big_five_to_para(values: np.ndarray, value_range: tuple[float, float] = BIG_FIVE_RANGE) -> np.ndarray:
    """The inverse of `para_to_big_five`: piaa's [-1, 1] → PARA's trait scores."""
    lo, hi = value_range
    return (lo + hi) / 2 + np.asarray(values, dtype=np.float64) * ((hi - lo) / 2)


def read_para_ratings(path: Path, notes: list[str]) -> tuple[pd.DataFrame, pd.DataFrame | None, pd.Series, pd.Index]:
    """PARA-Images.csv → (ratings user,image,score; attributes user,image,<numeric attributes>;
    ratings per rater; the rated images), counted from the one factorisation the duplicate check needs."""
    sep = sniff_delimiter(path)
    cols = find_columns(path, read_header(path, sep), {**RATING_COLUMNS, **ATTRIBUTE_COLUMNS, **LABEL_COLUMNS}, required=("image", "user", "score"))
    keep = [cols[k] for k in ("image", "user", "score", *ATTRIBUTE_COLUMNS) if k in cols]  # labels and sessions are not kept
    df = read_fast_table(path, sep=sep, text=[cols["image"], cols["user"]], usecols=keep)
    ratings = pd.DataFrame({
        "user": text_column(df, cols["user"], path),
        "image": text_column(df, cols["image"], path),
        "score": numeric_column(df, cols["score"], path, lo=SCORE_RANGE[0], hi=SCORE_RANGE[1]).astype(np.float32),
    })
    names = [a for a in ATTRIBUTE_COLUMNS if a in cols]
    attributes = None
    if names:
        attributes = pd.DataFrame({"user": ratings["user"], "image": ratings["image"]})
        for name in names:
            attributes[name] = numeric_column(df, cols[name], path, allow_empty=True).astype(np.float32)
    missing = [ATTRIBUTE_COLUMNS[a][0] for a in ATTRIBUTE_COLUMNS if a not in cols and a != "object_emphasis"]
    if missing:
        notes.append(f"{path.name}: no column(s) {', '.join(missing)}; those attributes are not kept")
    labels = [cols[k] for k in LABEL_COLUMNS if k in cols]
    if labels:
        notes.append(f"{path.name}: categorical label(s) {', '.join(labels)} are not kept (attributes.csv holds numeric scores only)")
    user_code, user_names = pd.factorize(ratings["user"])
    image_code, images = pd.factorize(ratings["image"])
    dup = pd.Series(user_code.astype(np.int64) * max(len(images), 1) + image_code).duplicated().to_numpy()
    counts = pd.Series(np.bincount(user_code, minlength=len(user_names)), index=pd.Index(user_names, name="user"))
    if dup.any():
        n = int(dup.sum())
        notes.append(f"{path.name}: {n} repeated (user, image) rows; scores and attributes averaged per pair")
        ratings = ratings.groupby(["user", "image"], sort=False, as_index=False)["score"].mean()
        if attributes is not None:
            attributes = attributes.groupby(["user", "image"], sort=False, as_index=False)[names].mean()
        counts = ratings.groupby("user", sort=False).size()
    return ratings, attributes, counts.sort_index(), pd.Index(images)


def read_para_users(path: Path, big_five_range: tuple[float, float]) -> pd.DataFrame:
    """PARA-UserInfo.csv → user, five Big-Five columns in [-1, 1], rater attributes as text."""
    df = read_fast_table(path)
    cols = find_columns(path, list(df.columns), {**RATER_COLUMNS, **TRAIT_COLUMNS}, required=("user", *BIG_FIVE))
    users = pd.DataFrame({"user": text_column(df, cols["user"], path)})
    lo, hi = big_five_range
    for trait in BIG_FIVE:
        raw = numeric_column(df, cols[trait], path, allow_empty=True)
        bad = np.isfinite(raw) & ((raw < lo) | (raw > hi))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(
                str(path), f"expected a Big-Five score in {lo:g}..{hi:g}{' (BFI-10 sums)' if (lo, hi) == BIG_FIVE_RANGE else ''}, got {df[cols[trait]].iloc[i]!r}; "
                "if your copy uses another scale, give its range (--big-five-range LO,HI)", line=i + 2, field=cols[trait],
            )
        users[trait] = para_to_big_five(raw, big_five_range).astype(np.float32)
    for name in ("age", "gender", "education", "art_experience", "photography_experience"):
        if name in cols:
            users[name] = df[cols[name]].str.strip()
    dup = users["user"].duplicated().to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise DataError(str(path), f"user {users['user'].iloc[i]!r} is listed twice", line=i + 2, field=cols["user"])
    return users


def read_giaa_images(path: Path) -> list[str]:
    """The image names of one GIAA split file (its imageName column), in file order."""
    sep = sniff_delimiter(path)
    cols = find_columns(path, read_header(path, sep), {"image": RATING_COLUMNS["image"]}, required=("image",))
    df = read_fast_table(path, sep=sep, text=[cols["image"]], usecols=[cols["image"]])
    return text_column(df, cols["image"], path).tolist()


def giaa_split(paths: dict[str, Path], rated: pd.Index, notes: list[str]) -> pd.DataFrame:
    """image,split for the rated images named in PARA's GIAA split files. An image in both files is
    an error; images the ratings do not have, or rated images in neither file, are counted in notes."""
    frames = []
    for split, path in paths.items():
        names = pd.Series(read_giaa_images(path), dtype=object)
        frames.append(pd.DataFrame({"image": names, "split": split, "line": np.arange(len(names)) + 2, "file": str(path)}))
    table = pd.concat(frames, ignore_index=True)
    first = table.drop_duplicates("image")
    clash = table[table["image"].duplicated() & (table["split"] != table["image"].map(first.set_index("image")["split"]))]
    if len(clash):
        row = clash.iloc[0]
        raise DataError(row["file"], f"image {row['image']!r} is also in {paths['train'].name} (an image belongs to one GIAA split)", line=int(row["line"]), field="imageName")
    repeated = len(table) - len(first)
    unrated = int((~first["image"].isin(rated)).sum())
    kept = first[first["image"].isin(rated)][["image", "split"]].reset_index(drop=True)
    missing = len(rated) - len(kept)
    counts = kept["split"].value_counts()
    notes.append(
        f"GIAA image split from {', '.join(p.name for p in paths.values())}: {int(counts.get('train', 0)):,} train and "
        f"{int(counts.get('test', 0)):,} test images, written to giaa_split.csv"
        + (f"; {unrated:,} listed image(s) have no ratings and are left out" if unrated else "")
        + (f"; {missing:,} rated image(s) are in neither file" if missing else "")
        + (f"; {repeated:,} repeated line(s) ignored" if repeated else "")
    )
    return kept


def parse_para(
    root: str | Path | None = None,
    *,
    images_csv: str | Path | None = None,
    users_csv: str | Path | None = None,
    giaa_train: str | Path | None = None,
    giaa_test: str | Path | None = None,
    test_raters: str | Path | None = None,
    seed: int = 0,
    n_test: int = N_TEST,
    min_test_ratings: int = MIN_TEST_RATINGS,
    big_five_range: tuple[float, float] | str = BIG_FIVE_RANGE,
) -> ParsedDataset:
    """Parse PARA. The two CSVs default to `root/annotation/` (or `root/` itself)."""
    lo, hi = big_five_range = parse_range(big_five_range, "--big-five-range")
    root = Path(root) if root is not None else None

    def locate(given, name: str) -> Path:
        if given is not None:
            return require_file(given, name)
        if root is None:
            raise DataError("para", f"give --root (the PARA folder) or the path of {name}")
        for candidate in (root / "annotation" / name, root / name):
            if candidate.is_file():
                return candidate
        raise DataError(str(root), f"holds neither annotation/{name} nor {name}")

    images_path, users_path = locate(images_csv, IMAGES_FILE), locate(users_csv, USERS_FILE)
    notes: list[str] = []
    ratings, attributes, counts, rated_images = read_para_ratings(images_path, notes)
    info = read_para_users(users_path, big_five_range)
    giaa_paths = {}
    for split, given in (("train", giaa_train), ("test", giaa_test)):
        if given is not None:
            giaa_paths[split] = require_file(given, f"{GIAA_FILES[split]} (PARA's image-level GIAA split)")
        else:
            found = [c for c in (images_path.parent / GIAA_FILES[split], *([root / GIAA_FILES[split]] if root is not None else [])) if c.is_file()]
            if found:
                giaa_paths[split] = found[0]
    image_split = None
    if len(giaa_paths) == 2:
        image_split = giaa_split(giaa_paths, rated_images, notes)
    elif giaa_paths:
        (split, path), = giaa_paths.items()
        other = GIAA_FILES["test" if split == "train" else "train"]
        notes.append(f"found {path.name} but not {other}; the GIAA image split needs both and is not kept")

    rated = set(counts.index.tolist())
    unrated = sorted(set(info["user"]) - rated)
    if unrated:
        notes.append(f"{users_path.name}: {len(unrated)} user(s) have no ratings and are left out, e.g. {unrated[0]!r}")
    no_info = sorted(rated - set(info["user"]))
    if no_info:
        notes.append(f"{images_path.name}: {len(no_info)} rater(s) are missing from {users_path.name}; their Big-Five and attributes are unknown, e.g. {no_info[0]!r}")

    split_users, split = rater_split(counts, dataset="para", test_raters=test_raters, seed=seed, n_test=n_test, min_test_ratings=min_test_ratings, notes=notes)
    users = split_users.merge(info, on="user", how="left")
    known = int(users[list(BIG_FIVE)].notna().all(axis=1).sum())
    notes.append(
        f"{len(ratings):,} ratings of {len(rated_images):,} images by {len(counts)} raters; Big-Five known for {known}, "
        f"mapped from {lo:g}..{hi:g} to [-1, 1]"
    )
    return ParsedDataset(
        name="PARA",
        score_range=SCORE_RANGE,
        ratings=ratings,
        users=users,
        attributes=attributes,
        meta={
            "source": "PARA",
            "images_csv": str(images_path),
            "users_csv": str(users_path),
            "split": split,
            "big_five": {"source": "PARA-UserInfo.csv (BFI-10)", "range": [lo, hi], "mapping": "b = (v - (lo + hi) / 2) / ((hi - lo) / 2)"},
            **({"giaa_split": {"files": [str(p) for p in giaa_paths.values()], "file": IMAGE_SPLIT,
                               **{s: int((image_split["split"] == s).sum()) for s in ("train", "test")}}} if image_split is not None else {}),
        },
        notes=notes,
        image_split=image_split,
    )


IMPORTER = Importer(
    summary="PARA: 31,220 images rated by 438 raters with Big-Five, rater attributes and per-rating attribute scores.",
    parse=parse_para,
    options=(
        Option("root", "PARA folder (holding annotation/PARA-Images.csv and annotation/PARA-UserInfo.csv)."),
        Option("images_csv", "PARA-Images.csv (default: found in --root)."),
        Option("users_csv", "PARA-UserInfo.csv (default: found in --root)."),
        Option("giaa_train", "PARA-GiaaTrain.csv, the image-level GIAA split's train images (default: found beside PARA-Images.csv)."),
        Option("giaa_test", "PARA-GiaaTest.csv, the image-level GIAA split's test images (default: found beside PARA-Images.csv)."),
        *split_options("test_raters", n_test=N_TEST, min_test_ratings=MIN_TEST_RATINGS),
        Option("big_five_range", "Range of PARA's Big-Five scores, mapped linearly onto [-1, 1].", type=str, default="2,10"),
    ),
    help={"out": "Rater-dataset directory to create."},
)
