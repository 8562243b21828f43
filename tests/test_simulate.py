"""The embedded demo has the shape the foundation promises, and is deterministic."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from piaa.tasks.format import read_dataset
from piaa.tasks.simulate import DEMO_USER, ensure_demo, write_demo
from tests_helpers import TINY


def _digest(path):
    h = hashlib.sha256()
    for name in sorted(p.name for p in path.iterdir()):
        h.update(name.encode())
        h.update((path / name).read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes(tmp_path, tiny_dir):
    again = write_demo(tmp_path / "again", seed=3, spec=TINY)
    assert _digest(again) == _digest(tiny_dir)
    other = write_demo(tmp_path / "other", seed=4, spec=TINY)
    assert _digest(other) != _digest(tiny_dir)


def test_demo_shape(demo_dir):
    data = read_dataset(demo_dir)
    counts = data.ratings.groupby("user").size()
    test, train = data.users_in("test"), data.users_in("train")
    assert DEMO_USER in test
    assert len(train) >= 100 and 25 <= len(test) <= 35
    assert counts[test].between(100, 250).all()
    assert 2000 <= len(data.images) <= 10000 and 100 <= data.feature_dim <= 1000
    assert set(np.unique(data.ratings["score"])) == {1, 2, 3, 4, 5}
    per_image = data.ratings.groupby("image").size()
    assert (per_image == 5).mean() > 0.95 and per_image.max() == 5
    test_images = set(data.ratings.loc[data.ratings["user"].isin(test), "image"])
    train_images = set(data.ratings.loc[data.ratings["user"].isin(train), "image"])
    assert not test_images & train_images
    assert data.likes is not None and set(data.likes["user"]) == set(data.users_in("personality"))
    assert not set(data.likes["image"]) & test_images
    assert all(data.rater(u).big_five is not None for u in test)
    assert all(data.rater(u).big_five is None for u in train)
    truth = data.meta["ground_truth"]
    assert truth["generic_oracle_srocc"] < truth["big_five_oracle_srocc"] < truth["ceiling_srocc"] < 1


def test_ensure_demo_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("PIAA_DEMO_DIR", str(tmp_path / "cache"))
    first = ensure_demo()
    stamp = (first / "ratings.csv").stat().st_mtime_ns
    assert ensure_demo() == first
    assert (first / "ratings.csv").stat().st_mtime_ns == stamp


def test_demo_ceiling_is_recorded(demo_dir):
    truth = read_dataset(demo_dir).meta["ground_truth"]
    assert truth["ceiling_srocc"] == pytest.approx(0.808, abs=0.02)
