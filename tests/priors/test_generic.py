"""The design's generic column (`piaa.priors.generic`): debiased consensus targets, networks that
learn a nonlinear quality from components, and designs that store and reload them."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from piaa.priors.design import HeadDesign, as_f64
from piaa.priors.generic import NumpyMLP, consensus_targets, fit_generic_networks


def _ratings_data(ratings: pd.DataFrame):
    users = sorted(ratings["user"].unique())
    return SimpleNamespace(ratings=ratings, users_in=lambda split: users if split == "train" else [])


def test_consensus_targets_take_out_each_raters_bias_and_spread():
    # Two raters with the same ranking of images 0..3; rater b is harsher (−1) and twice as spread.
    # Image 4 is rated by a only and image 5 by b only, at their own means: both are average images.
    truth = np.array([-1.5, -0.5, 0.5, 1.5])
    a = pd.DataFrame({"user": "a", "image_index": [0, 1, 2, 3, 4], "score": [*(3 + truth), 3.0]})
    b = pd.DataFrame({"user": "b", "image_index": [0, 1, 2, 3, 5], "score": [*(2 + 2 * truth), 2.0]})
    target, count = consensus_targets(_ratings_data(pd.concat([a, b], ignore_index=True)), np.arange(6))
    assert count.tolist() == [2, 2, 2, 2, 1, 1]
    assert target[4] == pytest.approx(target[5])  # same standing, whoever rated it
    assert np.all(np.diff(target[:4]) > 0)
    assert np.corrcoef(target[:4], truth)[0, 1] == pytest.approx(1.0)
    raw_means = np.array([(3 + t + 2 + 2 * t) / 2 for t in truth])
    assert target[4] == pytest.approx(target[:4].mean()) and raw_means[0] != pytest.approx(raw_means.mean())


def test_generic_networks_learn_a_nonlinear_quality_out_of_fold_and_repeat_with_the_seed():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1500, 6))
    quality = np.tanh(1.5 * x[:, 0]) + 0.7 * np.sin(2 * x[:, 1]) + 0.5 * x[:, 2] * x[:, 3]
    target = 3 + 0.5 * quality + rng.normal(0, 0.2, size=len(x))
    fold = np.arange(len(x)) % 3
    nets = fit_generic_networks(x, target, np.ones(len(x)), fold, seed=1, epochs=40)
    assert len(nets) == 3
    out_of_fold = np.empty(len(x))
    for f, net in enumerate(nets):
        out_of_fold[fold == f] = net(x[fold == f])
    r2 = 1 - np.var(quality - np.polyval(np.polyfit(out_of_fold, quality, 1), out_of_fold)) / np.var(quality)
    linear = np.linalg.lstsq(np.column_stack([np.ones(len(x)), x]), quality, rcond=None)[0]
    r2_linear = 1 - np.var(quality - np.column_stack([np.ones(len(x)), x]) @ linear) / np.var(quality)
    assert r2 > 0.8 and r2 > r2_linear + 0.2, (r2, r2_linear)
    assert abs(out_of_fold.mean() - 3) < 0.1  # on the score scale
    again = fit_generic_networks(x, target, np.ones(len(x)), fold, seed=1, epochs=40)
    assert all(np.array_equal(a(x[:20]), b(x[:20])) for a, b in zip(nets, again))


def test_a_design_with_generic_networks_reloads_to_the_same_rows_and_old_designs_still_load():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(60, 10))
    net = NumpyMLP([(rng.normal(size=(4, 3)), rng.normal(size=4)), (rng.normal(size=(1, 4)), rng.normal(size=1))])
    class Stand:  # a stand-in PA-IAA net: s and p from fixed columns
        def __call__(self, feats):
            return feats[:, 0], np.tanh(feats[:, 1:6])

    design = HeadDesign.fit([Stand()], x, 3, lambda pcs: [net])
    rows = design(x)
    assert np.allclose(rows[:, 0], (net(design.components_of(x)) - design.head_mean[0]) / design.head_scale[0])
    state = {k: v.numpy() for k, v in design.state_dict().items()}
    assert sum(k.startswith("design.generic0.") for k in state) == 4
    reloaded = HeadDesign.from_state(state)
    reloaded.nets = [Stand()]  # the PA-IAA nets live under their own keys; this test checks the design's own
    assert np.allclose(reloaded(x), rows)
    old = {k: v for k, v in state.items() if ".generic" not in k}
    without = HeadDesign.from_state(old)
    without.nets = [Stand()]
    assert without.generic == [] and np.allclose(without(x)[:, 1:], rows[:, 1:])
    assert as_f64(state["design.components"]).shape == (10, 3)


def test_head_methods_refuse_an_unknown_generic_column_before_any_training():
    from piaa.errors import ConfigError
    from piaa.registry import create_method

    with pytest.raises(ConfigError, match="generic must be"):
        create_method("learned-prior", ["generic=raw"])
    with pytest.raises(ConfigError, match="generic must be"):
        create_method("task-vector", ["generic=raw"])
