"""What every native importer shares: the parsed result, feature matching and the atomic write.

An importer parses the published files into a `ParsedDataset` (no features yet). `write_import`
then looks every image up in a feature store, refuses (or, with `drop_missing`, drops and counts)
images without features, and writes the rater-dataset directory in one atomic step.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from piaa.errors import DataError
from piaa.seeding import numpy_rng
from piaa.tasks.feature_store import FeatureStore, open_store
from piaa.tasks.format import BIG_FIVE, IMAGE_SPLIT, file_has_edge_space, strip_text, write_dataset
from piaa.tasks.importers.registry import Option


@dataclass
class ParsedDataset:
    """A native dataset parsed into rater-dataset tables, before features are attached."""

    name: str
    score_range: tuple[float, float]
    ratings: pd.DataFrame  # user, image, score
    users: pd.DataFrame  # user, split (+ Big-Five)
    likes: pd.DataFrame | None = None
    distributions: pd.DataFrame | None = None  # image, n1..nK (AVA)
    meta: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the user must know (derived split, dropped rows)
    image_match: str = "name"  # how images are found in a feature store: "name" or "stem"
    attributes: pd.DataFrame | None = None  # user, image + numeric per-rating attribute scores (PARA)
    evaluation_only: bool = False  # test raters only (REAL-CUR): no train raters required
    image_split: pd.DataFrame | None = None  # image, split: an image-level split published with the dataset (PARA's GIAA split)

    def image_names(self) -> list[str]:
        frames = [f["image"] for f in (self.ratings, self.likes, self.distributions) if f is not None]
        return pd.unique(pd.concat(frames, ignore_index=True)).tolist() if frames else []  # first-seen order

    def summary(self) -> list[tuple[str, str]]:
        splits = self.users["split"].value_counts()
        raters = ", ".join(f"{int(splits.get(s, 0))} {s}" for s in ("train", "test", "personality") if splits.get(s, 0))
        rows = [
            ("raters", raters or "none"),
            ("images", f"{len(self.image_names()):,}"),
            ("ratings", f"{len(self.ratings):,}"),
        ]
        if self.likes is not None:
            rows.append(("likes", f"{len(self.likes):,}"))
        if self.distributions is not None:
            rows.append(("score distributions", f"{len(self.distributions):,}"))
        if self.attributes is not None:
            names = [c for c in self.attributes.columns if c not in ("user", "image")]
            rows.append(("attributes", f"{len(names)} per rating: {', '.join(names)}"))
        if self.image_split is not None:
            counts = self.image_split["split"].value_counts()
            rows.append(("image split (GIAA)", ", ".join(f"{int(counts.get(s, 0)):,} {s}" for s in ("train", "test"))))
        extra = [c for c in self.users.columns if c not in ("user", "split", *BIG_FIVE)]
        if extra:
            rows.append(("rater attributes", ", ".join(extra)))
        known = self.users[[c for c in BIG_FIVE if c in self.users.columns]].notna().all(axis=1) if all(c in self.users.columns for c in BIG_FIVE) else None
        if known is not None:
            rows.append(("Big-Five known", f"{int(known.sum())} of {len(self.users)} raters"))
        return rows


# -- helpers for parsers -------------------------------------------------------------------------
def require_file(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DataError(str(path), f"not found (expected {what})")
    return path


def head_lines(path: Path, n: int = 5) -> list[str]:
    """The first `n` lines of a text file, without reading the rest (headers of large files)."""
    lines = []
    try:
        with open(path, encoding="utf-8-sig") as fh:
            for _ in range(n):
                line = fh.readline()
                if not line:
                    break
                lines.append(line.rstrip("\r\n"))
    except UnicodeDecodeError:
        with open(path, encoding="latin-1") as fh:
            lines = [fh.readline().rstrip("\r\n") for _ in range(n)]
    return lines


def read_text_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError:
        return path.read_text(encoding="latin-1").splitlines()


def read_table(path: Path, required: list[str], *, sep: str | None = ",") -> pd.DataFrame:
    """A CSV (or whitespace table when `sep=None`) as strings, header names stripped, columns checked."""
    try:
        if sep is None:
            df = pd.read_csv(path, sep=r"\s+", dtype=str, keep_default_na=False)
        else:
            df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, skipinitialspace=True, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise DataError(str(path), "file is empty; expected a header line") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(str(path), f"cannot be parsed ({str(exc).splitlines()[0]})") from None
    df.columns = [str(c).strip() for c in df.columns]
    for col in required:
        if col not in df.columns:
            raise DataError(str(path), f"missing column '{col}' (header has: {', '.join(df.columns) or 'nothing'})", line=1)
    return df


def parse_scores(values: pd.Series, file: str, field_name: str, lo: float, hi: float, *, integer: bool, line_offset: int = 2, lines: np.ndarray | None = None) -> np.ndarray:
    """Scores as float32, checked to be numbers (integers when `integer`) in [lo, hi]."""
    text = values.astype(str).str.strip()
    nums = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(nums) | (nums < lo) | (nums > hi)
    if integer:
        bad |= np.isfinite(nums) & (nums != np.round(nums))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        line = int(lines[i]) if lines is not None else i + line_offset
        kind = "an integer" if integer else "a number"
        raise DataError(file, f"expected {kind} in {lo:g}..{hi:g}, got {text.iloc[i]!r}", line=line, field=field_name)
    return nums.astype(np.float32)


def collapse_duplicates(ratings: pd.DataFrame, notes: list[str], file: str) -> pd.DataFrame:
    """One rating per (user, image): repeated identical ratings collapse; conflicting ones average."""
    dup = ratings.duplicated(["user", "image"], keep=False)
    if not dup.any():
        return ratings
    groups = ratings[dup].groupby(["user", "image"], sort=False)["score"]
    conflicting = int((groups.nunique() > 1).sum())
    n_pairs = groups.ngroups
    merged = ratings.groupby(["user", "image"], sort=False, as_index=False)["score"].mean()
    notes.append(
        f"{file}: {n_pairs} (worker, image) pairs were rated more than once; "
        f"{n_pairs - conflicting} identical repeats collapsed, {conflicting} conflicting ones averaged"
    )
    return merged


def read_worker_list(path: str | Path) -> tuple[list[str], str, list[int]]:
    """Worker ids from a split file: a CSV with header `ID` (one id per line, as circulated with
    later PIAA code) or a whitespace-separated table with a `worker` column (older code). Returns
    (ids, description of the form found, the line of each id)."""
    path = require_file(path, "a worker list: a CSV with header ID, or a space-separated table with a worker column")
    lines = read_text_lines(path)
    header_line = next((i for i, l in enumerate(lines) if l.strip()), None)
    if header_line is None:
        raise DataError(str(path), "file is empty; expected a header ID or a worker column")
    header = lines[header_line]
    comma_cols = [c.strip() for c in header.split(",")]
    space_cols = header.split()
    if ("," in header or len(space_cols) == 1) and any(c.lower() in ("id", "worker", "workerid") for c in comma_cols):
        col = next(c for c in comma_cols if c.lower() in ("id", "worker", "workerid"))
        df = read_table(path, [col])
        ids, form = df[col].str.strip(), f"CSV with column {col}"
        lines_no = np.arange(len(df)) + header_line + 2
    elif any(c.lower() in ("id", "worker", "workerid") for c in space_cols):
        col = next(c for c in space_cols if c.lower() in ("id", "worker", "workerid"))
        rows = [l.split() for l in lines[header_line + 1 :]]
        width = len(space_cols)
        ids_list, lines_list = [], []
        for k, parts in enumerate(rows):
            if not parts:
                continue
            if len(parts) != width:
                raise DataError(str(path), f"expected {width} space-separated fields like the header, got {len(parts)}", line=header_line + 2 + k)
            ids_list.append(parts[space_cols.index(col)])
            lines_list.append(header_line + 2 + k)
        ids, form = pd.Series(ids_list, dtype=str), f"space-separated table with column {col}"
        lines_no = np.asarray(lines_list)
    else:
        raise DataError(str(path), f"expected a header 'ID' (CSV) or a 'worker' column (space-separated), got {header.strip()!r}", line=header_line + 1)
    keep = (ids != "").to_numpy()
    ids, lines_no = ids[keep].reset_index(drop=True), np.asarray(lines_no)[keep]
    dup = ids.duplicated().to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise DataError(str(path), f"worker {ids.iloc[i]!r} is listed twice", line=int(lines_no[i]))
    if ids.empty:
        raise DataError(str(path), "lists no workers")
    return ids.tolist(), form, [int(n) for n in lines_no]


def apply_test_list(users: list[str], test_ids: list[str], lines: list[int], path: str) -> pd.DataFrame:
    """Listed workers are test raters, everyone else train; a listed worker without ratings is an error."""
    known = set(users)
    for worker, line in zip(test_ids, lines):
        if worker not in known:
            raise DataError(str(path), f"test worker {worker!r} has no ratings in the dataset (unknown worker; is this the split file for this dataset?)", line=line)
    test = set(test_ids)
    return pd.DataFrame({"user": users, "split": ["test" if u in test else "train" for u in users]})


def derive_test_split(counts: pd.Series, *, n_test: int, min_ratings: int, max_ratings: float, seed: int, dataset: str) -> tuple[pd.DataFrame, str]:
    """Seeded choice of `n_test` test raters among raters with min..max ratings; the rest train."""
    eligible = sorted(str(u) for u, n in counts.items() if min_ratings <= n <= max_ratings)
    if len(eligible) < n_test:
        raise DataError(
            dataset,
            f"cannot derive a split: only {len(eligible)} raters have {min_ratings}-{max_ratings:g} ratings but {n_test} test raters are needed (give a test-worker list)",
        )
    rng = numpy_rng("split", dataset, seed)
    test = set(np.asarray(eligible)[rng.permutation(len(eligible))[:n_test]].tolist())
    users = sorted(str(u) for u in counts.index)
    rule = f"{n_test} test raters drawn with seed {seed} among the {len(eligible)} raters with {min_ratings}-{max_ratings:g} ratings"
    return pd.DataFrame({"user": users, "split": ["test" if u in test else "train" for u in users]}), rule


SPLIT_FILE = "test_raters.csv"

# The test-list option's help, by option name: FLICKR-AES/AADB ship worker lists, PARA/LAPIS loaders circulate rater lists.
_TEST_LIST_HELP = {
    "test_workers": "Test-worker list: CSV with header ID, or space-separated with a worker column.",
    "test_raters": "Test-rater list: one id per line (e.g. TestUserIDs_Fold1.txt), or a CSV with header ID.",
}


def split_options(
    test_list: str = "test_raters", *, n_test: int | None = None, test_share: float | None = None, min_test_ratings: int | None = None,
) -> tuple[Option, ...]:
    """The options every importer with a rater split declares, in this order: the test list
    (`--test-raters` or `--test-workers`), `--split-seed` (passed as `seed`), and the derived split's
    size (`--n-test` or `--test-share`) and eligibility (`--min-test-ratings`) where it has them."""
    flag = "--" + test_list.replace("_", "-")
    options = [
        Option(test_list, _TEST_LIST_HELP[test_list]),
        Option("split_seed", f"Seed of the derived split when no {flag} is given.", type=int, default=0, arg="seed"),
    ]
    if n_test is not None:
        options.append(Option("n_test", "Test raters of the derived split.", type=int, default=n_test))
    if test_share is not None:
        options.append(Option("test_share", "Derived split: share of the eligible raters drawn as test raters.", type=float, default=test_share))
    if min_test_ratings is not None:
        options.append(Option("min_test_ratings", "Derived split: test raters are drawn among raters with at least this many ratings.", type=int, default=min_test_ratings))
    return tuple(options)


def parse_range(value: str | tuple[float, float] | list[float], flag: str) -> tuple[float, float]:
    """A range given as (lo, hi) or as the text "LO,HI" of a command-line option."""
    if isinstance(value, str):
        parts = value.replace(" ", "").split(",")
        try:
            lo, hi = (float(v) for v in parts)
        except ValueError:
            raise DataError(flag, f"expected LO,HI (two numbers), got {value!r}") from None
    else:
        lo, hi = (float(v) for v in value)
    if not lo < hi:
        raise DataError(flag, f"expected LO,HI with LO < HI, got {lo:g},{hi:g}")
    return lo, hi


def split_file_text(users: pd.DataFrame) -> str:
    """The test raters as a list `--test-workers` reads back (header ID, one id per line): a derived
    split written beside the dataset so that it can be published and reused."""
    ids = sorted(users.loc[users["split"] == "test", "user"].astype(str))
    return "ID\n" + "".join(f"{u}\n" for u in ids)


def sniff_delimiter(path: Path, candidates: str = ",;\t|") -> str:
    """The delimiter of a CSV-like file, from its header line: the candidate that splits it most."""
    header = next((l for l in head_lines(path) if l.strip()), "")
    counts = {c: header.count(c) for c in candidates}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def column_key(name: str) -> str:
    """A header name reduced to lower-case letters and digits, so that `personality-E`,
    `personality_E` and `Personality E` (or `userId` and `user_id`) are the same column."""
    return "".join(ch for ch in name.lower() if ch.isalnum())


def find_columns(path: Path, columns: list[str], wanted: dict[str, tuple[str, ...]], *, required: tuple[str, ...]) -> dict[str, str]:
    """Map each wanted field to the file's own column name via its accepted spellings (compared by
    column_key). Missing required fields are one error naming the header; optional ones are omitted."""
    by_key: dict[str, str] = {}
    for col in columns:
        by_key.setdefault(column_key(col), col)
    found = {}
    for field_name, spellings in wanted.items():
        col = next((by_key[column_key(s)] for s in spellings if column_key(s) in by_key), None)
        if col is not None:
            found[field_name] = col
        elif field_name in required:
            raise DataError(str(path), f"missing column '{spellings[0]}' (header has: {', '.join(columns) or 'nothing'})", line=1)
    return found


def read_header(path: Path, sep: str) -> list[str]:
    """The header's column names (stripped of spaces, quotes and a byte-order mark)."""
    import csv

    line = next((l for l in head_lines(path) if l.strip()), None)
    if line is None:
        raise DataError(str(path), "file is empty; expected a header line")
    return [c.strip().strip('"').strip() for c in next(csv.reader([line], delimiter=sep))]


