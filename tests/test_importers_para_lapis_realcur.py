"""PARA, LAPIS and REAL-CUR importers on small files written in each published layout (both header
variants where copies in the wild differ), through parse → write_import → read_dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from piaa.errors import ConfigError, DataError
from piaa.tasks.describe import describe
from piaa.tasks.feature_store import write_store
from piaa.tasks.format import BIG_FIVE, read_dataset, write_dataset
from piaa.tasks.importers import big_five_to_para, para_to_big_five, parse_lapis, parse_para, parse_real_cur, write_import

PARA_TRAITS_FILE_ORDER = ("E", "A", "N", "O", "C")  # PARA-UserInfo.csv's column order
ATTRS = ("qualityScore", "compositionScore", "colorScore", "dofScore", "contentScore", "lightScore")


def make_store(path: Path, images: list[str], dim: int = 4) -> Path:
    feats = np.repeat(np.arange(len(images), dtype=np.float32)[:, None], dim, axis=1)
    return write_store(path, images, feats, backbone="test-backbone")


def para_files(root: Path, *, variant: str = "release", n_users: int = 12, n_images: int = 40, seed: int = 0) -> dict:
    """PARA annotation files. `release`: comma-separated, README header with isObjectEmphasis;
    `variant`: semicolon-separated, no isObjectEmphasis, snake_case/`Judgement` spellings."""
    rng = np.random.default_rng(seed)
    users = [f"{1000 + 7 * u}" for u in range(n_users)]
    images = [f"iaa_pub{i + 1}_.jpg" for i in range(n_images)]
    traits = rng.integers(2, 11, size=(n_users, 5))  # file order E, A, N, O, C
    rows = []
    for i, im in enumerate(images):
        for u in rng.choice(n_users, size=6, replace=False):
            rows.append({
                "sessionId": f"session{i // 10 + 1}", "imageName": im, "userId": users[u],
                "aestheticScore": float(rng.integers(2, 11)) / 2,
                **{a: float(rng.integers(1, 6)) for a in ATTRS},
                "isObjectEmphasis": int(rng.integers(0, 2)), "imgEmotion": "Amusement",
                "difficultyOfJudgment": int(rng.integers(-1, 2)), "contentPreference": int(rng.integers(1, 6)),
                "willingnessToShare": int(rng.integers(1, 6)), "semantic": "animal",
            })
    table = pd.DataFrame(rows)
    info = pd.DataFrame({
        "userId": users, "age": rng.choice(["18-21", "22-25", "26-29"], n_users), "gender": rng.choice(["male", "female"], n_users),
        "EducationalLevel": "university", "artExperience": "beginner", "photographyExperience": "competent",
        **{f"personality-{t}": traits[:, k] for k, t in enumerate(PARA_TRAITS_FILE_ORDER)},
    })
    sep = ","
    if variant != "release":
        sep = ";"
        table = table.drop(columns="isObjectEmphasis").rename(columns={"userId": "user_id", "difficultyOfJudgment": "difficultyOfJudgement"})
        info = info.rename(columns={f"personality-{t}": f"personality_{t}" for t in PARA_TRAITS_FILE_ORDER} | {"userId": "user_id"})
    ann = root / "annotation"
    ann.mkdir(parents=True, exist_ok=True)
    table.to_csv(ann / "PARA-Images.csv", index=False, sep=sep)
    info.to_csv(ann / "PARA-UserInfo.csv", index=False, sep=sep)
    return {"table": table, "info": info, "users": users, "images": images, "traits": traits}


@pytest.mark.parametrize("variant", ["release", "variant"])
def test_para_ratings_bigfive_order_and_range_attributes_round_trip(tmp_path, variant):
    truth = para_files(tmp_path / "PARA", variant=variant)
    parsed = parse_para(tmp_path / "PARA", seed=3, n_test=3, min_test_ratings=1)
    report = write_import(parsed, make_store(tmp_path / "store", truth["images"]), tmp_path / "out")
    data = read_dataset(tmp_path / "out")
    assert len(data.ratings) == len(truth["table"]) == 40 * 6
    assert report.raters == {"train": 9, "test": 3, "personality": 0}
    user_col = "userId" if variant == "release" else "user_id"
    merged = data.ratings.merge(truth["table"].rename(columns={user_col: "user", "imageName": "image"}), on=["user", "image"])
    assert len(merged) == 240 and np.allclose(merged["score"], merged["aestheticScore"])
    # Big-Five: file order E,A,N,O,C → piaa order O,C,E,A,N; 2..10 → [-1, 1] linearly (6 → 0).
    b5 = data.users.set_index("user").loc[truth["users"], list(BIG_FIVE)].to_numpy()
    file_order = truth["traits"]
    expected = (file_order[:, [3, 4, 0, 1, 2]] - 6) / 4
    np.testing.assert_allclose(b5, expected, atol=1e-6)
    assert b5.min() >= -1 and b5.max() <= 1
    assert data.meta["big_five"]["range"] == [2.0, 10.0]
    # Rater attributes survive as text columns of users.csv.
    assert {"age", "gender", "education", "art_experience", "photography_experience"} <= set(data.rater_attribute_names)
    row = data.users.set_index("user").loc[truth["users"][0]]
    assert row["gender"] == truth["info"]["gender"].iloc[0] and row["age"] == truth["info"]["age"].iloc[0]
    # Attribute scores round-trip per rating; object_emphasis only where the file has it.
    expect_names = ["quality", "composition", "color", "dof", "content", "light", "content_preference", "willingness_to_share", "difficulty"]
    if variant == "release":
        expect_names.append("object_emphasis")
    assert sorted(data.attribute_names) == sorted(expect_names)
    att = data.attributes.merge(truth["table"].rename(columns={user_col: "user", "imageName": "image"}), on=["user", "image"])
    assert len(att) == 240
    assert np.allclose(att["composition"], att["compositionScore"]) and np.allclose(att["content_preference"], att["contentPreference"])
    means = data.image_attributes(split=None)
    im = truth["images"][5]
    pos = data.image_positions([im])[0]
    assert means.loc[pos, "quality"] == pytest.approx(truth["table"].loc[truth["table"]["imageName"] == im, "qualityScore"].mean())


def test_para_big_five_mapping_is_invertible_and_range_configurable(tmp_path):
    v = np.array([2.0, 3.0, 6.0, 9.5, 10.0])
    b = para_to_big_five(v)
    np.testing.assert_allclose(b, [-1.0, -0.75, 0.0, 0.875, 1.0])
    np.testing.assert_allclose(big_five_to_para(b), v)
    np.testing.assert_allclose(big_five_to_para(para_to_big_five(v, (1, 10)), (1, 10)), v)
    truth = para_files(tmp_path / "PARA")
    parsed = parse_para(tmp_path / "PARA", n_test=2, min_test_ratings=1, big_five_range=(1, 11))
    users = parsed.users.set_index("user").loc[truth["users"]]
    np.testing.assert_allclose(users["openness"], (truth["traits"][:, 3] - 6) / 5, atol=1e-6)


def test_para_out_of_range_big_five_names_file_line_and_field(tmp_path):
    truth = para_files(tmp_path / "PARA")
    info = truth["info"].copy()
    info.loc[4, "personality-N"] = 11
    info.to_csv(tmp_path / "PARA" / "annotation" / "PARA-UserInfo.csv", index=False)
    with pytest.raises(DataError) as err:
        parse_para(tmp_path / "PARA", n_test=2, min_test_ratings=1)
    msg = str(err.value)
    assert "PARA-UserInfo.csv line 6, field 'personality-N'" in msg and "2..10" in msg and "--big-five-range" in msg
    assert "\n" not in msg


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda t: t.drop(columns="aestheticScore"), "line 1: missing column 'aestheticScore'"),
        (lambda t: t.assign(aestheticScore=t["aestheticScore"].where(t.index != 7, 6.5)), "line 9, field 'aestheticScore': expected a number in 1..5, got '6.5'"),
        (lambda t: t.assign(colorScore=t["colorScore"].astype(object).where(t.index != 2, "red")), "line 4, field 'colorScore': expected a number, got 'red'"),
        (lambda t: t.assign(userId=t["userId"].where(t.index != 0, " ")), "line 2, field 'userId': empty userId"),
    ],
)
def test_para_bad_images_file_is_one_line(tmp_path, edit, expected):
    truth = para_files(tmp_path / "PARA")
    edit(truth["table"]).to_csv(tmp_path / "PARA" / "annotation" / "PARA-Images.csv", index=False)
    with pytest.raises(DataError) as err:
        parse_para(tmp_path / "PARA", n_test=2, min_test_ratings=1)
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_para_fold_file_without_header_sets_test_raters(tmp_path):
    truth = para_files(tmp_path / "PARA")
    chosen = truth["users"][2:5]
    (tmp_path / "TestUserIDs_Fold1.txt").write_text("\n".join(chosen) + "\n")
    parsed = parse_para(tmp_path / "PARA", test_raters=tmp_path / "TestUserIDs_Fold1.txt")
    assert sorted(parsed.users.loc[parsed.users["split"] == "test", "user"]) == sorted(chosen)
    assert parsed.meta["split"] == {"source": "file", "file": str(tmp_path / "TestUserIDs_Fold1.txt"), "form": "one id per line", "n_test": 3}
    (tmp_path / "bad.txt").write_text("\n".join([chosen[0], "nobody", chosen[1]]) + "\n")
    with pytest.raises(DataError, match=r"bad.txt line 2: test worker 'nobody' has no ratings"):
        parse_para(tmp_path / "PARA", test_raters=tmp_path / "bad.txt")


def test_derived_split_is_seeded_written_out_and_reads_back_as_the_same_split(tmp_path):
    truth = para_files(tmp_path / "PARA", n_users=20)
    store = make_store(tmp_path / "store", truth["images"])
    a = parse_para(tmp_path / "PARA", seed=5, n_test=4, min_test_ratings=1)
    b = parse_para(tmp_path / "PARA", seed=5, n_test=4, min_test_ratings=1)
    c = parse_para(tmp_path / "PARA", seed=6, n_test=4, min_test_ratings=1)
    test_of = lambda p: sorted(p.users.loc[p.users["split"] == "test", "user"])  # noqa: E731
    assert test_of(a) == test_of(b) != test_of(c)
    write_import(a, store, tmp_path / "out")
    published = tmp_path / "out" / "test_raters.csv"
    lines = published.read_text().splitlines()
    assert lines[0] == "ID" and sorted(lines[1:]) == test_of(a)
    again = parse_para(tmp_path / "PARA", test_raters=published)
    assert test_of(again) == test_of(a)


# -- LAPIS -------------------------------------------------------------------------------------------
def lapis_file(path: Path, *, image_col: str = "file", n_users: int = 10, n_images: int = 30, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_images):
        for u in rng.choice(n_users, size=5, replace=False):
            rows.append({
                image_col: f"{['Impressionism', 'Baroque'][i % 2]}/art_{i:04d}.jpg", "image_id": i, "response": int(rng.integers(0, 11)),
                "participant_id": 500 + u, "age": 20 + u, "nationality": "Belgian", "demo_gender": "female" if u % 2 else "male",
                "demo_edu": "Master", "demo_colorblind": "No", "style": "x", "genre": "y",
                **{f"VAIAK{k}": (u + k) % 7 + 1 for k in range(1, 8)}, **{f"2VAIAK{k}": (u * k) % 7 + 1 for k in range(1, 5)},
            })
    table = pd.DataFrame(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    return table


@pytest.mark.parametrize("image_col", ["file", "image_filename"])
def test_lapis_both_image_headers_import_ratings_and_participant_attributes(tmp_path, image_col):
    table = lapis_file(tmp_path / "LAPIS" / "annotation" / "LAPIS_individualratings_metaANDdemodata.csv", image_col=image_col)
    table["response"] = table["response"].astype(object)
    table.loc[3, "response"] = ""  # unanswered rows are dropped and counted
    table.to_csv(tmp_path / "LAPIS" / "annotation" / "LAPIS_individualratings_metaANDdemodata.csv", index=False)
    parsed = parse_lapis(tmp_path / "LAPIS", seed=1, test_share=0.2, min_test_ratings=1)
    images = sorted({p.rsplit("/", 1)[1] for p in table[image_col]})
    write_import(parsed, make_store(tmp_path / "store", images), tmp_path / "out")
    data = read_dataset(tmp_path / "out")
    assert len(data.ratings) == len(table) - 1 == 149
    assert any("1 row(s) with an empty response dropped" in n for n in data.meta["import_notes"])
    assert data.score_range == (0.0, 10.0)
    assert sorted(data.images) == images  # ids are file names without the style folder
    assert len(data.users_in("test")) == 2 and len(data.users_in("train")) == 8
    users = data.users.set_index("user")
    assert users.loc["503", "gender"] == "female" and users.loc["503", "age"] == "23" and users.loc["503", "vaiak2_2"] == str((3 * 2) % 7 + 1)
    assert users[list(BIG_FIVE)].isna().all().all()


def test_lapis_bad_response_reports_the_line_of_the_original_file(tmp_path):
    path = tmp_path / "LAPIS_individualratings_metaANDdemodata.csv"
    table = lapis_file(path)
    table["response"] = table["response"].astype(object)
    table.loc[1, "response"] = ""
    table.loc[5, "response"] = 42
    table.to_csv(path, index=False)
    with pytest.raises(DataError) as err:
        parse_lapis(ratings_csv=path, min_test_ratings=1)
    assert "line 7, field 'response': expected a number in 0..10, got '42'" in str(err.value)
    assert "--score-range" in str(err.value)
    assert len(parse_lapis(ratings_csv=path, min_test_ratings=1, score_range=(0, 100)).ratings) == len(table) - 1


# -- REAL-CUR ----------------------------------------------------------------------------------------
def real_cur_tree(root: Path, n_users: int = 3, per_user: int = 12) -> dict[str, dict[str, int]]:
    from PIL import Image

    truth: dict[str, dict[str, int]] = {}
    for u in range(n_users):
        worker = f"user{u + 1:02d}"
        for i in range(per_user):
            score = (i + u) % 5 + 1
            path = root / "images" / worker / str(score) / f"IMG_{i:04d}.jpg"  # same names in every album
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (4, 4), (i * 10 % 255, u * 40, 0)).save(path)
            truth.setdefault(worker, {})[f"{worker}/{score}/IMG_{i:04d}.jpg"] = score
    return truth


def test_real_cur_folders_become_an_evaluation_only_dataset(tmp_path):
    truth = real_cur_tree(tmp_path / "REAL-CUR")
    parsed = parse_real_cur(tmp_path / "REAL-CUR")  # the parent folder is accepted too
    names = sorted(parsed.ratings["image"])
    assert names == sorted(k for v in truth.values() for k in v)
    write_import(parsed, make_store(tmp_path / "store", names), tmp_path / "out")
    data = read_dataset(tmp_path / "out")
    assert data.meta["evaluation_only"] is True
    assert sorted(data.users_in("test")) == ["user01", "user02", "user03"] and data.users_in("train") == []
    for worker, photos in truth.items():
        rater = data.rater(worker)
        got = dict(zip(data.images[rater.image_index], rater.scores))
        assert got == {k: float(v) for k, v in photos.items()}


def test_real_cur_non_score_folder_is_one_clear_error(tmp_path):
    real_cur_tree(tmp_path / "RC", n_users=1, per_user=3)
    (tmp_path / "RC" / "images" / "user01" / "best").mkdir()
    with pytest.raises(DataError, match=r"user01/best: expected a score folder named 1..5 inside the user folder 'user01', got 'best'"):
        parse_real_cur(tmp_path / "RC" / "images")


# -- the format's optional columns and attributes file --------------------------------------------------
def test_format_keeps_rater_attribute_columns_and_checks_attributes_rows(tmp_path):
    ratings = pd.DataFrame({"user": ["a", "a", "b", "b"], "image": ["x", "y", "x", "y"], "score": [1, 2, 3, 4]})
    users = pd.DataFrame({"user": ["a", "b"], "split": ["train", "test"], "age": ["18-21", ""], "gender": ["f", "m"]})
    attributes = pd.DataFrame({"user": ["a", "b"], "image": ["x", "y"], "quality": [3.0, np.nan]})
    path = write_dataset(tmp_path / "d", name="d", score_range=(1, 5), ratings=ratings, users=users, images=["x", "y"],
                         features=np.zeros((2, 3), np.float32), attributes=attributes)
    data = read_dataset(path)
    assert data.rater_attribute_names == ["age", "gender"] and data.users["age"].tolist() == ["18-21", ""]
    assert data.attribute_names == ["quality"] and np.isnan(data.attributes["quality"].iloc[1])
    (path / "attributes.csv").write_text("user,image,quality\na,x,3\nb,z,1\n")
    with pytest.raises(DataError, match=r"attributes.csv line 3, field 'image': image 'z' is not in images.csv"):
        read_dataset(path)
    (path / "attributes.csv").write_text("user,image,quality\na,x,3\na,y,oops\n")
    with pytest.raises(DataError, match=r"attributes.csv line 3, field 'quality': expected a number or an empty cell, got 'oops'"):
        read_dataset(path)


# -- through the command line ---------------------------------------------------------------------------
def test_cli_imports_para_lapis_and_real_cur(cli, tmp_path):
    truth = para_files(tmp_path / "PARA")
    store = make_store(tmp_path / "pstore", truth["images"])
    r = cli("data", "import", "para", "--root", tmp_path / "PARA", "--n-test", "3", "--min-test-ratings", "1", "--features", store, "--out", tmp_path / "para")
    assert r.code == 0, r.err
    assert "PARA: 40 images, 240 ratings, 9 train, 3 test raters" in r.out and "test_raters.csv" in r.err
    assert read_dataset(tmp_path / "para").attribute_names
    lapis_file(tmp_path / "L" / "LAPIS_individualratings_metaANDdemodata.csv")
    r = cli("data", "import", "lapis", "--ratings-csv", tmp_path / "L" / "LAPIS_individualratings_metaANDdemodata.csv", "--min-test-ratings", "1", "--dry-run")
    assert r.code == 0 and "LAPIS: checked (dry run: nothing written)" in r.out
    real_cur_tree(tmp_path / "RC", n_users=2, per_user=4)
    r = cli("data", "import", "real-cur", "--images", tmp_path / "RC" / "images", "--dry-run")
    assert r.code == 0 and "REAL-CUR: checked" in r.out


@pytest.mark.parametrize("which", ["big-five", "range", "lapis-score", "real-cur"])
def test_cli_bad_files_exit_2_with_one_line(cli, tmp_path, which):
    if which in ("big-five", "range"):
        truth = para_files(tmp_path / "PARA")
        info = truth["info"].copy()
        info.loc[0, "personality-O"] = 0
        info.to_csv(tmp_path / "PARA" / "annotation" / "PARA-UserInfo.csv", index=False)
        extra = ("--big-five-range", "10,2") if which == "range" else ()
        r = cli("data", "import", "para", "--root", tmp_path / "PARA", "--dry-run", *extra)
        expected = "--big-five-range: expected LO,HI with LO < HI, got 10,2" if which == "range" else "PARA-UserInfo.csv line 2, field 'personality-O': expected a Big-Five score in 2..10"
    elif which == "lapis-score":
        table = lapis_file(tmp_path / "l.csv")
        table.loc[0, "response"] = 11
        table.to_csv(tmp_path / "l.csv", index=False)
        r = cli("data", "import", "lapis", "--ratings-csv", tmp_path / "l.csv", "--dry-run")
        expected = "l.csv line 2, field 'response': expected a number in 0..10, got '11'"
    else:
        (tmp_path / "RC" / "u1" / "great").mkdir(parents=True)
        r = cli("data", "import", "real-cur", "--images", tmp_path / "RC", "--dry-run")
        expected = "expected a score folder named 1..5"
    assert r.code == 2, r.err
    assert expected in r.err and len(r.err.strip().splitlines()) == 1, r.err


def test_para_repeated_rows_are_averaged_and_counted(tmp_path):
    truth = para_files(tmp_path / "PARA")
    table = truth["table"]
    repeat = table.iloc[[4]].assign(aestheticScore=table["aestheticScore"].iloc[4] + 0.5 if table["aestheticScore"].iloc[4] < 5 else 4.0, qualityScore=1.0)
    pd.concat([table, repeat], ignore_index=True).to_csv(tmp_path / "PARA" / "annotation" / "PARA-Images.csv", index=False)
    parsed = parse_para(tmp_path / "PARA", n_test=2, min_test_ratings=1)
    assert len(parsed.ratings) == 240 and any("1 repeated (user, image) rows" in n for n in parsed.notes)
    key = (table["userId"].iloc[4], table["imageName"].iloc[4])
    got = parsed.ratings.set_index(["user", "image"]).loc[key, "score"]
    assert got == pytest.approx((table["aestheticScore"].iloc[4] + repeat["aestheticScore"].iloc[0]) / 2)
    assert parsed.attributes.set_index(["user", "image"]).loc[key, "quality"] == pytest.approx((table["qualityScore"].iloc[4] + 1.0) / 2)


# -- PARA's image-level GIAA split ----------------------------------------------------------------------
def giaa_files(ann: Path, train: list[str], test: list[str], seed: int = 0, sep: str = ",") -> None:
    """PARA-GiaaTrain.csv / PARA-GiaaTest.csv in the README's column order (imageName, sessionId,
    scene, the 9-bin score distribution, then per-image means and stds; a subset of the 95 columns)."""
    rng = np.random.default_rng(seed)
    for name, images in (("PARA-GiaaTrain.csv", train), ("PARA-GiaaTest.csv", test)):
        dist = rng.dirichlet(np.ones(9), size=len(images))
        table = pd.DataFrame({"imageName": images, "sessionId": "session1", "semantic": "animal",
                              **{f"aestheticScore_{1 + k / 2:.1f}": dist[:, k] for k in range(9)},
                              "aestheticScore_mean": dist @ (1 + np.arange(9) / 2), "aestheticScore_std": 0.5,
                              "qualityScore_mean": 3.0, "qualityScore_std": 0.4})
        table.to_csv(ann / name, index=False, sep=sep)


@pytest.mark.parametrize("sep", [",", ";"])
def test_para_giaa_split_files_are_kept_as_an_image_split(tmp_path, sep):
    truth = para_files(tmp_path / "PARA")
    images = truth["images"]
    # 30 train images, 8 test images, 2 rated images in neither file, 1 listed image nobody rated
    giaa_files(tmp_path / "PARA" / "annotation", images[:30], images[30:38] + ["iaa_pub9999_.jpg"], sep=sep)
    parsed = parse_para(tmp_path / "PARA", n_test=3, min_test_ratings=1)
    assert parsed.meta["giaa_split"]["train"] == 30 and parsed.meta["giaa_split"]["test"] == 8
    note = next(n for n in parsed.notes if n.startswith("GIAA image split"))
    assert "1 listed image(s) have no ratings" in note and "2 rated image(s) are in neither file" in note
    write_import(parsed, make_store(tmp_path / "store", images), tmp_path / "out")
    data = read_dataset(tmp_path / "out")
    split = data.image_split()
    assert split.value_counts().to_dict() == {"train": 30, "test": 8}
    assert list(data.images[split.index[split == "test"]]) == images[30:38]
    assert data.meta["giaa_split"]["file"] == "giaa_split.csv"
    facts = describe(data)
    assert facts["image_split"] == {"train": 30, "test": 8}
    assert ("image split (GIAA)", "30 train, 8 test images (giaa_split.csv)") in facts["rows"]


def test_para_giaa_split_drops_images_without_features_and_is_absent_without_files(tmp_path):
    truth = para_files(tmp_path / "PARA")
    images = truth["images"]
    parsed = parse_para(tmp_path / "PARA", n_test=3, min_test_ratings=1)
    assert parsed.image_split is None and "giaa_split" not in parsed.meta
    write_import(parsed, make_store(tmp_path / "s0", images), tmp_path / "plain")
    assert read_dataset(tmp_path / "plain").image_split() is None
    giaa_files(tmp_path / "PARA" / "annotation", images[:20], images[20:])
    parsed = parse_para(tmp_path / "PARA", n_test=3, min_test_ratings=1)
    write_import(parsed, make_store(tmp_path / "s1", images[2:]), tmp_path / "out", drop_missing=True)
    split = read_dataset(tmp_path / "out").image_split()
    assert split.value_counts().to_dict() == {"train": 18, "test": 20}


def test_para_giaa_split_needs_both_files_and_one_split_per_image(tmp_path):
    truth = para_files(tmp_path / "PARA")
    images, ann = truth["images"], tmp_path / "PARA" / "annotation"
    giaa_files(ann, images[:20], images[20:])
    (ann / "PARA-GiaaTest.csv").unlink()
    parsed = parse_para(tmp_path / "PARA", n_test=3, min_test_ratings=1)
    assert parsed.image_split is None
    assert any("found PARA-GiaaTrain.csv but not PARA-GiaaTest.csv" in n for n in parsed.notes)
    giaa_files(ann, images[:20], images[25:] + [images[3]])  # images[3] is in both files
    with pytest.raises(DataError, match=r"PARA-GiaaTest.csv line 17, field 'imageName': image 'iaa_pub4_.jpg' is also in PARA-GiaaTrain.csv"):
        parse_para(tmp_path / "PARA", n_test=3, min_test_ratings=1)


def test_image_split_file_with_a_bad_row_is_one_clear_line(tmp_path):
    truth = para_files(tmp_path / "PARA")
    giaa_files(tmp_path / "PARA" / "annotation", truth["images"][:20], truth["images"][20:])
    write_import(parse_para(tmp_path / "PARA", n_test=3, min_test_ratings=1), make_store(tmp_path / "s", truth["images"]), tmp_path / "out")
    path = tmp_path / "out" / "giaa_split.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:3] + [lines[3].replace(",train", ",validation")] + lines[4:]) + "\n")
    with pytest.raises(DataError, match=r"giaa_split.csv line 4, field 'split': expected train or test, got 'validation'"):
        read_dataset(tmp_path / "out").image_split()


def test_para_semicolon_file_with_spaces_around_cells_reads_clean_ids(tmp_path):
    truth = para_files(tmp_path / "PARA", variant="variant")
    path = tmp_path / "PARA" / "annotation" / "PARA-Images.csv"
    path.write_text(path.read_text().replace(";", " ; "))  # spaces on both sides of every delimiter
    parsed = parse_para(tmp_path / "PARA", n_test=3, min_test_ratings=1)
    assert sorted(parsed.ratings["user"].unique()) == sorted(truth["users"])
    assert set(parsed.ratings["image"]) == set(truth["images"])
    np.testing.assert_allclose(np.sort(parsed.ratings["score"]), np.sort(truth["table"]["aestheticScore"]))


def test_giaa_baseline_can_train_on_the_giaa_train_images_only(tmp_path):
    """With giaa_train_only the generic prior never sees a GIAA-test image: changing those images'
    scores leaves it unchanged (and changes the prior trained on every image)."""
    import dataclasses

    from piaa.registry import create_method

    truth = para_files(tmp_path / "PARA", n_images=60)
    images = truth["images"]
    giaa_files(tmp_path / "PARA" / "annotation", images[:45], images[45:])
    write_import(parse_para(tmp_path / "PARA", n_test=3, min_test_ratings=1), make_store(tmp_path / "s", images, dim=6), tmp_path / "out")
    data = read_dataset(tmp_path / "out").without("test")
    test_rows = data.ratings["image_index"].isin(data.image_split().pipe(lambda s: s.index[s == "test"]))
    flipped = dataclasses.replace(data, ratings=data.ratings.assign(score=np.where(test_rows, 6.0 - data.ratings["score"], data.ratings["score"])))
    x = np.asarray(data.features)
    fit = {"epochs": 3, "hidden": (8,), "patience": 3}
    only = [create_method("giaa", giaa_train_only=True, **fit).fit(d, seed=0) for d in (data, flipped)]
    np.testing.assert_array_equal(only[0].generic_score(x), only[1].generic_score(x))
    event = next(e for e in only[0].fit_log if e.get("event") == "giaa_split")
    assert event["left_out_images"] == data.ratings.loc[test_rows, "image_index"].nunique() > 0
    assert event["train_images"] == data.ratings.loc[~test_rows, "image_index"].nunique()
    every = [create_method("giaa", **fit).fit(d, seed=0) for d in (data, flipped)]
    assert not np.allclose(every[0].generic_score(x), every[1].generic_score(x))
    with pytest.raises(ConfigError, match="giaa_train_only: dataset .* has no image split"):
        create_method("giaa", giaa_train_only=True, **fit).fit(dataclasses.replace(data, path=None), seed=0)
