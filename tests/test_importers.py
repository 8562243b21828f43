"""Native importers on small fixtures written in each exact published format (and the two real
FLICKR-AES files in ../shared/data/flickr-aes when present)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from piaa.errors import DataError
from piaa.tasks.distributions import read_distributions
from piaa.tasks.feature_store import open_store, write_store
from piaa.tasks.format import read_dataset
from piaa.tasks.importers import (
    merge_personality,
    parse_aadb,
    parse_ava,
    parse_flickr_aes,
    parse_psychoflickr,
    write_ava,
    write_import,
)
from piaa.tasks.importers.common import read_worker_list

REPO = Path(__file__).resolve().parents[1]
# ../shared beside the repository (CI's clone); ../../shared for a git worktree one level deeper.
SHARED = next((p for p in (REPO.parent / "shared" / "data" / "flickr-aes", REPO.parent.parent / "shared" / "data" / "flickr-aes") if p.is_dir()), REPO.parent / "shared" / "data" / "flickr-aes")
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"the real FLICKR-AES reference files are not at {SHARED} (../shared beside the repository)")
LABELS_HEADER = "worker, imagePair, score"


def make_store(path: Path, images: list[str], dim: int = 6, folder: str = "40K") -> Path:
    """A feature store whose row for image i is [i, i, ...] (so matching is checkable)."""
    feats = np.repeat(np.arange(len(images), dtype=np.float32)[:, None], dim, axis=1)
    return write_store(path, [f"{folder}/{im}" if folder else im for im in images], feats, backbone="test-backbone")


def flickr_fixture(root: Path, n_workers: int = 12, n_images: int = 60, seed: int = 0) -> tuple[Path, pd.DataFrame]:
    """FLICKR-AES-shaped labels: each image rated by 5 workers, header with spaces after commas."""
    rng = np.random.default_rng(seed)
    images = [f"farm{i % 9 + 1}_{1000 + i}_{7000000 + i}_abcdef{i:04d}_b.jpg" for i in range(n_images)]
    workers = [f"A{w:02d}WORKER{w * 7 % 13:X}" for w in range(n_workers)]
    rows = []
    for im in images:
        for w in rng.choice(n_workers, size=5, replace=False):
            rows.append((workers[w], im, int(rng.integers(1, 6))))
    truth = pd.DataFrame(rows, columns=["user", "image", "score"])
    root.mkdir(parents=True, exist_ok=True)
    text = LABELS_HEADER + "\n" + "".join(f"{u},{im},{s}\n" for u, im, s in rows)
    (root / "FLICKR-AES_image_labeled_by_each_worker.csv").write_text(text)
    return root, truth


# -- FLICKR-AES ---------------------------------------------------------------------------------
def test_flickr_aes_with_id_list_imports_counts_splits_and_scores(tmp_path):
    root, truth = flickr_fixture(tmp_path / "flickr")
    test_ids = sorted(truth["user"].unique())[:3]
    (tmp_path / "test_workers_ID.csv").write_text("ID\n" + "\n".join(test_ids) + "\n")
    images = sorted(truth["image"].unique())
    store = make_store(tmp_path / "store", images)
    parsed = parse_flickr_aes(root, test_workers=tmp_path / "test_workers_ID.csv")
    report = write_import(parsed, store, tmp_path / "out")
    data = read_dataset(tmp_path / "out")
    assert len(data.ratings) == len(truth) == 300
    assert report.raters == {"train": 9, "test": 3, "personality": 0}
    assert sorted(data.users_in("test")) == test_ids
    merged = data.ratings.merge(truth, on=["user", "image"], suffixes=("", "_truth"))
    assert len(merged) == 300 and (merged["score"] == merged["score_truth"]).all()
    # Row i of features belongs to image i: the store's row for image k is filled with k.
    for name in ("farm1_1000_7000000_abcdef0000_b.jpg", images[17]):
        pos = data.image_positions([name])[0]
        assert data.features[pos, 0] == images.index(name)
    assert data.meta["split"]["source"] == "file"
    assert data.meta["backbone"] == "test-backbone"


def test_space_separated_worker_list_gives_the_same_split(tmp_path):
    root, truth = flickr_fixture(tmp_path / "flickr")
    ids = sorted(truth["user"].unique())[2:6]
    (tmp_path / "ids.csv").write_text("ID\n" + "\n".join(ids) + "\n")
    (tmp_path / "ids.txt").write_text("idx worker\n" + "\n".join(f"{i} {w}" for i, w in enumerate(ids)) + "\n")
    a = parse_flickr_aes(root, test_workers=tmp_path / "ids.csv").users
    b = parse_flickr_aes(root, test_workers=tmp_path / "ids.txt").users
    pd.testing.assert_frame_equal(a, b)
    assert sorted(a.loc[a["split"] == "test", "user"]) == ids


def test_derived_split_is_seeded_restricted_and_loud(tmp_path):
    root, truth = flickr_fixture(tmp_path / "flickr", n_workers=20, n_images=120)
    counts = truth.groupby("user").size()
    lo, hi = int(counts.quantile(0.2)), int(counts.quantile(0.8))
    a = parse_flickr_aes(root, seed=0, n_test=4, test_ratings=(lo, hi))
    b = parse_flickr_aes(root, seed=0, n_test=4, test_ratings=(lo, hi))
    c = parse_flickr_aes(root, seed=1, n_test=4, test_ratings=(lo, hi))
    test_a = sorted(a.users.loc[a.users["split"] == "test", "user"])
    assert len(test_a) == 4 and test_a == sorted(b.users.loc[b.users["split"] == "test", "user"])
    assert test_a != sorted(c.users.loc[c.users["split"] == "test", "user"])
    assert all(lo <= counts[u] <= hi for u in test_a)
    assert any(n.startswith("WARNING: no test-worker list") for n in a.notes)
    assert a.meta["split"]["source"] == "derived"
    with pytest.raises(DataError, match="only .* raters have"):
        parse_flickr_aes(root, n_test=37)


def test_image_score_file_with_leading_spaces_is_checked(tmp_path):
    root, truth = flickr_fixture(tmp_path / "flickr")
    means = truth.groupby("image")["score"].mean()
    lines = [f" {im}  {m:.4f}" for im, m in list(means.items())[:-2]] + [" extra_image.jpg 3.0"]
    (root / "FLICKR-AES_image_score.txt").write_text("\n".join(lines) + "\n")
    ids = sorted(truth["user"].unique())[:2]
    (tmp_path / "t.csv").write_text("ID\n" + "\n".join(ids) + "\n")
    parsed = parse_flickr_aes(root, test_workers=tmp_path / "t.csv")
    note = next(n for n in parsed.notes if n.startswith("FLICKR-AES_image_score.txt"))
    assert "59 images; 58 also rated, 2 rated but absent" in note and "difference between published mean and mean of worker ratings 0.000" in note


def test_repeated_ratings_collapse_and_are_reported(tmp_path):
    root, truth = flickr_fixture(tmp_path / "flickr")
    f = root / "FLICKR-AES_image_labeled_by_each_worker.csv"
    u, im, s = truth.iloc[0]
    f.write_text(f.read_text() + f"{u},{im},{s}\n{u},{im},{6 - s if s != 3 else 4}\n")
    parsed = parse_flickr_aes(root, test_workers=_list(tmp_path, truth["user"].unique()[:2]))
    assert len(parsed.ratings) == 300
    note = next(n for n in parsed.notes if "more than once" in n)
    assert "1 (worker, image) pairs" in note and "1 conflicting ones averaged" in note


def _list(tmp_path: Path, ids) -> Path:
    p = tmp_path / "list.csv"
    p.write_text("ID\n" + "\n".join(sorted(ids)) + "\n")
    return p


@needs_shared
def test_real_published_files_are_read_as_they_are(tmp_path):
    ids, form, lines = read_worker_list(SHARED / "test_workers_ID.csv")
    assert lines[0] == 2 and lines[-1] == 38
    assert len(ids) == 37 and ids[0] == "AGXT2OHMTWBRS" and form == "CSV with column ID"
    # The shared folder holds one per-worker file plus the split file: a per-worker folder.
    parsed = parse_flickr_aes(labels=SHARED, seed=0, n_test=1, test_ratings=(100, 100))
    assert parsed.ratings["user"].unique().tolist() == ["A14W0IW2KGR80K"]
    assert len(parsed.ratings) == 100 and set(parsed.ratings["score"].unique()) <= {1, 2, 3, 4, 5}
    first = parsed.ratings.iloc[0]
    assert (first["image"], first["score"]) == ("farm9_8450_7965840962_9d2716d00e_b.jpg", 4)
    assert any("skipped 1 CSV file(s) without the header image,score: test_workers_ID.csv" in n for n in parsed.notes)
    # The real 37-worker list applied to a label file in the published format: 37 test workers, rest train.
    real = pd.read_csv(SHARED / "A14W0IW2KGR80K.csv")
    rows = [f"A14W0IW2KGR80K,{im},{s}" for im, s in zip(real["image"], real["score"])]
    rows += [f"{w},{im},{(k + j) % 5 + 1}" for k, w in enumerate(ids) for j, im in enumerate(real["image"][:20])]
    (tmp_path / "FLICKR-AES_image_labeled_by_each_worker.csv").write_text(LABELS_HEADER + "\n" + "\n".join(rows) + "\n")
    parsed = parse_flickr_aes(tmp_path, test_workers=SHARED / "test_workers_ID.csv")
    split = parsed.users.set_index("user")["split"]
    assert (split == "test").sum() == 37 and split["A14W0IW2KGR80K"] == "train"
    assert len(parsed.ratings) == 100 + 37 * 20


@pytest.mark.parametrize(
    "text, match",
    [
        ("worker, image, score\nA1,x.jpg,3\n", "missing column 'imagePair'"),
        (LABELS_HEADER + "\nA1,x.jpg,3\nA1,y.jpg,6\n", r"line 3, field 'score': expected an integer in 1\.\.5, got '6'"),
        (LABELS_HEADER + "\nA1,x.jpg,3.5\n", r"line 2, field 'score': expected an integer"),
        (LABELS_HEADER + "\nA1,,3\n", r"line 2, field 'imagePair': empty imagePair"),
        ("", "file is empty"),
    ],
)
def test_malformed_label_files_name_file_line_and_field(tmp_path, text, match):
    (tmp_path / "FLICKR-AES_image_labeled_by_each_worker.csv").write_text(text)
    with pytest.raises(DataError, match=match):
        parse_flickr_aes(tmp_path, test_workers=None)


def test_unknown_worker_in_split_file_is_an_error(tmp_path):
    root, truth = flickr_fixture(tmp_path / "flickr")
    (tmp_path / "t.csv").write_text("ID\n" + truth["user"].iloc[0] + "\nNOSUCHWORKER\n")
    with pytest.raises(DataError, match=r"t\.csv line 3: test worker 'NOSUCHWORKER' has no ratings"):
        parse_flickr_aes(root, test_workers=tmp_path / "t.csv")
    (tmp_path / "t.txt").write_text("n worker\n\n1 " + truth["user"].iloc[0] + "\n2 NOSUCHWORKER\n")
    with pytest.raises(DataError, match=r"t\.txt line 4: test worker 'NOSUCHWORKER'"):
        parse_flickr_aes(root, test_workers=tmp_path / "t.txt")
    (tmp_path / "bad.csv").write_text("name\nA\n")
    with pytest.raises(DataError, match="expected a header 'ID'"):
        parse_flickr_aes(root, test_workers=tmp_path / "bad.csv")


def test_images_without_features_refuse_or_are_dropped_and_counted(tmp_path):
    root, truth = flickr_fixture(tmp_path / "flickr")
    images = sorted(truth["image"].unique())
    store = write_store(tmp_path / "store", [f"40K/{im}" for im in images[:-3]], np.ones((57, 4), np.float32), backbone="b", failed={f"40K/{images[-1]}": "OSError: truncated"})
    parsed = parse_flickr_aes(root, test_workers=_list(tmp_path, truth["user"].unique()[:2]))
    with pytest.raises(DataError, match=r"3 of 60 images have no features \(1 of them listed as unreadable in failed\.csv\)"):
        write_import(parsed, store, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))
    report = write_import(parsed, store, tmp_path / "out", drop_missing=True)
    lost = int(truth["image"].isin(images[-3:]).sum())
    assert report.dropped["images"] == 3 and report.dropped["ratings"] == lost == 15
    assert len(read_dataset(tmp_path / "out").ratings) == 300 - lost
    assert any("dropped 3 images" in n for n in read_dataset(tmp_path / "out").meta["import_notes"])


def test_cli_import_one_line_error_exit_2_and_no_output(tmp_path):
    root, truth = flickr_fixture(tmp_path / "flickr")
    store = make_store(tmp_path / "store", sorted(truth["image"].unique())[:10])
    cmd = [sys.executable, "-m", "piaa.console.cli", "data", "import", "flickr-aes", "--root", str(root), "--features", str(store), "--out", str(tmp_path / "out")]
    proc = subprocess.run(cmd + ["--test-workers", str(_list(tmp_path, truth["user"].unique()[:2]))], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "50 of 60 images have no features" in last and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()
    store_all = make_store(tmp_path / "store_all", sorted(truth["image"].unique()))
    cmd[cmd.index(str(store))] = str(store_all)
    no_list = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert no_list.returncode == 2 and "only 0 raters have 105-171 ratings but 37 test raters are needed" in no_list.stderr
    ok = subprocess.run(cmd + ["--test-workers", str(tmp_path / "list.csv")], capture_output=True, text=True, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "60 images, 300 ratings, 10 train, 2 test raters" in ok.stdout
    assert read_dataset(tmp_path / "out").users["split"].value_counts()["test"] == 2


# -- AADB -----------------------------------------------------------------------------------------
def aadb_wide(path: Path) -> list[tuple[str, str, int]]:
    """Raw MTurk results: quoted header, extra columns, three image/score pairs, one empty pair."""
    header = ['"HITId"', '"WorkerId"', '"Input.image_url1"', '"Input.image_url2"', '"Input.image_url3"', '"Answer.overallScore1"', '"Answer.overallScore2"', '"Answer.overallScore3"', '"Answer.colorHarmony1"']
    rows, truth = [], []
    for h, worker in enumerate(["W1", "W2", "W3", "W1"]):
        ims = [f"farm1_{h}{k}_{h}{k}.jpg" for k in range(3)]
        scores = [(h + k) % 5 + 1 for k in range(3)]
        urls = [f"http://example.org/aadb/img/{im}?x=1" for im in ims]
        if h == 3:  # a HIT with only two images
            urls[2], scores[2] = "", ""
        rows.append(",".join(f'"{v}"' for v in [f"H{h}", worker, *urls, *scores, "1"]))
        truth += [(worker, im, s) for im, s, u in zip(ims, scores, urls) if u]
    path.write_text(",".join(header) + "\n" + "\n".join(rows) + "\n")
    return truth


def test_aadb_wide_and_long_files_import_with_given_and_derived_split(tmp_path):
    truth = aadb_wide(tmp_path / "mturk.csv")
    (tmp_path / "long.csv").write_text("worker,image,score\nW4,a.jpg,2\nW4,b.jpg,5\n")
    parsed = parse_aadb([tmp_path / "mturk.csv", tmp_path / "long.csv"], min_test_ratings=2, test_share=0.5)
    assert len(parsed.ratings) == len(truth) + 2 == 13
    got = set(map(tuple, parsed.ratings[["user", "image", "score"]].astype({"score": int}).itertuples(index=False)))
    assert set(truth) <= got and ("W4", "b.jpg", 5) in got
    assert parsed.users["user"].tolist() == ["W1", "W2", "W3", "W4"]
    assert (parsed.users["split"] == "test").sum() == 2  # half of the 4 raters with >= 2 ratings
    (tmp_path / "t.csv").write_text("ID\nW2\n")
    given = parse_aadb([tmp_path / "mturk.csv"], test_workers=tmp_path / "t.csv")
    assert given.users.set_index("user")["split"].to_dict() == {"W1": "train", "W2": "test", "W3": "train"}
    store = make_store(tmp_path / "store", sorted(parsed.ratings["image"].unique()), folder="")
    write_import(given, store, tmp_path / "out")
    assert len(read_dataset(tmp_path / "out").ratings) == 11


def test_aadb_malformed_rows(tmp_path):
    (tmp_path / "a.csv").write_text("WorkerId,Input.image_url1,Answer.overallScore2\nW1,http://x/a.jpg,3\n")
    with pytest.raises(DataError, match="missing column 'Answer.overallScore1'"):
        parse_aadb([tmp_path / "a.csv"])
    (tmp_path / "b.csv").write_text("WorkerId,Input.image_url1,Answer.overallScore1\nW1,http://x/a.jpg,3\nW1,http://x/b.jpg,\n")
    with pytest.raises(DataError, match=r"b\.csv line 3, field 'Answer.overallScore1': expected an integer in 1\.\.5, got ''"):
        parse_aadb([tmp_path / "b.csv"])
    (tmp_path / "c.csv").write_text("rater,photo,value\n1,2,3\n")
    with pytest.raises(DataError, match="expected raw MTurk columns"):
        parse_aadb([tmp_path / "c.csv"])


# -- PsychoFlickr -----------------------------------------------------------------------------------
def _rating_dataset(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    root, truth = flickr_fixture(tmp_path / "flickr")
    images = sorted(truth["image"].unique())
    liked_new = [f"pf_{k}.jpg" for k in range(4)]
    store = make_store(tmp_path / "store", images + liked_new)
    write_import(parse_flickr_aes(root, test_workers=_list(tmp_path, truth["user"].unique()[:2])), store, tmp_path / "ratings")
    return tmp_path / "ratings", store, images


def test_psychoflickr_per_image_file_merges_in_one_step(tmp_path):
    into, store, images = _rating_dataset(tmp_path)
    lines = [
        f"PsychoFlickr/u001/{images[0]} 0.5 -0.25 0.1 1 -1",
        "PsychoFlickr/u001/pf_0.jpg 0.5 -0.25 0.1 1 -1",
        "PsychoFlickr/u002/pf_1.jpg -0.3 0.2 0.0 -0.5 0.75",
        f"PsychoFlickr/u002/{images[3]}   -0.3 0.2 0.0 -0.5 0.75",
    ]
    (tmp_path / "psycho.txt").write_text("\n".join(lines) + "\n")
    parsed = parse_psychoflickr(per_image=tmp_path / "psycho.txt")
    report = merge_personality(parsed, into, tmp_path / "merged", features=store)
    data = read_dataset(tmp_path / "merged")
    assert report.raters == {"train": 10, "test": 2, "personality": 2}
    assert len(data.ratings) == 300 and len(data.images) == 62 and len(data.likes) == 4
    b5 = data.rater("u002").big_five
    np.testing.assert_allclose(b5, [-0.3, 0.2, 0.0, -0.5, 0.75], atol=1e-6)
    # New liked images got their own features from the store (row k of the store is filled with k).
    pos = data.image_positions(["pf_1.jpg"])[0]
    assert data.features[pos, 0] == 61
    assert data.likes.loc[data.likes["user"] == "u001", "image"].tolist() == [images[0], "pf_0.jpg"]


def test_psychoflickr_cli_merge_and_per_user_form(tmp_path):
    into, store, images = _rating_dataset(tmp_path)
    (tmp_path / "users.csv").write_text("user,O,C,E,A,N\np1,0.1,0.2,0.3,0.4,0.5\np2,-1,-1,-1,-1,-1\n")
    (tmp_path / "likes.csv").write_text(f"user,image\np1,{images[5]}\np2,{images[6]}\np2,{images[7]}\n")
    cmd = [sys.executable, "-m", "piaa.console.cli", "data", "import", "psychoflickr", "--users", str(tmp_path / "users.csv"), "--likes", str(tmp_path / "likes.csv"), "--into", str(into), "--out", str(tmp_path / "merged")]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = read_dataset(tmp_path / "merged")
    assert data.users_in("personality") == ["p1", "p2"] and len(data.likes) == 3 and len(data.images) == 60


@pytest.mark.parametrize(
    "lines, match",
    [
        (["p/u1/a.jpg 0.1 0.2 0.3 0.4 1.5"], r"line 1, field 'neuroticism': expected a Big-Five value in \[-1, 1\], got 1.5"),
        (["p/u1/a.jpg 0.1 0.2 0.3 0.4"], "expected an image path and five trait values"),
        (["p/u1/a.jpg 0.1 0.2 0.3 0.4 0.5", "p/u1/b.jpg 0.1 0.2 0.3 0.4 0.6"], "line 2: user 'u1' .* different Big-Five values"),
        (["p/u1/a.jpg 0.1 x 0.3 0.4 0.5"], "expected five numbers"),
    ],
)
def test_psychoflickr_malformed_per_image_files(tmp_path, lines, match):
    (tmp_path / "p.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=match):
        parse_psychoflickr(per_image=tmp_path / "p.txt")


def test_psychoflickr_clashing_ids_and_missing_store(tmp_path):
    into, store, images = _rating_dataset(tmp_path)
    worker = read_dataset(into).users["user"].iloc[0]
    (tmp_path / "p.txt").write_text(f"p/{worker}/{images[0]} 0 0 0 0 0\n")
    with pytest.raises(DataError, match=r"already exist .*\(use --user-prefix\)"):
        merge_personality(parse_psychoflickr(per_image=tmp_path / "p.txt"), into, tmp_path / "m")
    merge_personality(parse_psychoflickr(per_image=tmp_path / "p.txt", user_prefix="pf-"), into, tmp_path / "m")
    assert read_dataset(tmp_path / "m").users_in("personality") == [f"pf-{worker}"]
    (tmp_path / "q.txt").write_text("p/u9/unseen.jpg 0 0 0 0 0\n")
    with pytest.raises(DataError, match="1 liked images are not in .* give --features"):
        merge_personality(parse_psychoflickr(per_image=tmp_path / "q.txt"), into, tmp_path / "m2")
    assert not (tmp_path / "m2").exists()


# -- AVA --------------------------------------------------------------------------------------------
def test_ava_rows_become_score_distributions(tmp_path):
    counts = np.array([[0, 1, 5, 17, 38, 36, 15, 6, 5, 1], [2, 0, 0, 10, 50, 60, 20, 4, 0, 1], [1] * 10])
    ids = ["953619", "953958", "954184"]
    rows = [f"{i + 1} {im} {' '.join(map(str, c))} 1 22 1396" for i, (im, c) in enumerate(zip(ids, counts))]
    (tmp_path / "AVA.txt").write_text("\n".join(rows) + "\n")
    store = write_store(tmp_path / "store", [f"images/{i}.jpg" for i in reversed(ids)], np.arange(9, dtype=np.float32).reshape(3, 3), backbone="b")
    parsed = parse_ava(tmp_path / "AVA.txt")
    write_ava(parsed, store, tmp_path / "ava")
    dist = read_distributions(tmp_path / "ava")
    np.testing.assert_array_equal(dist.counts, counts)
    np.testing.assert_allclose(dist.mean_scores[2], 5.5)
    np.testing.assert_allclose(dist.probabilities.sum(axis=1), 1.0)
    # Features follow the image: 953619 is the store's last row.
    np.testing.assert_array_equal(dist.features[dist.image_index[0]], [6, 7, 8])


def test_ava_malformed_rows(tmp_path):
    (tmp_path / "AVA.txt").write_text("1 953619 0 1 5 17 38 36 15 6 5 1 1 22 1396\n2 953958 0 1 5 17 38 36 15 6 5 1 22 1396\n")
    with pytest.raises(DataError, match="AVA.txt line 2: expected 15 whitespace-separated fields"):
        parse_ava(tmp_path / "AVA.txt")
    (tmp_path / "AVA.txt").write_text("1 953619 0 1 5 -1 38 36 15 6 5 1 1 22 1396\n")
    with pytest.raises(DataError, match="votes for score 4"):
        parse_ava(tmp_path / "AVA.txt")


def test_dry_run_checks_without_features_and_writes_nothing(tmp_path):
    root, truth = flickr_fixture(tmp_path / "flickr")
    cmd = [sys.executable, "-m", "piaa.console.cli", "data", "import", "flickr-aes", "--root", str(root), "--test-workers", str(_list(tmp_path, truth["user"].unique()[:3])), "--dry-run", "--out", str(tmp_path / "out")]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "9 train, 3 test" in proc.stdout and "300" in proc.stdout and "dry run: nothing written" in proc.stdout
    assert not (tmp_path / "out").exists()


def test_a_file_name_in_two_store_folders_is_ambiguous(tmp_path):
    store = open_store(write_store(tmp_path / "s", ["a/x.jpg", "b/x.jpg", "b/y.jpg"], np.eye(3, dtype=np.float32), backbone="b"))
    assert store.locate(["a/x.jpg", "y.jpg", "z.jpg"]).tolist() == [0, 2, -1]
    with pytest.raises(DataError, match="'x.jpg' occurs in more than one folder"):
        store.locate(["x.jpg"])


def test_psychoflickr_liked_images_without_features_refuse_or_drop(tmp_path):
    into, store, images = _rating_dataset(tmp_path)
    (tmp_path / "p.txt").write_text(f"p/u1/{images[0]} 0 0 0 0 0\np/u1/pf_2.jpg 0 0 0 0 0\np/u1/gone.jpg 0 0 0 0 0\n")
    parsed = parse_psychoflickr(per_image=tmp_path / "p.txt")
    with pytest.raises(DataError, match=r"1 of 2 images have no features, e.g. 'gone.jpg'"):
        merge_personality(parsed, into, tmp_path / "m", features=store)
    assert not (tmp_path / "m").exists()
    report = merge_personality(parsed, into, tmp_path / "m", features=store, drop_missing=True)
    data = read_dataset(tmp_path / "m")
    assert report.dropped["images"] == 1 and report.dropped["likes"] == 1
    assert sorted(data.likes["image"]) == sorted([images[0], "pf_2.jpg"]) and len(data.images) == 61


def test_aadb_wide_file_without_worker_column(tmp_path):
    (tmp_path / "a.csv").write_text("HITId,Input.image_url1,Answer.overallScore1\nH1,http://x/a.jpg,3\n")
    with pytest.raises(DataError, match="no WorkerId column"):
        parse_aadb([tmp_path / "a.csv"], test_workers=None)
    (tmp_path / "b.csv").write_text("workerid,Input.image_url1,Answer.overallScore1\nW9,http://x/a.jpg,3\n")
    parsed = parse_aadb([tmp_path / "b.csv"], min_test_ratings=1)
    assert parsed.ratings[["user", "image"]].values.tolist() == [["W9", "a.jpg"]]
