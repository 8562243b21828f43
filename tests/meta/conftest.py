from __future__ import annotations

import pytest

from piaa.tasks.format import read_dataset
from piaa.tasks.simulate import DemoSpec, write_demo

SMALL = DemoSpec(
    n_train_raters=20, n_test_raters=4, n_personality_raters=2, raters_per_image=3, train_ratings=(40, 120), test_ratings=(120, 150),
    likes_per_personality_rater=5, feature_dim=24, latent_dim=8,
)


@pytest.fixture(scope="session")
def small_dir(tmp_path_factory):
    return write_demo(tmp_path_factory.mktemp("small") / "demo", seed=3, spec=SMALL)


@pytest.fixture(scope="session")
def small(small_dir):
    return read_dataset(small_dir)
