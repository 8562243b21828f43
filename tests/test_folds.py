"""k-fold rater cross-validation: seeded fold assignment written out and read back (also from the
TestUserIDs_Fold<k>.txt lists of PARA/LAPIS code), every rater tested exactly once, per-fold and mean
results, and the `piaa evaluate --folds` command with its one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from piaa.errors import DataError
from piaa.folds import cross_validate
from piaa.registry import create_method
from piaa.tasks.format import read_dataset
from piaa.tasks.splits import assign_folds, cv_raters, folds_text, read_folds


def test_fold_assignment_is_seeded_balanced_and_covers_train_and_test_raters(tiny_dir):
    data = read_dataset(tiny_dir)
    a, b, c = assign_folds(data, 4, seed=0), assign_folds(data, 4, seed=0), assign_folds(data, 4, seed=1)
    assert a.equals(b) and not a["fold"].equals(c["fold"])
    assert sorted(a["user"]) == cv_raters(data) and not set(a["user"]) & set(data.users_in("personality"))
    sizes = a["fold"].value_counts()
    assert sorted(sizes.index) == [1, 2, 3, 4] and sizes.max() - sizes.min() <= 1


def test_fold_file_and_fold_lists_read_back_the_same_assignment(tiny_dir, tmp_path):
    data = read_dataset(tiny_dir)
    folds = assign_folds(data, 3, seed=5)
    (tmp_path / "f.csv").write_text(folds_text(folds))
    assert read_folds(tmp_path / "f.csv", data).equals(folds)
    lists = tmp_path / "userset"
    lists.mkdir()
    for k in (1, 2, 3):
        (lists / f"TestUserIDs_Fold{k}.txt").write_text("\n".join(folds.loc[folds["fold"] == k, "user"]) + "\n")
    again = read_folds(lists, data).sort_values("user").reset_index(drop=True)
    assert again.equals(folds.sort_values("user").reset_index(drop=True))


@pytest.mark.parametrize(
    "text, message",
    [
        ("user,fold\nghost,1\n", r"f.csv line 2, field 'user': rater 'ghost' is not a train or test rater"),
        ("user,fold\n{u},1\n{u},2\n", r"f.csv line 3, field 'user': rater '{u}' is in two folds"),
        ("user,fold\n{u},first\n", r"f.csv line 2, field 'fold': expected a fold number 1, 2, ..., got 'first'"),
        ("user,split\n{u},1\n", r"f.csv line 1: missing column 'fold'"),
    ],
)
def test_bad_fold_files_are_one_clear_line(tiny_dir, tmp_path, text, message):
    data = read_dataset(tiny_dir)
    u = cv_raters(data)[0]
    (tmp_path / "f.csv").write_text(text.format(u=u))
    with pytest.raises(DataError, match=message.format(u=u)):
        read_folds(tmp_path / "f.csv", data)


def test_cross_validation_tests_every_rater_once_and_averages_the_fold_means(tiny_dir):
    data = read_dataset(tiny_dir)
    folds = assign_folds(data, 3, seed=0)
    fitted = []

    def make():
        method = create_method("ridge")
        fitted.append(method)
        return method

    cv = cross_validate(make, data, folds, shots=[10], repeats=2, seed=0)
    assert len(fitted) == 3
    tested = cv.rows.groupby("user")["fold"].unique()
    assert sorted(tested.index) == sorted(u for u in cv_raters(data) if len(data.rater(u)) >= 20)
    assert all(len(f) == 1 and f[0] == int(folds.set_index("user").loc[u, "fold"]) for u, f in tested.items())
    per_fold = cv.per_fold
    assert cv.summary["srocc_mean"].iloc[0] == pytest.approx(per_fold["srocc_mean"].mean())
    assert cv.summary["srocc_std"].iloc[0] == pytest.approx(np.std(per_fold["srocc_mean"]))
    assert cv.summary["n_users"].iloc[0] == per_fold["n_users"].sum()


def test_evaluate_folds_writes_the_assignment_then_reuses_it(cli, tiny_dir, tmp_path):
    r = cli("evaluate", "--data", tiny_dir, "--method", "ridge", "--folds", "2", "--shots", "10", "--repeats", "2", "--json", tmp_path / "cv.json")
    assert r.code == 0, r.err
    written = tmp_path / "folds-k2-seed0.csv"  # the cli fixture runs in tmp_path
    assert "fold assignment written to folds-k2-seed0.csv" in r.err and written.read_text().startswith("user,fold\n")
    payload = json.loads((tmp_path / "cv.json").read_text())
    assert {row["fold"] for row in payload["rows"]} == {1, 2} and payload["summary"][0]["n_folds"] == 2
    assert len(payload["per_fold"]) == 2 and payload["fold_file"] == "folds-k2-seed0.csv"
    r2 = cli("evaluate", "--data", tiny_dir, "--method", "ridge", "--fold-file", written, "--shots", "10", "--repeats", "2", "--json", tmp_path / "cv2.json")
    assert r2.code == 0 and "read from" in r2.err
    assert json.loads((tmp_path / "cv2.json").read_text())["summary"] == payload["summary"]


def test_evaluate_folds_bad_input_exits_2_with_one_line(cli, tiny_dir, tmp_path):
    (tmp_path / "bad.csv").write_text("user,fold\nghost,1\n")
    r = cli("evaluate", "--data", tiny_dir, "--method", "ridge", "--fold-file", tmp_path / "bad.csv")
    assert r.code == 2 and "rater 'ghost' is not a train or test rater" in r.err and len(r.err.strip().splitlines()) == 1
    r = cli("evaluate", "--data", tiny_dir, "--method", "ridge", "--folds", "1")
    assert r.code == 2 and "--folds" in r.err and len(r.err.strip().splitlines()) == 1
