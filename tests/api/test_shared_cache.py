"""Scoring from cached trunk outputs: same scores as the full network, cached once per run and file
content, recomputed when the file changes, and `piaa score --features` uses it."""

from __future__ import annotations

import numpy as np

import piaa
from piaa.shared_cache import FOLDER, cached_shared
from tests_helpers import run_cli


def _features(model, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.asarray(model.dataset.features[rng.integers(0, len(model.dataset.images), size=n)], dtype=np.float32)
    return base + rng.normal(0, 0.05, size=base.shape).astype(np.float32)


def test_ridge_and_giaa_scores_from_shared_equal_full_predict(small_world, rater_ratings, tmp_path):
    for name in ("ridge", "giaa"):
        model = piaa.load(small_world[name])
        images, scores = rater_ratings(model, 10)
        profile = model.adapt(images, scores, user="u")
        x = _features(model, 500, seed=1)
        shared = model.method.shared_representation(x)
        assert shared.shape == (500, 1)  # the generic network's output: ridge's only shared part
        np.testing.assert_allclose(profile.user_model.predict_from_shared(shared, x), profile.predict(x), rtol=0, atol=1e-9)


def test_cache_is_written_once_reused_and_keyed_by_file_content(run_copy, rater_ratings, tmp_path):
    from piaa.personalize import CHUNK, _finite_rows

    model = piaa.load(run_copy)
    file = tmp_path / "catalogue.npy"
    np.save(file, _features(model, 300, seed=2))
    x = np.load(file, mmap_mode="r")
    first = model.shared_for_file(file, x)
    cached = sorted((run_copy / FOLDER).glob("*.npy"))
    assert len(cached) == 1 and cached[0].name.startswith(model.model_id)
    assert isinstance(first, np.memmap) and first.shape == (300, 1)

    # Reused: a method whose trunk would now give other numbers still gets the stored outputs.
    class Shifted:
        def shared_representation(self, rows):
            return model.method.shared_representation(rows) + 1.0

    again = cached_shared(Shifted(), model.model_id, run_copy, file, x, chunk=CHUNK, check=_finite_rows)
    np.testing.assert_array_equal(again, first)

    # Changed content (same name): a new key, so the stale outputs are never used.
    np.save(file, _features(model, 300, seed=3))
    x2 = np.load(file, mmap_mode="r")
    fresh = cached_shared(Shifted(), model.model_id, run_copy, file, x2, chunk=CHUNK, check=_finite_rows)
    np.testing.assert_allclose(fresh, model.method.shared_representation(np.asarray(x2)) + 1.0, atol=1e-9)
    assert len(list((run_copy / FOLDER).glob("*.npy"))) == 2


def test_score_features_cli_ranks_from_the_cache_like_the_api(run_copy, ratings_csv, capsys, monkeypatch, tmp_path):
    path, _ = ratings_csv
    code, _, err = run_cli(capsys, monkeypatch, "adapt", "--ratings", str(path), "--user", "alice", "--save")
    assert code == 0, err
    model = piaa.load(run_copy)
    x = _features(model, 400, seed=4)
    file = tmp_path / "f.npy"
    np.save(file, x)
    expected = model.profiles.load("alice").rank(x, top=5)
    for _ in range(2):  # computes the trunk outputs, then reads them from <run>/shared/
        code, out, err = run_cli(capsys, monkeypatch, "score", "--user", "alice", "--features", str(file), "--top", "5")
        assert code == 0, err
        shown = [int(line.split("row ")[1].split()[0]) for line in out.splitlines() if "row " in line]
        assert shown == expected["index"].tolist()
    assert len(list((run_copy / FOLDER).glob("*.npy"))) == 1


def test_nan_row_in_features_is_reported_by_row_number_with_the_cache(run_copy, rater_ratings, tmp_path):
    model = piaa.load(run_copy)
    x = _features(model, 50, seed=5)
    x[17, 3] = np.nan
    file = tmp_path / "bad.npy"
    np.save(file, x)
    try:
        model.shared_for_file(file, np.load(file, mmap_mode="r"))
    except piaa.errors.DataError as exc:
        assert "feature row 17 has NaN" in str(exc)
    else:
        raise AssertionError("a NaN feature row was accepted")
    assert not list((run_copy / FOLDER).glob("*.npy"))  # nothing half-written kept
