"""A small generated dataset and quickly trained runs, shared by the personalisation tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import piaa
from piaa.tasks.simulate import DemoSpec, write_demo
from piaa.workflows import meta_train

SMALL = DemoSpec(
    n_train_raters=40, n_test_raters=8, n_personality_raters=10, feature_dim=32,
    train_ratings=(40, 80), test_ratings=(40, 80), likes_per_personality_rater=10,
)


@pytest.fixture(scope="session")
def small_world(tmp_path_factory):
    """{"data": dataset dir, "runs": runs root, "ridge": run dir, "giaa": run dir}; ridge is LATEST."""
    root = tmp_path_factory.mktemp("api-world")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PIAA_RUNS", str(root / "runs"))
        data = write_demo(root / "data", seed=3, spec=SMALL)
        giaa = meta_train("giaa", str(data), out=root / "runs" / "giaa", seed=0, overrides=["epochs=5"])
        ridge = meta_train("ridge", str(data), out=root / "runs" / "ridge", seed=0, overrides=["epochs=5"])
    assert (root / "runs" / "LATEST").read_text().strip() == "ridge"
    return {"data": Path(data), "runs": root / "runs", "ridge": Path(ridge), "giaa": Path(giaa)}


@pytest.fixture
def run_copy(small_world, tmp_path, monkeypatch):
    """A private copy of the ridge run (its own profiles.sqlite), made the latest run."""
    runs = tmp_path / "runs"
    shutil.copytree(small_world["ridge"], runs / "ridge")
    (runs / "LATEST").write_text("ridge\n")
    monkeypatch.setenv("PIAA_RUNS", str(runs))
    return runs / "ridge"


@pytest.fixture(scope="session")
def ridge_model(small_world):
    import piaa

    return piaa.load(small_world["ridge"])


@pytest.fixture(scope="session")
def rater_ratings():
    def ratings(model, k: int, which: int = 0) -> tuple[list[str], np.ndarray]:
        """The first `k` ratings of the `which`-th test rater of the model's dataset: (image ids, scores)."""
        data = model.dataset
        rater = data.rater(data.users_in("test")[which])
        return [data.images[i] for i in rater.image_index[:k]], rater.scores[:k].astype(np.float64)

    return ratings


@pytest.fixture(autouse=True)
def _private_runs_root(tmp_path, monkeypatch):
    """Training writes runs/LATEST under the default runs folder: keep it out of the working tree."""
    monkeypatch.setenv("PIAA_RUNS", str(tmp_path / "default-runs"))


@pytest.fixture
def ratings_csv(run_copy, tmp_path):
    """(path, rows): 12 ratings of the run's first test rater as a user's `image,score` CSV."""
    model = piaa.load(run_copy)
    data = model.dataset
    rater = data.rater(data.users_in("test")[0])
    rows = [(data.images[i], s) for i, s in zip(rater.image_index[:12], rater.scores[:12])]
    path = tmp_path / "my.csv"
    path.write_text("image,score\n" + "".join(f"{im},{s:g}\n" for im, s in rows))
    return path, rows
