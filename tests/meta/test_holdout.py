"""The image-disjoint validation split (piaa.tasks.holdout) and its use by the MAML family's fit."""

from __future__ import annotations

import numpy as np
import pytest

import piaa.meta.methods as methods
from piaa.errors import ConfigError
from piaa.registry import create_method
from piaa.tasks.holdout import image_disjoint_split, rater_split

QUICK = dict(hidden=(16, 8), pretrain_epochs=3, meta_steps=8, val_every=4, checkpoint_every=4, patience=0,
             support_shots=(10,), query_size=10, val_shots=(10,), adapt_steps=3)


def _raters(data):
    return [r for r in data.raters("train") if len(r) >= 2]


def _rows(raters):
    return np.concatenate([r.image_index for r in raters])


def test_no_held_out_image_is_in_any_training_rating_and_validation_rates_only_held_out_images(small):
    raters = _raters(small)
    split = image_disjoint_split(raters, 0.15, seed=0, min_ratings=20)
    held = set(split.held_out_images.tolist())
    assert len(split.validation) == 3 and len(held) > 0
    assert not held & set(_rows(split.train).tolist())
    assert set(_rows(split.validation).tolist()) <= held
    assert not {r.user for r in split.validation} & {r.user for r in split.train}
    # image_share 1: the validation raters keep every rating they made
    full = {r.user: len(r) for r in raters}
    assert all(len(r) == full[r.user] for r in split.validation)
    # what fitting loses: exactly the training raters' ratings of held-out images
    lost = sum(int(np.isin(r.image_index, split.held_out_images).sum()) for r in raters if r.user not in {v.user for v in split.validation})
    assert split.dropped_ratings == lost > 0
    assert sum(len(r) for r in split.train) + lost + sum(len(r) for r in split.validation) == sum(full.values())
    pretrain = split.training_data(small)
    assert not set(pretrain.ratings["image_index"]) & held
    assert set(pretrain.ratings["user"]) == {r.user for r in split.train}


def test_the_split_is_deterministic_per_seed(small):
    raters = _raters(small)
    a, b, c = (image_disjoint_split(raters, 0.15, seed=s, min_ratings=20) for s in (4, 4, 5))
    assert [r.user for r in a.validation] == [r.user for r in b.validation]
    assert np.array_equal(a.held_out_images, b.held_out_images)
    assert [r.user for r in a.train] == [r.user for r in b.train]
    assert [r.user for r in a.validation] != [r.user for r in c.validation]


def test_the_image_disjoint_split_holds_out_the_raters_the_older_split_holds_out(small):
    raters = _raters(small)
    assert [r.user for r in image_disjoint_split(raters, 0.15, seed=0, min_ratings=2).validation] == \
        [r.user for r in rater_split(raters, 0.15, seed=0).validation]


def test_raters_with_fewer_ratings_than_validation_needs_are_never_validation_raters(small):
    raters = _raters(small)
    counts = sorted(len(r) for r in raters)
    cut = counts[len(counts) // 2]  # half the raters are too small
    split = image_disjoint_split(raters, 0.4, seed=0, min_ratings=cut)
    assert split.validation and all(len(r) >= cut for r in split.validation)
    with pytest.raises(ConfigError, match=rf"at least {counts[-1] + 1} ratings.*none of {len(raters)} has, the most is {counts[-1]}"):
        image_disjoint_split(raters, 0.15, seed=0, min_ratings=counts[-1] + 1)


def test_a_partial_image_share_skips_validation_raters_left_with_too_few_held_out_ratings(small):
    raters = _raters(small)
    split = image_disjoint_split(raters, 0.3, seed=0, min_ratings=20, image_share=0.3)
    held = set(split.held_out_images.tolist())
    assert set(_rows(split.validation).tolist()) <= held and not held & set(_rows(split.train).tolist())
    assert all(len(r) >= 20 for r in split.validation)
    assert split.skipped_raters == 6 - len(split.validation) > 0  # 6 = round(20 * 0.3) chosen, some too small on V
    with pytest.raises(ConfigError, match="val_image_share must be in"):
        image_disjoint_split(raters, 0.3, seed=0, min_ratings=20, image_share=0.0)


def _spy_fit(monkeypatch, small, **config):
    """Fit a quick maml and record every image row pre-training and meta-training were given."""
    seen = {"pretrain": [], "meta": [], "validation": []}
    targets, pool, groups = methods.generic_targets, methods.TaskPool, methods.episode_groups

    def spy_targets(data, split="train"):
        out = targets(data, split)
        seen["pretrain"].append(out.image_index)
        return out

    def spy_pool(features, raters, score_range):
        seen["meta"].append(_rows(raters))
        return pool(features, raters, score_range)

    def spy_groups(features, raters, *args):
        seen["validation"].append(_rows(raters))
        return groups(features, raters, *args)

    monkeypatch.setattr(methods, "generic_targets", spy_targets)
    monkeypatch.setattr(methods, "TaskPool", spy_pool)
    monkeypatch.setattr(methods, "episode_groups", spy_groups)
    method = create_method("maml", **{**QUICK, **config}).fit(small.without("test"), seed=0)
    return method, seen


def test_fit_never_pretrains_or_meta_trains_on_a_validation_image(small, monkeypatch):
    method, seen = _spy_fit(monkeypatch, small)
    held = image_disjoint_split(_raters(small.without("test")), 0.15, seed=0, min_ratings=20).held_out_images
    assert method.fit_log[0]["held_out_images"] == len(held) > 0
    assert len(seen["pretrain"]) == 1 and len(seen["meta"]) == 1
    assert not np.isin(seen["pretrain"][0], held).any() and not np.isin(seen["meta"][0], held).any()
    assert np.isin(seen["validation"][0], held).all()
    # the older split shares them: the control that the spies see what they should
    _, shared = _spy_fit(monkeypatch, small, val_split="raters")
    assert np.isin(shared["meta"][0], held).any()


def test_refit_trains_again_on_every_training_rating_for_the_selected_steps(small, monkeypatch):
    method, seen = _spy_fit(monkeypatch, small, refit=True)
    raters = _raters(small.without("test"))
    selected = next(e for e in method.fit_log if "selected_step" in e)["selected_step"]
    refit = method.fit_log[-1]
    assert refit == {"refit_meta_steps": selected, "refit_raters": len(raters), "refit_ratings": sum(len(r) for r in raters)}
    assert len(seen["meta"]) == 2 and np.array_equal(np.sort(seen["meta"][1]), np.sort(_rows(raters)))
    assert len(seen["pretrain"]) == 2 and np.array_equal(seen["pretrain"][1], np.unique(_rows(raters)))
    assert method.adapt_lrs  # the step sizes chosen on validation raters stay


def test_unknown_split_and_bad_share_are_config_errors():
    with pytest.raises(ConfigError, match="val_split must be one of image-disjoint, raters"):
        create_method("maml", val_split="images")
    with pytest.raises(ConfigError, match=r"val_image_share must be in \(0, 1\]"):
        create_method("maml", val_image_share=1.5)
