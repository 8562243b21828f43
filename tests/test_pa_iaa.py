"""PA-IAA: fusion formula, head ranges, training on the demo, determinism, datasets it cannot fully use,
the zero-shot path, and the run-directory round trip."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from piaa.errors import ConfigError, DataError
from piaa.metrics import emd as emd_numpy
from piaa.personality.data import generic_distributions, personality_unavailable, score_bins
from piaa.personality.fusion import TastePrior, estimate_taste_prior, fuse, posterior_taste
from piaa.personality.link import fit_taste_link
from piaa.personality.losses import emd, squared_l2
from piaa.personality.model import PersonalityAssistedNet, predict_heads
from piaa.protocol import evaluate
from piaa.registry import create_method
from piaa.runs import load_run, save_run
from piaa.tasks.format import BIG_FIVE, read_dataset, write_dataset
from piaa.tasks.simulate import DemoSpec, ensure_demo, write_demo
from piaa.workflows import adapt_user, parse_big_five

SMALL = DemoSpec(n_train_raters=40, n_test_raters=6, n_personality_raters=24, feature_dim=32, latent_dim=12, likes_per_personality_rater=30)
FAST = {"epochs": 4, "trunk": (32, 16), "patience": 4}


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory):
    return write_demo(tmp_path_factory.mktemp("small") / "data", seed=3, spec=SMALL)


@pytest.fixture(scope="module")
def small(small_dir):
    return read_dataset(small_dir)


def _variant(data, path, *, users=None, likes="keep"):
    """Write a copy of `data` with a changed users table and/or likes."""
    users = data.users if users is None else users
    kept = set(users["user"])
    ratings = data.ratings[data.ratings["user"].isin(kept)][["user", "image", "score"]]
    likes_df = None if likes is None else data.likes[data.likes["user"].isin(kept)][["user", "image"]]
    return read_dataset(write_dataset(
        path, name=data.name + "-variant", score_range=data.score_range, ratings=ratings, users=users,
        images=pd.Series(data.images), features=np.asarray(data.features), likes=likes_df, meta={},
    ))


@pytest.fixture(scope="module")
def small_fit(small):
    return create_method("pa-iaa", **FAST).fit(small.without("test"), seed=7)


@pytest.fixture(scope="module")
def demo_fit():
    data = read_dataset(ensure_demo())
    method = create_method("pa-iaa", epochs=6, patience=6).fit(data.without("test"), seed=0)
    return data, method


# -- pieces -------------------------------------------------------------------------------------
def test_fusion_formula_is_generic_plus_weighted_personality():
    rng = np.random.default_rng(0)
    s, p, w = rng.normal(3, 0.5, 7), rng.uniform(-1, 1, (7, 5)), rng.normal(0, 1, 5)
    expected = np.array([s[i] + sum(w[k] * p[i, k] for k in range(5)) for i in range(7)])
    np.testing.assert_allclose(fuse(s, p, w), expected)
    np.testing.assert_allclose(fuse(s, p, w, gamma=2.0, offset=-1.0), expected + s - 1.0)


def test_posterior_is_prior_with_no_shots_and_data_with_many():
    rng = np.random.default_rng(1)
    prior = TastePrior(mean=np.array([1.0, 0.3, 0, 0, 0, -0.2]), cov=np.eye(6) * 0.5, noise=0.25)
    center = np.array([3.0, 0.1, 0, 0, 0, 0])
    zero = posterior_taste(np.zeros((0, 6)), np.zeros(0), prior, pool_center=center)
    np.testing.assert_allclose(zero.theta, prior.mean)
    x = np.column_stack([rng.normal(3, 0.5, 400), rng.uniform(-1, 1, (400, 5))])
    true = np.array([0.5, 1.5, -1.0, 0.0, 2.0, 0.7])
    y = 2.0 + x @ true + rng.normal(0, 0.5, 400)
    many = posterior_taste(x, y, prior, pool_center=center)
    np.testing.assert_allclose(many.theta, true, atol=0.15)
    few = posterior_taste(x[:10], y[:10], prior, pool_center=center)
    # ten shots land between the prior and the truth, never beyond the least-squares fit
    assert np.linalg.norm(few.theta - prior.mean) < np.linalg.norm(np.linalg.lstsq(x[:10] - x[:10].mean(0), y[:10] - y[:10].mean(), rcond=None)[0] - prior.mean)


def test_heads_output_ranges():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = PersonalityAssistedNet(16, score_bins((1, 5)), trunk=(8,), dropout=0.0)
    x = np.random.default_rng(2).normal(0, 100, (50, 16)).astype(np.float32)  # extreme inputs saturate
    s, dist, p = predict_heads(net, x)
    assert dist.shape == (50, 5) and p.shape == (50, 5)
    np.testing.assert_allclose(dist.sum(axis=1), 1.0, atol=1e-5)
    assert (dist >= 0).all() and (p >= -1).all() and (p <= 1).all()
    assert (s >= 1).all() and (s <= 5).all()
    np.testing.assert_allclose(s, dist @ np.arange(1, 6), atol=1e-5)


def test_score_bins_and_generic_distributions(small):
    assert score_bins((1, 5)).tolist() == [1, 2, 3, 4, 5]
    assert len(score_bins((0, 1))) == 10
    g = generic_distributions(small, score_bins(small.score_range))
    np.testing.assert_allclose(g.dist.sum(axis=1), 1.0, atol=1e-6)
    train = small.ratings[small.ratings["user"].isin(set(small.users_in("train")))]
    first = g.image_index[0]
    scores = train.loc[train["image_index"] == first, "score"].to_numpy()
    assert g.n_votes[0] == len(scores)
    np.testing.assert_allclose(g.dist[0], np.bincount(scores.astype(int) - 1, minlength=5) / len(scores), atol=1e-6)


def test_emd_loss_matches_numpy_metric_and_l2_is_sum_of_squares():
    rng = np.random.default_rng(3)
    a, b = rng.dirichlet(np.ones(5), 8), rng.dirichlet(np.ones(5), 8)
    np.testing.assert_allclose(emd(torch.tensor(a), torch.tensor(b)).numpy(), emd_numpy(a, b), atol=1e-6)
    np.testing.assert_allclose(squared_l2(torch.tensor(a), torch.tensor(b)).numpy(), ((a - b) ** 2).sum(1))


def test_link_recovers_a_planted_big_five_to_taste_matrix():
    rng = np.random.default_rng(4)
    n_pool, n_raters = 800, 80
    g, p = rng.normal(3, 0.6, n_pool), rng.normal(0, 0.3, (n_pool, 5))
    b = rng.normal(0, 0.45, (n_raters, 5))
    m_true = rng.normal(0, 1, (5, 5))
    utility = 2.0 * g[None, :] + 2.0 * (b @ m_true.T) @ p.T + rng.gumbel(0, 0.3, (n_raters, n_pool))
    liked = np.zeros((n_raters, n_pool))
    for u in range(n_raters):
        liked[u, np.argsort(-utility[u])[:50]] = 1
    link = fit_taste_link(g, p, liked, b, l2=1e-6)
    w_hat, w_true = link.weights(b), b @ m_true.T  # true weights in score units: (2 · M b) / 2
    assert np.corrcoef(w_hat.ravel(), w_true.ravel())[0, 1] > 0.9
    assert 0.5 < np.std(w_hat) / np.std(w_true) < 1.5


def test_taste_prior_recovers_planted_spread():
    rng = np.random.default_rng(5)
    cov_true = np.diag([0.05, 0.8, 0.5, 0.3, 0.2, 0.1])
    raters = []
    for _ in range(300):
        theta = np.r_[1.0, np.zeros(5)] + rng.multivariate_normal(np.zeros(6), cov_true)
        x = np.column_stack([rng.normal(3, 0.5, 120), rng.uniform(-1, 1, (120, 5))])
        raters.append((x, x @ theta + rng.normal(0, 0.6, 120)))
    prior = estimate_taste_prior(raters, floor=0.01)
    np.testing.assert_allclose(np.diag(prior.cov), np.diag(cov_true), atol=0.08)
    assert abs(prior.noise - 0.36) < 0.03


def test_parse_big_five_reports_what_is_wrong():
    np.testing.assert_allclose(parse_big_five("0.1, -0.2,0,1,-1"), [0.1, -0.2, 0, 1, -1], atol=1e-7)
    with pytest.raises(ConfigError, match="5 comma-separated"):
        parse_big_five("0.1,0.2")
    with pytest.raises(ConfigError, match="neuroticism is 3.0"):
        parse_big_five("0,0,0,0,3")
    with pytest.raises(ConfigError, match="numbers"):
        parse_big_five("a,b,c,d,e")


def test_unknown_loss_is_a_config_error():
    with pytest.raises(ConfigError, match="aesthetics_loss"):
        create_method("pa-iaa", aesthetics_loss="kl")


# -- the demo -----------------------------------------------------------------------------------
def test_training_decreases_both_losses_on_the_demo(demo_fit):
    _, method = demo_fit
    epochs = [e for e in method.fit_log if "epoch" in e]
    first, last = epochs[0], epochs[-1]
    assert last["aesthetics_train_loss"] < 0.9 * first["aesthetics_train_loss"]
    assert last["personality_train_loss"] < 0.95 * first["personality_train_loss"]
    quality = method.personality["quality"]
    assert set(quality["traits"]) == {"O", "C", "E", "A", "N"}
    assert quality["mean_pearson_r"] > 0.1  # the head carries personality signal to unseen raters
    assert 0 < quality["mean_mae"] < 0.6


def test_zero_shot_uses_the_big_five_link(demo_fit):
    data, method = demo_fit
    rater = data.rater("42")
    x = np.asarray(data.features[rater.image_index])
    s, p = method.heads(x)
    w = method.link.weights(rater.big_five)
    expected = np.clip(s + (p - method.pool_center[1:]) @ w, 1, 5)
    np.testing.assert_allclose(method.adapt(x[:0], np.zeros(0), big_five=rater.big_five).predict(x), expected, atol=1e-9)
    plain = method.adapt(x[:0], np.zeros(0)).predict(x)  # no Big-Five: the generic score
    np.testing.assert_allclose(plain, np.clip(s, 1, 5), atol=1e-9)


def test_demo_zero_shot_and_shots_beat_the_generic_score(demo_fit):
    data, method = demo_fit
    users = data.users_in("test")[:12]
    with_b5 = evaluate(method, data, shots=[0, 100], repeats=2, seed=0, users=users).summary.set_index("shots")
    generic = evaluate(method, data, shots=[0], repeats=1, seed=0, users=users, use_big_five=False)
    assert generic.no_big_five[0] == users  # pa-iaa's 0-shot needs Big-Five
    generic_srocc = np.mean([_generic_srocc(method, data, u) for u in users])
    assert with_b5.loc[0, "srocc_mean"] > generic_srocc + 0.02
    assert with_b5.loc[100, "srocc_mean"] > generic_srocc + 0.05


def _generic_srocc(method, data, user):
    from piaa.metrics import srocc

    r = data.rater(user)
    return srocc(method.generic_score(np.asarray(data.features[r.image_index])), r.scores)


# -- determinism and persistence ------------------------------------------------------------------
def test_same_seed_same_weights_and_different_seed_differs(small, small_fit):
    train = small.without("test")
    threads = torch.get_num_threads()
    a = small_fit.state_dict()
    b = create_method("pa-iaa", **FAST).fit(train, seed=7).state_dict()
    c = create_method("pa-iaa", **FAST).fit(train, seed=8).state_dict()
    assert torch.get_num_threads() == threads  # the one-thread setting is restored after fit
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert not torch.equal(a["net.aesthetics.weight"], c["net.aesthetics.weight"])


def test_run_directory_round_trip(small, small_dir, small_fit, tmp_path):
    method = small_fit
    path = save_run(method, data_ref=str(small_dir), seed=0, out=tmp_path / "run")
    log = [json.loads(line) for line in (path / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["event"] == "personality" and "traits" in log[-1]["quality"]
    info = json.loads((path / "config.json").read_text())
    assert info["extra_state"]["personality"]["available"] is True
    loaded = load_run(path).method
    rater = small.rater(small.users_in("test")[0])
    x, y = np.asarray(small.features[rater.image_index]), rater.scores
    for shots, b5 in ((0, rater.big_five), (10, None), (10, rater.big_five)):
        before = method.adapt(x[:shots], y[:shots], big_five=b5).predict(x)
        after = loaded.adapt(x[:shots], y[:shots], big_five=b5).predict(x)
        np.testing.assert_allclose(after, before, atol=1e-9)
    assert loaded.uses_big_five and loaded.notes() == method.notes() == ["pa-iaa: Big-Five link learned from 24 personality raters' likes"]


# -- datasets pa-iaa cannot fully use -----------------------------------------------------------------
def test_no_personality_raters_trains_aesthetics_only_and_says_so(small, tmp_path):
    users = small.users[small.users["split"] != "personality"]
    data = _variant(small, tmp_path / "nopsy", users=users, likes=None)
    assert "no likes.csv" in personality_unavailable(data)
    with pytest.warns(UserWarning, match="aesthetics head only"):
        method = create_method("pa-iaa", **FAST).fit(data.without("test"), seed=0)
    assert not method.uses_big_five and method.link is None
    assert "zero-shot prediction from Big-Five is unavailable" in method.notes()[0]
    result = evaluate(method, data, shots=[0, 10], repeats=2, seed=0)
    summary = result.summary.set_index("shots")
    assert summary.loc[10, "n_users"] == len(data.users_in("test")) and summary.loc[10, "n_failed"] == 0
    assert summary.loc[0, "n_users"] == len(data.users_in("test"))  # the generic prior, as for giaa
    path = save_run(method, data_ref="x", seed=0, out=tmp_path / "run")
    reloaded = load_run(path).method
    assert not reloaded.uses_big_five and reloaded.notes() == method.notes()


def test_likes_without_known_big_five_count_as_no_personality(small, tmp_path):
    users = small.users.copy()
    users.loc[users["split"] == "personality", list(BIG_FIVE)] = np.nan
    data = _variant(small, tmp_path / "psy-nob5", users=users)
    assert "no personality raters with a known Big-Five" in personality_unavailable(data)


def test_test_raters_without_big_five_skip_zero_shot_with_a_message(small, small_dir, tmp_path):
    users = small.users.copy()
    users.loc[users["split"] == "test", list(BIG_FIVE)] = np.nan
    data = _variant(small, tmp_path / "nob5", users=users)
    method = create_method("pa-iaa", **FAST).fit(data.without("test"), seed=0)
    result = evaluate(method, data, shots=[0, 10], repeats=2, seed=0)
    test_users = data.users_in("test")
    assert result.no_big_five[0] == test_users
    summary = result.summary.set_index("shots")
    assert summary.loc[0, "n_users"] == 0 and summary.loc[0, "n_no_big_five"] == len(test_users)
    assert summary.loc[10, "n_users"] == len(test_users)
    payload = result.to_json()
    assert payload["no_big_five"] == {"0": test_users}
    assert payload["summary"][0]["srocc_mean"] is None
    # one rater through the CLI workflow: a clear error at 0 shots, and --big-five fixes it
    run = load_run(save_run(method, data_ref=str(data.path), seed=0, out=tmp_path / "run"))
    with pytest.raises(DataError, match="has no Big-Five.*--big-five"):
        adapt_user(run, test_users[0], 0)
    given = adapt_user(run, test_users[0], 0, big_five="0.5,0,0,-0.3,0.2")
    assert len(given.rows) == 1 and np.isfinite(given.rows["srocc"].iloc[0])


def test_too_few_train_raters_is_a_data_error(small, tmp_path):
    keep = small.users_in("train")[:2]
    users = small.users[(small.users["split"] != "train") | small.users["user"].isin(keep)]
    data = _variant(small, tmp_path / "few", users=users)
    with pytest.raises(DataError, match="taste prior: need at least 3 training raters"):
        create_method("pa-iaa", **FAST).fit(data.without("test"), seed=0)


def test_big_five_option_rejected_for_methods_that_ignore_it(small, small_dir, tmp_path):
    giaa = create_method("giaa", epochs=2).fit(small.without("test"), seed=0)
    run = load_run(save_run(giaa, data_ref=str(small_dir), seed=0, out=tmp_path / "run"))
    with pytest.raises(ConfigError, match="does not use Big-Five"):
        adapt_user(run, small.users_in("test")[0], 10, big_five="0,0,0,0,0")