def read_fast_table(path: Path, *, sep: str | None = None, text: list[str] | None = None, usecols: list[str] | None = None) -> pd.DataFrame:
    """A delimited table read fast. Columns named in `text` (default: all) are read as text with empty
    cells as ""; the others are parsed as numbers by the C reader where clean (a column holding a
    non-number stays text so that `numeric_column` can name the cell). With `usecols` (header names
    as `read_header` gives them) only those columns are read. Header names are stripped."""
    sep = sep or sniff_delimiter(path)
    spaced = file_has_edge_space(path)  # skipping spaces after delimiters costs the reader; only where there are any
    try:
        if text is None:
            df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8-sig", skipinitialspace=spaced)
        elif usecols is not None:  # empty cells are NaN in number columns only: text columns need no fill
            raw = pd.read_csv(path, sep=sep, nrows=0, encoding="utf-8-sig", skipinitialspace=spaced).columns
            named = {str(c).strip().strip('"').strip(): c for c in raw}  # the header as pandas names it
            keep = [named[c] for c in usecols if c in named]
            is_text = {named[c] for c in text if c in named}
            df = pd.read_csv(
                path, sep=sep, usecols=keep, dtype=dict.fromkeys(is_text, str), keep_default_na=False,
                na_values={c: [""] for c in keep if c not in is_text}, encoding="utf-8-sig", skipinitialspace=spaced,
            )
        else:
            raw = {c: str for c in text} | {f" {c}": str for c in text} | {f'"{c}"': str for c in text}
            df = pd.read_csv(path, sep=sep, dtype=raw, keep_default_na=False, na_values=[""], encoding="utf-8-sig", skipinitialspace=spaced)
    except pd.errors.EmptyDataError:
        raise DataError(str(path), "file is empty; expected a header line") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(str(path), f"cannot be parsed ({str(exc).splitlines()[0]})") from None
    df.columns = [str(c).strip().strip('"').strip() for c in df.columns]
    for col in [] if usecols is not None else text or []:
        if col in df.columns:
            df[col] = df[col].fillna("").astype(str)
    df.attrs["edge_space"] = spaced  # text_column strips only when it can matter
    return df


