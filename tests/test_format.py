"""The rater-dataset format: round trip, and one clear error per kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from piaa.errors import DataError
from piaa.tasks.format import BIG_FIVE, read_dataset, write_dataset


def test_round_trip_keeps_every_table(tiny_dir, tmp_path):
    data = read_dataset(tiny_dir)
    out = write_dataset(
        tmp_path / "copy", name=data.name, score_range=data.score_range, ratings=data.ratings,
        users=data.users, images=data.images, features=np.asarray(data.features), likes=data.likes,
    )
    again = read_dataset(out)
    pd.testing.assert_frame_equal(again.ratings, data.ratings)
    pd.testing.assert_frame_equal(again.users, data.users, check_exact=False, atol=1e-6)
    assert list(again.images) == list(data.images)
    np.testing.assert_array_equal(np.asarray(again.features), np.asarray(data.features))
    assert len(again.likes) == len(data.likes)


def test_rater_view_matches_ratings(tiny_dir):
    data = read_dataset(tiny_dir)
    user = data.users_in("test")[0]
    rater = data.rater(user)
    rows = data.ratings[data.ratings["user"] == user]
    assert len(rater) == len(rows)
    assert list(data.images[rater.image_index]) == rows["image"].tolist()
    np.testing.assert_array_equal(rater.scores, rows["score"].to_numpy(np.float32))
    assert rater.big_five is not None and rater.big_five.shape == (5,)
    assert data.rater(data.users_in("train")[0]).big_five is None


def test_without_test_split_hides_test_ratings(tiny_dir):
    data = read_dataset(tiny_dir)
    hidden = data.without("test")
    assert not set(hidden.ratings["user"]) & set(data.users_in("test"))
    assert hidden.users_in("test") == []
    assert len(hidden.ratings) + sum(len(data.rater(u)) for u in data.users_in("test")) == len(data.ratings)


def test_write_refuses_to_overwrite(tiny_dir):
    data = read_dataset(tiny_dir)
    with pytest.raises(FileExistsError):
        write_dataset(tiny_dir, name="x", score_range=(1, 5), ratings=data.ratings, users=data.users,
                      images=data.images, features=np.asarray(data.features))
    assert read_dataset(tiny_dir).name == data.name  # untouched


def _edit_csv(path: Path, edit) -> None:
    lines = path.read_text().splitlines()
    edit(lines)
    path.write_text("\n".join(lines) + "\n")


def _set_row(file: str, row: int, field: str, value: str):
    """Change one cell (row = line number, header = 1)."""

    def apply(root: Path) -> None:
        df = pd.read_csv(root / file, dtype=str, keep_default_na=False)
        df.loc[row - 2, field] = value
        df.to_csv(root / file, index=False)

    return apply


def _drop_file(name):
    return lambda root: (root / name).unlink()


def _drop_column(file, column):
    def apply(root):
        df = pd.read_csv(root / file, dtype=str, keep_default_na=False)
        df.drop(columns=[column]).to_csv(root / file, index=False)

    return apply


def _features(transform):
    def apply(root):
        f = np.load(root / "features.npy")
        np.save(root / "features.npy", transform(f))

    return apply


def _nan_row(f):
    f = f.copy()
    f[7, 3] = np.nan
    return f


def _duplicate_rating(root):
    df = pd.read_csv(root / "ratings.csv", dtype=str, keep_default_na=False)
    pd.concat([df.iloc[:5], df.iloc[[2]], df.iloc[5:]]).to_csv(root / "ratings.csv", index=False)


def _only_split(split):
    def apply(root):
        df = pd.read_csv(root / "users.csv", dtype=str, keep_default_na=False)
        df = df[df["split"] != split]
        df.to_csv(root / "users.csv", index=False)
        r = pd.read_csv(root / "ratings.csv", dtype=str, keep_default_na=False)
        r[r["user"].isin(set(df["user"]))].to_csv(root / "ratings.csv", index=False)
        lk = pd.read_csv(root / "likes.csv", dtype=str, keep_default_na=False)
        lk[lk["user"].isin(set(df["user"]))].to_csv(root / "likes.csv", index=False)

    return apply


def _test_row(root: Path) -> int:
    users = pd.read_csv(root / "users.csv", dtype=str, keep_default_na=False)
    return int(np.flatnonzero(users["split"] == "test")[0]) + 2


def _big_five_value(value):
    def apply(root):
        _set_row("users.csv", _test_row(root), "openness", value)(root)

    return apply


def _partial_big_five(root):
    _set_row("users.csv", _test_row(root), "neuroticism", "")(root)


# (id, how to break the dataset, expected pieces of the one-line message)
BAD_INPUTS = [
    ("missing-file", _drop_file("ratings.csv"), ["ratings.csv", "missing"]),
    ("missing-column", _drop_column("ratings.csv", "score"), ["ratings.csv line 1", "missing column 'score'"]),
    ("non-numeric-score", _set_row("ratings.csv", 9, "score", "good"), ["ratings.csv line 9", "field 'score'", "'good'"]),
    ("score-out-of-range", _set_row("ratings.csv", 4, "score", "7"), ["ratings.csv line 4", "field 'score'", "[1, 5]", "'7'"]),
    ("unknown-image", _set_row("ratings.csv", 12, "image", "nope.jpg"), ["ratings.csv line 12", "field 'image'", "'nope.jpg'", "images.csv"]),
    ("feature-rows", _features(lambda f: f[:-1]), ["features.npy", "rows", "images.csv"]),
    ("nan-features", _features(_nan_row), ["features.npy", "row 7", "NaN"]),
    ("duplicate-rating", _duplicate_rating, ["ratings.csv line 7", "duplicate", "first given on line 4"]),
    ("unknown-split", _set_row("users.csv", 3, "split", "validation"), ["users.csv line 3", "field 'split'", "'validation'"]),
    ("big-five-range", _big_five_value("1.5"), ["users.csv line", "field 'openness'", "[-1, 1]", "'1.5'"]),
    ("partial-big-five", _partial_big_five, ["users.csv line", "all five"]),
    ("no-train-raters", _only_split("train"), ["users.csv", "no train raters"]),
    ("no-test-raters", _only_split("test"), ["users.csv", "no test raters"]),
    ("bad-score-range", lambda root: (root / "dataset.json").write_text(json.dumps({"name": "x", "score_range": [5, 1]})), ["dataset.json", "score_range"]),
    ("unknown-rater", _set_row("ratings.csv", 5, "user", "ghost"), ["ratings.csv line 5", "field 'user'", "'ghost'", "users.csv"]),
]


@pytest.mark.parametrize("breaker,expected", [b[1:] for b in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_is_one_clear_line(tiny_copy, breaker, expected):
    breaker(tiny_copy)
    with pytest.raises(DataError) as info:
        read_dataset(tiny_copy)
    message = str(info.value)
    assert "\n" not in message
    for piece in expected:
        assert piece in message, f"{piece!r} not in {message!r}"


@pytest.mark.parametrize("breaker,expected", [b[1:] for b in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS])
def test_cli_bad_input_exits_2_without_partial_run(tiny_copy, cli, tmp_path, breaker, expected):
    breaker(tiny_copy)
    result = cli("meta-train", "--data", tiny_copy, "--method", "giaa", "--out", tmp_path / "run", "--set", "epochs=1")
    assert result.code == 2
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    assert expected[0].split()[0] in lines[0]
    assert "Traceback" not in result.err
    assert not (tmp_path / "run").exists()
    assert not any(p.name.startswith(".run") for p in tmp_path.iterdir())


def test_big_five_columns_are_optional(tiny_copy):
    users = pd.read_csv(tiny_copy / "users.csv", dtype=str, keep_default_na=False)
    users[["user", "split"]].to_csv(tiny_copy / "users.csv", index=False)
    data = read_dataset(tiny_copy)
    assert data.users[list(BIG_FIVE)].isna().all().all()
    assert data.rater(data.users_in("test")[0]).big_five is None


# -- the fast writer of large tables -------------------------------------------------------------
def _awkward_tables(ids: list[str], n: int = 3000, seed: int = 0):
    """Ratings and attributes of n (user, image) pairs: few-valued scores, a continuous column (too
    many distinct values to share a block), NaN cells and negative numbers."""
    rng = np.random.default_rng(seed)
    users = [f"{ids[i % len(ids)]}{i % 7}" for i in range(n)]
    images = [f"img-{i}" for i in range(n)]
    ratings = pd.DataFrame({"user": users, "image": images, "score": rng.integers(2, 11, n) / 2})
    attributes = pd.DataFrame({"user": users, "image": images})
    for k in range(6):
        attributes[f"a{k}"] = rng.integers(-1, 6, n).astype(np.float32)
    attributes["continuous"] = rng.standard_normal(n) * 100
    attributes.loc[rng.random(n) < 0.1, "a2"] = np.nan
    return ratings, attributes


@pytest.mark.parametrize("ids", [["u", "rater"], ["zoë", "番号"], ["u,1", 'say "hi"']], ids=["ascii", "unicode", "needs-quotes"])
def test_fast_writer_writes_the_bytes_pandas_writes_and_reads_back(tmp_path, ids):
    ratings, attributes = _awkward_tables(ids)
    users = pd.DataFrame({"user": sorted(set(ratings["user"])), "split": "train"})
    users.loc[0, "split"] = "test"
    out = write_dataset(tmp_path / "d", name="t", score_range=(1, 5), ratings=ratings, users=users, images=ratings["image"],
                        features=np.zeros((len(ratings), 2), np.float32), attributes=attributes)
    for name, frame in (("ratings.csv", ratings), ("attributes.csv", attributes)):
        expected = frame.to_csv(index=False, float_format="%.6g", lineterminator="\n")
        assert (out / name).read_text(encoding="utf-8") == expected
    data = read_dataset(out)
    assert data.ratings["user"].tolist() == ratings["user"].tolist()
    np.testing.assert_array_equal(data.ratings["score"].to_numpy(), ratings["score"].to_numpy(np.float32))
    np.testing.assert_allclose(data.attributes["continuous"], attributes["continuous"], rtol=1e-5)
    assert data.attributes["a2"].isna().sum() == attributes["a2"].isna().sum() > 0


def test_write_checks_the_tables_it_writes_without_parsing_them_back(tmp_path):
    ratings, attributes = _awkward_tables(["u"], n=50)
    users = pd.DataFrame({"user": sorted(set(ratings["user"])), "split": "train"})
    users.loc[0, "split"] = "test"
    bad = ratings.copy()
    bad.loc[30, "image"] = bad.loc[29, "image"]  # row 30 becomes a second rating of img-29 by the same user
    bad.loc[30, "user"] = bad.loc[29, "user"]
    with pytest.raises(DataError, match=r"ratings.csv line 32, field 'image': duplicate rating of image 'img-29'"):
        write_dataset(tmp_path / "d", name="t", score_range=(1, 5), ratings=bad, users=users, images=ratings["image"],
                      features=np.zeros((50, 2), np.float32))
    worse = ratings.assign(score=ratings["score"].where(ratings.index != 7, 5.5))
    with pytest.raises(DataError, match=r"ratings.csv line 9, field 'score': expected a number in \[1, 5\], got '5.5'"):
        write_dataset(tmp_path / "d", name="t", score_range=(1, 5), ratings=worse, users=users, images=ratings["image"],
                      features=np.zeros((50, 2), np.float32))
    orphan = attributes.copy()
    orphan.loc[3, "image"] = "img-4"
    with pytest.raises(DataError, match=r"attributes.csv line 5"):
        write_dataset(tmp_path / "d", name="t", score_range=(1, 5), ratings=ratings, users=users, images=ratings["image"],
                      features=np.zeros((50, 2), np.float32), attributes=orphan)
    assert not (tmp_path / "d").exists() and not list(tmp_path.iterdir())  # nothing partial left behind
