"""Every registered method can be adapted, stored and reloaded, with or without the restore hook."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import piaa
from piaa.registry import list_methods
from piaa.workflows import meta_train

# The config fields that bound each method's training time, set low so every method trains briefly.
BRIEF = {"epochs": 1, "pretrain_epochs": 1, "meta_steps": 2, "network_epochs": 2}
# Methods whose user models are a per-user part on a user-independent trunk (Method.shared_representation).
SHARED_TRUNK = {"giaa", "user-mean", "ridge", "pam", "knn", "pa-iaa", "learned-prior", "task-vector", "anil"}


@pytest.mark.slow  # trains each registered method briefly on the small dataset
@pytest.mark.parametrize("name", sorted(list_methods()))
def test_store_round_trip(name, small_world, tmp_path):
    cls = list_methods()[name]
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    budget = {f: v for f, v in BRIEF.items() if f in fields}
    assert budget, f"{name} has none of {sorted(BRIEF)}: add the field that bounds its training to BRIEF"
    run = meta_train(name, str(small_world["data"]), out=tmp_path / "run", seed=0, overrides=[f"{f}={v}" for f, v in budget.items()])
    model = piaa.load(run)
    assert {f: getattr(model.method.config, f) for f in budget} == budget  # trained briefly, as asked
    data = model.dataset
    rater = data.rater(data.users_in("test")[0])
    images = [data.images[i] for i in rater.image_index[:10]]
    traits = rater.big_five.tolist() if rater.big_five is not None and model.method.uses_big_five else None
    profile = model.adapt(images, rater.scores[:10], user="alice", big_five=traits, seed=1)
    store = piaa.ProfileStore(tmp_path / "p.sqlite", model=model)
    store.save(profile)
    loaded = piaa.ProfileStore(store.path).load("alice")
    x = np.array(data.features[rater.image_index[10:]], dtype=np.float32)
    np.testing.assert_allclose(loaded.predict(x), profile.predict(x), rtol=0, atol=1e-6)
    shared = model.method.shared_representation(x)  # the trunk `piaa score --features` caches
    assert (shared is not None) == (name in SHARED_TRUNK)
    np.testing.assert_allclose(loaded.user_model.predict_from_shared(shared, x), profile.predict(x), rtol=0, atol=1e-6)
    assert loaded.stored_bytes == len(profile.state_bytes()) > 0
    print(f"{name}: {loaded.stored_bytes} bytes per profile (support stored: {loaded.support is not None})")
