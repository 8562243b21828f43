"""Registry, configuration, the giaa and ridge methods, and run directories."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.torch import load_file

from piaa.baselines.ridge import loo_residuals, loo_ridge
from piaa.errors import ConfigError, RunError
from piaa.protocol import evaluate
from piaa.registry import create_method, list_methods, method_class
from piaa.runs import load_run, save_run
from piaa.tasks.format import read_dataset
from tests_helpers import FAST


def test_registry_lists_and_suggests():
    assert {"giaa", "ridge"} <= set(list_methods())
    with pytest.raises(ConfigError, match="did you mean 'ridge'"):
        method_class("rigde")


def test_config_overrides_are_typed():
    m = create_method("ridge", ["epochs=3", "hidden=8,4", "dropout=0.5", "lambda_steps=5"])
    assert m.config.epochs == 3 and m.config.hidden == (8, 4) and m.config.dropout == 0.5
    assert create_method("ridge").config.hidden == (256, 64)  # defaults untouched
    with pytest.raises(ConfigError, match="no field 'epoch'"):
        create_method("ridge", ["epoch=3"])
    with pytest.raises(ConfigError, match="epochs"):
        create_method("ridge", ["epochs=three"])
    with pytest.raises(ConfigError, match="field=value"):
        create_method("ridge", ["epochs"])


@pytest.mark.parametrize("intercept", [False, True])
def test_loo_residuals_match_refitting_without_each_point(intercept):
    rng = np.random.default_rng(0)
    phi = rng.normal(size=(12, 5))
    r = phi @ rng.normal(size=5) + rng.normal(scale=0.3, size=12) + (2.0 if intercept else 0.0)
    lam = 2.0
    if intercept:
        phi_c, r_c = phi - phi.mean(0), r - r.mean()
    else:
        phi_c, r_c = phi, r
    brute = []
    for i in range(12):
        keep = np.arange(12) != i
        p, t = phi[keep], r[keep]
        pm, tm = (p.mean(0), t.mean()) if intercept else (0.0, 0.0)
        wi = np.linalg.solve((p - pm).T @ (p - pm) + lam * np.eye(5), (p - pm).T @ (t - tm))
        brute.append(r[i] - (tm + (phi[i] - pm) @ wi))
    np.testing.assert_allclose(loo_residuals(phi_c, r_c, lam, intercept=intercept), brute, atol=1e-9)


def test_loo_ridge_weights_are_the_ridge_solution():
    rng = np.random.default_rng(0)
    phi = rng.normal(size=(12, 5))
    r = phi @ rng.normal(size=5)
    w, chosen = loo_ridge(phi, r, np.array([2.0]), intercept=False)
    assert chosen == 2.0
    np.testing.assert_allclose(w, np.linalg.solve(phi.T @ phi + 2.0 * np.eye(5), phi.T @ r), atol=1e-10)


def test_loo_ridge_fits_signal_and_ignores_noise():
    rng = np.random.default_rng(1)
    phi = rng.normal(size=(60, 5))
    phi -= phi.mean(0)
    truth = np.array([1.0, -2.0, 0.5, 0.0, 1.5])
    signal = phi @ truth + rng.normal(scale=0.1, size=60)
    lambdas = np.logspace(-2, 3, 11)
    w, lam = loo_ridge(phi, signal - signal.mean(), lambdas)
    assert lam <= 1 and np.allclose(w, truth, atol=0.1)
    noise = rng.normal(size=60)
    w, lam = loo_ridge(phi, noise - noise.mean(), lambdas)
    assert lam >= 10 and np.abs(w).max() < 0.2  # vs. weights of order 1 when there is signal


@pytest.fixture(scope="module")
def tiny_ridge(tiny_dir):
    data = read_dataset(tiny_dir)
    return data, create_method("ridge", FAST).fit(data.without("test"), seed=0)


def test_giaa_prior_ranks_better_than_chance(tiny_ridge):
    data, ridge = tiny_ridge
    giaa = create_method("giaa", FAST).fit(data.without("test"), seed=0)
    result = evaluate(giaa, data, shots=[0], repeats=1).summary.iloc[0]
    assert result["srocc_mean"] > 0.25


def test_ridge_with_no_shots_ranks_like_the_prior(tiny_ridge):
    data, ridge = tiny_ridge
    rater = data.raters("test")[0]
    x = np.asarray(data.features[rater.image_index])
    empty = ridge.adapt(x[:0], rater.scores[:0])
    assert np.array_equal(np.argsort(empty.predict(x)), np.argsort(ridge.generic_score(x)))


def test_run_round_trip_gives_identical_predictions(tiny_ridge, tmp_path):
    data, ridge = tiny_ridge
    path = save_run(ridge, data_ref=str(data.path), seed=0, out=tmp_path / "run")
    info = json.loads((path / "config.json").read_text())
    assert info["method"] == "ridge" and info["config"]["hidden"] == [32, 16] and info["data"] == str(data.path)
    assert set(load_file(str(path / "weights.safetensors"))) == set(ridge.state_dict())
    assert (tmp_path / "LATEST").read_text().strip() == "run"
    loaded = load_run(path).method
    rater = data.raters("test")[1]
    x = np.asarray(data.features[rater.image_index])
    a = ridge.adapt(x[:10], rater.scores[:10]).predict(x[10:])
    b = loaded.adapt(x[:10], rater.scores[:10]).predict(x[10:])
    np.testing.assert_array_equal(a, b)
    with pytest.raises(FileExistsError):
        save_run(ridge, data_ref="x", seed=0, out=path)


def test_broken_run_directories_are_clear_errors(tmp_path):
    with pytest.raises(RunError, match="config.json"):
        load_run(tmp_path)
    (tmp_path / "config.json").write_text("{broken")
    with pytest.raises(RunError, match="not valid JSON"):
        load_run(tmp_path)


def test_fit_is_deterministic(tiny_dir):
    data = read_dataset(tiny_dir).without("test")
    a = create_method("giaa", FAST).fit(data, seed=5).state_dict()
    b = create_method("giaa", FAST).fit(data, seed=5).state_dict()
    c = create_method("giaa", FAST).fit(data, seed=6).state_dict()
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
    assert not all(np.array_equal(a[k].numpy(), c[k].numpy()) for k in a)


@pytest.mark.slow  # > 8 s; CI and `make test` run it, `pytest -m 'not slow'` skips it
def test_on_the_demo_ridge_personalises(demo_dir):
    data = read_dataset(demo_dir)
    ridge = create_method("ridge").fit(data.without("test"), seed=0)
    s = evaluate(ridge, data, shots=[0, 10, 100], repeats=3, seed=0).summary.set_index("shots")["srocc_mean"]
    assert s[100] > s[10] + 0.05
    assert s[100] > s[0] + 0.05  # 0 shots is the generic prior


def test_every_builtin_method_is_found_by_its_own_module():
    from piaa.registry import _BUILTIN_METHODS

    shipped = {name for name, cls in list_methods().items() if cls.__module__.startswith("piaa.")}
    assert set(_BUILTIN_METHODS) == shipped  # tests may register methods of their own
    for name, target in _BUILTIN_METHODS.items():  # "module:Class", or a module registering its classes
        module, _, attribute = target.partition(":")
        cls = method_class(name)
        assert cls.__module__ == module and cls.name == name
        assert attribute in ("", cls.__qualname__)
