"""PA-IAA's Big-Five link learned from training raters' own ratings (PARA) versus from likes
(PsychoFlickr): the pooled fit recovers a known link, the method says which link it used, and on
PARA-shaped simulated data the ratings link beats the likes-only link at 0 shots."""

from __future__ import annotations

import numpy as np
import pytest

from piaa.errors import ConfigError
from piaa.personality.link import TasteLink, fit_taste_link_from_ratings
from piaa.protocol import evaluate
from piaa.registry import create_method
from piaa.tasks.format import read_dataset
from piaa.tasks.simulate import PARA_SHAPED, DemoSpec, write_demo

FAST = {"epochs": 4, "trunk": (32, 16), "patience": 4}


def test_link_from_ratings_recovers_a_known_matrix_and_centre():
    rng = np.random.default_rng(0)
    true_m = rng.normal(0, 0.8, (5, 5))
    b = rng.uniform(-1, 1, (120, 5)) + 0.2  # raters' mean Big-Five is not the origin
    center = b.mean(axis=0)
    raters = []
    for bu in b:
        s, p = rng.normal(3, 0.6, 80), rng.uniform(-1, 1, (80, 5))
        y = 0.4 + 1.0 * s + p @ (true_m @ (bu - center)) + rng.normal(0, 0.2, 80)
        raters.append((np.column_stack([s, p]), y))
    link = fit_taste_link_from_ratings(raters, b, l2=0.0)
    assert isinstance(link, TasteLink) and link.n_raters == 120 and link.generic_coef == 1.0
    np.testing.assert_allclose(link.center, center)
    assert np.abs(link.matrix - true_m).max() < 0.05
    np.testing.assert_allclose(link.weights(b[:3]), (b[:3] - center) @ true_m.T, atol=0.1)


@pytest.fixture(scope="module")
def rated_only(tmp_path_factory):
    """PARA-like: train raters' Big-Five known, no personality raters and no likes at all."""
    spec = DemoSpec(n_train_raters=40, n_test_raters=6, n_personality_raters=0, feature_dim=32, latent_dim=12,
                    train_ratings=(80, 160), train_big_five_known=True)
    return read_dataset(write_demo(tmp_path_factory.mktemp("rated") / "d", seed=2, spec=spec))


def test_without_likes_the_head_and_link_come_from_train_raters_and_notes_say_so(rated_only):
    assert rated_only.likes is None or rated_only.likes.empty
    method = create_method("pa-iaa", **FAST).fit(rated_only.without("test"), seed=0)
    link = method.personality["link"]
    assert method.personality["head_source"] == "ratings" and link["source"] == "ratings" and link["n_raters"] == 40
    assert method.notes() == ["pa-iaa: Big-Five link learned from 40 training raters' own ratings (their Big-Five is known)"]
    rater = rated_only.raters("test")[0]
    zero = method.adapt(np.zeros((0, 32)), np.zeros(0), big_five=rater.big_five)
    assert np.allclose(zero.fitted.theta[1:], method.link.weights(rater.big_five))


def test_likes_link_requested_on_data_without_likes_leaves_personality_off(rated_only):
    with pytest.warns(UserWarning, match="no likes.csv"):
        method = create_method("pa-iaa", link_source="likes", **FAST).fit(rated_only.without("test"), seed=0)
    assert not method.personality_available and method.link is None


def test_ratings_link_without_big_five_train_raters_is_a_config_error(tmp_path):
    data = read_dataset(write_demo(tmp_path / "d", seed=2, spec=DemoSpec(n_train_raters=20, n_test_raters=6, n_personality_raters=10, feature_dim=16, latent_dim=8)))
    with pytest.raises(ConfigError, match="link_source='ratings' needs train raters with a known Big-Five"):
        create_method("pa-iaa", link_source="ratings", **FAST).fit(data.without("test"), seed=0)
    with pytest.raises(ConfigError, match="link_source: expected one of auto, ratings, likes"):
        create_method("pa-iaa", link_source="psychic")


@pytest.mark.slow
def test_para_shaped_ratings_link_beats_likes_only_link_at_zero_shots(tmp_path):
    """The figures of docs/benchmarks.md (benchmarks/para.py link), at the same settings."""
    data = read_dataset(write_demo(tmp_path / "para", seed=1, spec=PARA_SHAPED))
    srocc = {}
    for source in ("ratings", "likes"):
        method = create_method("pa-iaa", link_source=source, epochs=20, patience=6).fit(data.without("test"), seed=0)
        assert method.personality["link"]["source"] == source
        summary = evaluate(method, data, shots=[0], repeats=10, seed=0).summary
        srocc[source] = float(summary["srocc_mean"].iloc[0])
    assert srocc["ratings"] > srocc["likes"] + 0.005, srocc


def test_learned_prior_applies_a_ratings_link_around_its_centre(rated_only):
    """learned-prior reuses PA-IAA's link as its prior mean: a link learned from ratings is centred on
    the train raters' mean Big-Five, so a rater at that centre gets the unshifted prior mean."""
    method = create_method("learned-prior", ["network_epochs=5", "validation_repeats=1"]).fit(rated_only.without("test"), seed=0)
    assert method.uses_big_five and np.any(method.link_center != 0)
    np.testing.assert_allclose(method.prior_for(method.link_center).mean, method.prior.mean)
    other = method.prior_for(np.clip(method.link_center + 0.5, -1, 1)).mean
    assert not np.allclose(other, method.prior.mean)
    restored = create_method("learned-prior", ["network_epochs=5", "validation_repeats=1"])
    restored.load_state_dict(method.state_dict())
    np.testing.assert_allclose(restored.link_center, method.link_center)