def text_column(df: pd.DataFrame, col: str, path: Path) -> pd.Series:
    """An id column as stripped text; an empty cell is an error naming its line."""
    values = strip_text(df[col], may_have_spaces=df.attrs.get("edge_space", True))
    empty = (values == "").to_numpy()
    if empty.any():
        raise DataError(str(path), f"empty {col}", line=int(np.flatnonzero(empty)[0]) + 2, field=col)
    return values


def numeric_column(df: pd.DataFrame, col: str, path: Path, *, lo: float | None = None, hi: float | None = None, allow_empty: bool = False) -> np.ndarray:
    """A numeric column as float64 (NaN for empty cells when allowed), range-checked, first bad cell named."""
    column = df[col]
    if pd.api.types.is_numeric_dtype(column.dtype):  # parsed by the C reader; NaN = empty cell
        nums = column.to_numpy(dtype=np.float64)
        bad = np.isinf(nums) if allow_empty else ~np.isfinite(nums)
        shown = lambda i: "" if np.isnan(nums[i]) else f"{nums[i]:g}"  # noqa: E731
    else:
        nums = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(nums)
        if allow_empty:  # only the cells that are not numbers need a look: empty ones are allowed
            idx = np.flatnonzero(bad)
            bad[idx] = (column.iloc[idx].astype(str).str.strip() != "").to_numpy()
        shown = lambda i: column.iloc[i]  # noqa: E731
    if lo is not None:
        bad |= np.isfinite(nums) & ((nums < lo) | (nums > hi))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        want = f"a number in {lo:g}..{hi:g}" if lo is not None else "a number"
        raise DataError(str(path), f"expected {want}, got {shown(i)!r}", line=i + 2, field=col)
    return nums


