"""The personalisation API: adapt, store, reload, score; every bad input is one clear error."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
import torch

import piaa
from piaa.errors import DataError, PiaaError
from piaa.personalize import top_k
from piaa.profiles import ProfileError, ProfileStore


def test_public_surface_is_small_and_lazy():
    for name in ("load", "ProfileStore", "list_methods", "create_method", "read_dataset", "evaluate"):
        assert name in dir(piaa) and getattr(piaa, name) is not None
    with pytest.raises(AttributeError):
        piaa.not_a_thing  # noqa: B018


def test_adapt_save_load_scores_identically(ridge_model, rater_ratings, tmp_path):
    images, scores = rater_ratings(ridge_model, 10)
    profile = ridge_model.adapt(images, scores, user="alice")
    assert profile.n_ratings == 10 and profile.images == images and profile.method == "ridge"
    assert profile.support is None  # ridge rebuilds from its state: the ratings' features are not stored
    store = ProfileStore(tmp_path / "p.sqlite", model=ridge_model)
    store.save(profile)
    x = np.array(ridge_model.dataset.features, dtype=np.float32)
    before = profile.predict(x)
    # A fresh model object and a store opened by path only (it finds the run it recorded).
    again = ProfileStore(tmp_path / "p.sqlite").load("alice")
    assert again.model is not ridge_model and again.model.model_id == ridge_model.model_id
    np.testing.assert_array_equal(again.predict(x), before)
    assert again.scores.tolist() == scores.tolist() and again.images == images
    # Personalisation did something: the profile differs from the unadapted prior.
    prior = ridge_model.method.generic_score(x)
    assert np.abs(before - prior).max() > 0.05
    # Image ids and their feature rows give the same scores.
    rows = ridge_model.dataset.images.get_indexer(images)
    np.testing.assert_array_equal(profile.predict(images), profile.predict(x[rows]))
    info = store.info("alice")
    assert info["n_ratings"] == 10 and info["ratings"]["images"] == images and info["bytes"] == again.stored_bytes > 0


def test_rank_orders_best_first_and_top_k_is_exact(ridge_model, rater_ratings):
    images, scores = rater_ratings(ridge_model, 12)
    profile = ridge_model.adapt(images, scores, user="u")
    names = list(ridge_model.dataset.images[:200])
    ranked = profile.rank(names, top=7)
    full = profile.predict(names)
    assert ranked["rank"].tolist() == list(range(1, 8))
    assert ranked["score"].tolist() == sorted(full, reverse=True)[:7]
    assert ranked["image"].tolist() == [names[i] for i in ranked["index"]]
    assert len(profile.rank(names)) == 200
    # Ties keep input order, also at the top-k boundary.
    s = np.array([1.0, 3.0, 2.0, 3.0, 2.0, 2.0])
    assert top_k(s, 3).tolist() == [1, 3, 2]
    assert top_k(s, 4).tolist() == [1, 3, 2, 4]
    assert top_k(s, None).tolist() == [1, 3, 2, 4, 5, 0]
    assert top_k(s, 0).tolist() == []


def test_readapting_replaces_the_profile_and_keeps_created(ridge_model, rater_ratings, tmp_path):
    store = ProfileStore(tmp_path / "p.sqlite", model=ridge_model)
    images, scores = rater_ratings(ridge_model, 30, which=1)
    first = store.save(ridge_model.adapt(images[:10], scores[:10], user="bob"))
    second = store.save(ridge_model.adapt(images, scores, user="bob"))
    loaded = store.load("bob")
    assert loaded.n_ratings == 30 and len(store) == 1
    assert loaded.created == first.created and loaded.updated == second.updated > first.updated
    x = np.asarray(ridge_model.dataset.features[:100], dtype=np.float32)
    np.testing.assert_array_equal(loaded.predict(x), second.predict(x))
    assert not np.allclose(loaded.predict(x), first.predict(x))


def test_same_seed_same_profile(ridge_model, rater_ratings):
    images, scores = rater_ratings(ridge_model, 10)
    a = ridge_model.adapt(images, scores, user="a", seed=5)
    b = ridge_model.adapt(images, scores, user="b", seed=5)
    from safetensors.torch import load

    sa, sb = load(a.state_bytes()), load(b.state_bytes())
    assert sorted(sa) == sorted(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.features_sha256 == b.features_sha256


def test_method_without_restore_hook_falls_back_to_readapting(ridge_model, rater_ratings, tmp_path, monkeypatch):
    images, scores = rater_ratings(ridge_model, 10)
    monkeypatch.setattr(type(ridge_model.method), "user_model_from_state", lambda self, state: None)
    profile = ridge_model.adapt(images, scores, user="carol", seed=3)
    assert profile.support is not None and profile.support.shape == (10, 32)
    store = ProfileStore(tmp_path / "p.sqlite", model=ridge_model)
    store.save(profile)
    loaded = store.load("carol")
    x = np.array(ridge_model.dataset.features, dtype=np.float32)
    np.testing.assert_array_equal(loaded.predict(x), profile.predict(x))
    assert loaded.stored_bytes > 10 * 32 * 4  # the support features are kept


def test_profile_of_another_model_is_refused(small_world, ridge_model, rater_ratings, tmp_path):
    giaa = piaa.load(small_world["giaa"])
    images, scores = rater_ratings(ridge_model, 10)
    path = tmp_path / "p.sqlite"
    ProfileStore(path, model=ridge_model).save(ridge_model.adapt(images, scores, user="alice"))
    foreign = giaa.adapt(images, scores, user="dave")
    with pytest.raises(ProfileError, match=r"holds profiles of model ridge-.*but this profile is model giaa-.*never mixed"):
        ProfileStore(path).save(foreign)
    with pytest.raises(ProfileError, match="never mixed"):
        ProfileStore(path, model=giaa).load("alice")
    assert ProfileStore(path).users() == ["alice"]


def test_image_paths_go_through_the_extractor(small_world, ridge_model, rater_ratings, tmp_path):
    images, scores = rater_ratings(ridge_model, 10)
    rows = ridge_model.dataset.images.get_indexer(images)
    files = []
    for i, row in enumerate(rows):
        path = tmp_path / f"photo{i}.jpg"
        path.write_bytes(b"not really a jpeg")
        files.append(str(path))
    table = {f: ridge_model.dataset.features[r] for f, r in zip(files, rows)}
    with_extractor = piaa.load(small_world["ridge"], extractor=lambda paths: np.stack([table[p] for p in paths]))
    by_path = with_extractor.adapt(files, scores, user="erin")
    by_id = ridge_model.adapt(images, scores, user="erin")
    np.testing.assert_array_equal(by_path.predict(files), by_id.predict(images))
    with pytest.raises(PiaaError, match="names no backbone.*pass feature arrays or image ids"):
        ridge_model.adapt(files, scores, user="erin")


def test_profile_size_per_method(small_world, ridge_model, rater_ratings):
    giaa = piaa.load(small_world["giaa"])
    images, scores = rater_ratings(ridge_model, 10)
    sizes = {m.method_name: len(m.adapt(images, scores, user="s").state_bytes()) for m in (giaa, ridge_model)}
    # giaa stores nothing personal (only the safetensors header); ridge stores w, the design centre
    # (feature dim + 1 float32 each) and three float64 numbers.
    assert sizes["giaa"] < 100
    assert 2 * 33 * 4 + 3 * 8 < sizes["ridge"] < 1000


# -- bad input: one clear error, nothing lost ---------------------------------------------------------
@pytest.fixture
def filled_store(ridge_model, rater_ratings, tmp_path):
    store = ProfileStore(tmp_path / "p.sqlite", model=ridge_model)
    images, scores = rater_ratings(ridge_model, 10)
    store.save(ridge_model.adapt(images, scores, user="alice"))
    return store


def _one_line(exc) -> str:
    text = str(exc.value)
    assert "\n" not in text and len(text) < 400
    return text


def test_unknown_user(filled_store):
    with pytest.raises(ProfileError) as exc:
        filled_store.load("alicia")
    assert "no profile for user 'alicia'" in _one_line(exc) and "did you mean 'alice'" in str(exc.value)
    with pytest.raises(ProfileError, match="no profile for user 'zed'"):
        filled_store.delete("zed")
    assert filled_store.users() == ["alice"]


def test_empty_ratings(ridge_model, filled_store):
    with pytest.raises(DataError) as exc:
        ridge_model.adapt([], [], user="alice")
    assert "no ratings given for user 'alice'" in _one_line(exc)
    assert filled_store.load("alice").n_ratings == 10


def test_scores_outside_the_range(ridge_model, rater_ratings, filled_store):
    images, scores = rater_ratings(ridge_model, 10)
    bad = scores.copy()
    bad[4] = 6.0
    with pytest.raises(DataError) as exc:
        ridge_model.adapt(images, bad, user="alice")
    assert _one_line(exc) == "ratings, field 'score 4': expected a score in [1, 5] (the model's score range), got 6"
    bad[4] = np.nan
    with pytest.raises(DataError, match="got nan"):
        ridge_model.adapt(images, bad, user="alice")
    with pytest.raises(DataError, match="got 10 images but 9 scores"):
        ridge_model.adapt(images, scores[:9], user="alice")
    assert filled_store.load("alice").n_ratings == 10


def test_feature_dim_mismatch(ridge_model, filled_store):
    x = np.zeros((10, 16), dtype=np.float32)
    with pytest.raises(DataError) as exc:
        ridge_model.adapt(x, np.full(10, 3.0), user="alice")
    assert "expected features of shape [n, 32]" in _one_line(exc) and "got (10, 16)" in str(exc.value)
    with pytest.raises(DataError, match=r"shape \[n, 32\]"):
        filled_store.load("alice").predict(x)
    with pytest.raises(DataError, match="neither an image id of dataset piaa-demo nor an existing image file"):
        ridge_model.adapt(["demo_00001.jpg", "no_such.jpg"], [3, 4], user="alice")
    assert filled_store.load("alice").n_ratings == 10


def test_bad_user_ids_and_big_five(ridge_model, rater_ratings):
    images, scores = rater_ratings(ridge_model, 10)
    for user in ("", "   ", "a\nb", None):
        with pytest.raises(DataError, match="expected a non-empty user id"):
            ridge_model.adapt(images, scores, user=user)
    with pytest.raises(DataError, match="five numbers in"):
        ridge_model.adapt(images, scores, user="x", big_five=[0.1, 2, 0, 0, 0])
    with pytest.raises(DataError, match="rated twice"):
        ridge_model.adapt(images[:2] + images[:1], scores[:3], user="x")


def test_corrupt_store_file_is_reported_and_left_alone(filled_store, ridge_model, rater_ratings):
    path = filled_store.path
    garbage = np.random.default_rng(0).bytes(8192)
    path.write_bytes(garbage)
    for wal in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        wal.unlink(missing_ok=True)
    images, scores = rater_ratings(ridge_model, 10)
    profile = ridge_model.adapt(images, scores, user="alice")
    for action in (lambda: filled_store.load("alice"), filled_store.list, lambda: filled_store.save(profile),
                   lambda: filled_store.delete("alice"), lambda: "alice" in filled_store):
        with pytest.raises(ProfileError) as exc:
            action()
        assert "not a readable profile store" in _one_line(exc) and "left as it is" in str(exc.value)
    assert path.read_bytes() == garbage


def test_damaged_profile_row_does_not_hide_the_others(filled_store, ridge_model, rater_ratings):
    images, scores = rater_ratings(ridge_model, 10, which=2)
    filled_store.save(ridge_model.adapt(images, scores, user="bob"))
    with sqlite3.connect(filled_store.path) as con:
        con.execute("UPDATE profiles SET state = ? WHERE user = 'alice'", (b"garbage",))
    with pytest.raises(ProfileError) as exc:
        filled_store.load("alice")
    assert "state of user 'alice' is damaged (checksum mismatch)" in _one_line(exc)
    assert filled_store.load("bob").n_ratings == 10
    # Re-adapting repairs it.
    filled_store.save(ridge_model.adapt(images, scores, user="alice"))
    assert filled_store.load("alice").n_ratings == 10


def test_reading_a_missing_store_creates_nothing(ridge_model, tmp_path):
    store = ProfileStore(tmp_path / "none.sqlite", model=ridge_model)
    assert store.list().empty and len(store) == 0 and "x" not in store
    with pytest.raises(ProfileError, match="the store is empty"):
        store.load("x")
    assert not store.path.exists()


def test_foreign_sqlite_file_is_not_written(ridge_model, rater_ratings, tmp_path):
    path = tmp_path / "app.sqlite"
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE orders (id INTEGER)")
    before = path.read_bytes()
    images, scores = rater_ratings(ridge_model, 10)
    with pytest.raises(ProfileError, match="an SQLite database but not a piaa profile store"):
        ProfileStore(path, model=ridge_model).save(ridge_model.adapt(images, scores, user="alice"))
    assert path.read_bytes() == before


def test_big_five_only_profile_for_methods_that_use_traits(ridge_model, tmp_path, monkeypatch):
    traits = [0.5, -0.2, 0.1, 0.0, -0.9]
    with pytest.raises(DataError, match="does not use Big-Five"):
        ridge_model.adapt([], [], user="fay", big_five=traits)
    monkeypatch.setattr(type(ridge_model.method), "uses_big_five", True)
    profile = ridge_model.adapt([], [], user="fay", big_five=traits)
    store = ProfileStore(tmp_path / "p.sqlite", model=ridge_model)
    store.save(profile)
    loaded = store.load("fay")
    assert loaded.n_ratings == 0 and loaded.big_five == traits and loaded.images == []
    x = np.array(ridge_model.dataset.features[:50], dtype=np.float32)
    np.testing.assert_array_equal(loaded.predict(x), profile.predict(x))


def test_image_files_use_the_backbone_that_made_the_dataset(tmp_path):
    """A dataset whose features came from `piaa features extract --backbone handcrafted`: adapting
    and scoring by image file gives exactly what the dataset's ids give."""
    import pandas as pd
    from PIL import Image

    from piaa.features.extract import extract_features
    from piaa.tasks.feature_store import open_store
    from piaa.tasks.format import write_dataset
    from piaa.workflows import meta_train

    rng = np.random.default_rng(0)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(40):
        pixels = (rng.random((48, 64, 3)) * rng.uniform(0.2, 1.0, size=3) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(photos / f"img{i:02d}.png")
    extract_features(photos, "handcrafted", tmp_path / "feats", progress=False)
    feats = open_store(tmp_path / "feats")
    names = list(feats.images)
    x = np.asarray(feats.features, dtype=np.float32)
    quality = (x - x.mean(0)) / (x.std(0) + 1e-6) @ rng.normal(size=x.shape[1])
    users = [f"t{i}" for i in range(8)] + ["s1", "s2"]
    ratings = pd.DataFrame(
        [(u, names[j], float(np.clip(np.rint(3 + quality[j] / quality.std() + rng.normal(0, 0.5)), 1, 5))) for u in users for j in range(40)],
        columns=["user", "image", "score"],
    )
    data = write_dataset(
        tmp_path / "data", name="photos", score_range=(1, 5), ratings=ratings,
        users=pd.DataFrame({"user": users, "split": ["train"] * 8 + ["test"] * 2}), images=names, features=x,
        meta={"backbone": "handcrafted", "feature_store": {"backbone": "handcrafted", "weights": None}},
    )
    run = meta_train("ridge", str(data), out=tmp_path / "run", overrides=["epochs=2"])
    model = piaa.load(run)
    files = [str(photos / n) for n in names[:12]]
    by_file = model.adapt(files, ratings["score"][:12], user="gil")
    by_id = model.adapt(names[:12], ratings["score"][:12], user="gil")
    np.testing.assert_allclose(by_file.predict(files), by_id.predict(names[:12]), rtol=0, atol=1e-5)
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(DataError, match="broken.jpg: cannot be read as an image"):
        by_id.predict([str(tmp_path / "broken.jpg")])