def read_id_list(path: str | Path) -> tuple[list[str], str, list[int]]:
    """Rater ids from a split file: the FLICKR-AES forms `read_worker_list` reads, or a bare list of
    one id per line without a header (the TrainUserIDs_Fold<k>.txt / TestUserIDs_Fold<k>.txt files
    circulated with PARA and LAPIS code)."""
    path = require_file(path, "a rater list: one id per line, or a CSV with header ID")
    lines = read_text_lines(path)
    tokens = [(i + 1, l.strip()) for i, l in enumerate(lines) if l.strip()]
    if not tokens:
        raise DataError(str(path), "lists no raters")
    first = tokens[0][1]
    if column_key(first) in ("id", "worker", "workerid", "userid", "user", "participantid") or len(first.split()) > 1 or "," in first:
        return read_worker_list(path)
    seen: dict[str, int] = {}
    for line, tok in tokens:
        if len(tok.split()) > 1 or "," in tok:
            raise DataError(str(path), f"expected one rater id per line, got {tok!r}", line=line)
        if tok in seen:
            raise DataError(str(path), f"rater {tok!r} is listed twice (first on line {seen[tok]})", line=line)
        seen[tok] = line
    return list(seen), "one id per line", list(seen.values())


def rater_split(
    counts: pd.Series, *, dataset: str, test_raters: str | Path | None, seed: int, min_test_ratings: int, notes: list[str],
    n_test: int | None = None, test_share: float = 0.1,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Train/test raters from a given list, or `n_test` (else a seeded `test_share`) of the raters
    with at least `min_test_ratings` ratings, drawn with `seed`."""
    users_sorted = sorted(str(u) for u in counts.index)
    if test_raters is not None:
        ids, form, lines = read_id_list(test_raters)
        users = apply_test_list(users_sorted, ids, lines, str(test_raters))
        notes.append(f"test raters from {test_raters} ({len(ids)} raters, {form})")
        return users, {"source": "file", "file": str(test_raters), "form": form, "n_test": len(ids)}
    if n_test is None:
        n_test = max(1, round(test_share * int((counts >= min_test_ratings).sum())))
    users, rule = derive_test_split(counts, n_test=n_test, min_ratings=min_test_ratings, max_ratings=float("inf"), seed=seed, dataset=dataset)
    notes.append(f"no test-rater list given; derived split (piaa's rule): {rule}; written to {SPLIT_FILE} in the dataset folder")
    return users, {"source": "derived", "rule": rule, "seed": seed, "file": SPLIT_FILE}


# -- attaching features and writing ----------------------------------------------------------------
@dataclass(frozen=True)
class ImportReport:
    path: Path | None
    images: int
    ratings: int
    raters: dict[str, int]
    dropped: dict[str, int]  # images, ratings, likes, distributions removed by --drop-missing
    notes: list[str]


def match_features(parsed: ParsedDataset, store: FeatureStore, *, drop_missing: bool) -> tuple[list[str], np.ndarray, ParsedDataset, dict[str, int], list[str]]:
    """Rows of the store for every image of `parsed`; images without features raise or are dropped.

    Returns (image names, store rows, the possibly reduced dataset, dropped counts, notes).
    """
    names = parsed.image_names()
    rows = store.locate(names, by=parsed.image_match)
    missing = [n for n, r in zip(names, rows) if r < 0]
    dropped = {"images": 0, "ratings": 0, "likes": 0, "distributions": 0}
    notes: list[str] = []
    if missing:
        unreadable = sum(store.was_unreadable(n) for n in missing)
        why = f" ({unreadable} of them listed as unreadable in failed.csv)" if unreadable else ""
        if not drop_missing:
            raise DataError(
                str(store.path),
                f"{len(missing)} of {len(names)} images have no features{why}, e.g. {missing[0]!r} "
                "(extract features for the images folder, or pass --drop-missing to drop their ratings and count them)",
            )
        gone = set(missing)

        def keep(frame: pd.DataFrame | None, key: str) -> pd.DataFrame | None:
            if frame is None:
                return None
            mask = frame["image"].isin(gone)
            dropped[key] = int(mask.sum())
            return frame[~mask].reset_index(drop=True)

        parsed = replace(parsed, ratings=keep(parsed.ratings, "ratings"), likes=keep(parsed.likes, "likes"), distributions=keep(parsed.distributions, "distributions"))
        if parsed.attributes is not None:
            parsed = replace(parsed, attributes=parsed.attributes[~parsed.attributes["image"].isin(gone)].reset_index(drop=True))
        if parsed.image_split is not None:
            parsed = replace(parsed, image_split=parsed.image_split[~parsed.image_split["image"].isin(gone)].reset_index(drop=True))
        dropped["images"] = len(missing)
        what = ", ".join(f"{n} {k}" for k, n in dropped.items() if k != "images" and n)
        notes.append(f"dropped {len(missing)} images without features{why} and their {what or 'nothing else'} (--drop-missing)")
        ok = rows >= 0
        names = [n for n, k in zip(names, ok) if k]
        rows = rows[ok]
    return names, rows, parsed, dropped, notes


def gather_features(store: FeatureStore, rows: np.ndarray) -> np.ndarray:
    """Copy the given rows out of the memory-mapped store, reading it front to back."""
    order = np.argsort(rows, kind="stable")
    gathered = np.empty((len(rows), store.dim), dtype=store.features.dtype)
    gathered[order] = store.features[rows[order]]
    return gathered


def store_meta(store: FeatureStore) -> dict[str, Any]:
    return {"path": str(store.path.resolve()), "backbone": store.backbone, "dim": store.dim, "weights": store.manifest.get("weights")}


def write_import(
    parsed: ParsedDataset,
    features: str | Path | FeatureStore,
    out: str | Path,
    *,
    drop_missing: bool = False,
    overwrite: bool = False,
) -> ImportReport:
    """Attach features from a store and write the rater dataset atomically (nothing partial on error)."""
    store = features if isinstance(features, FeatureStore) else open_store(features)
    names, rows, parsed, dropped, notes = match_features(parsed, store, drop_missing=drop_missing)
    meta = {**parsed.meta, "backbone": store.backbone, "feature_store": store_meta(store), "import_notes": parsed.notes + notes}
    if parsed.evaluation_only:
        meta["evaluation_only"] = True
    users = parsed.users
    for col in BIG_FIVE:
        if col not in users.columns:
            users = users.assign(**{col: np.nan})
    extra_files = {}
    if parsed.meta.get("split", {}).get("source") == "derived":
        extra_files[SPLIT_FILE] = split_file_text(users)
    if parsed.image_split is not None:
        extra_files[IMAGE_SPLIT] = parsed.image_split[["image", "split"]].to_csv(index=False, lineterminator="\n")
    path = write_dataset(
        out, name=parsed.name, score_range=parsed.score_range, ratings=parsed.ratings, users=users,
        images=names, features=gather_features(store, rows), likes=parsed.likes, meta=meta, overwrite=overwrite,
        attributes=parsed.attributes, extra_files=extra_files,
    )
    splits = users["split"].value_counts()
    return ImportReport(
        path=path,
        images=len(names),
        ratings=len(parsed.ratings),
        raters={s: int(splits.get(s, 0)) for s in ("train", "test", "personality")},
        dropped=dropped,
        notes=parsed.notes + notes,
    )
