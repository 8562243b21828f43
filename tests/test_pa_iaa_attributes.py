"""PA-IAA's auxiliary attribute head (`attribute_weight`): on a PARA-shaped simulation written in
PARA's published layout and imported with `parse_para`, the head learns the images' mean attribute
scores (judged on images no training rater saw), the aesthetics head still works, the head survives
a save/load, and it is off by default."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from piaa.errors import ConfigError
from piaa.metrics import plcc
from piaa.registry import create_method
from piaa.tasks.feature_store import write_store
from piaa.tasks.format import BIG_FIVE, read_dataset
from piaa.tasks.importers import big_five_to_para, parse_para, write_import
from piaa.tasks.simulate import PARA_SHAPED, SIMULATED_ATTRIBUTES, simulate

SPEC = dataclasses.replace(PARA_SHAPED, n_train_raters=50, n_test_raters=10, n_personality_raters=0, train_ratings=(150, 250),
                           test_ratings=(120, 160), feature_dim=48, latent_dim=12)
FIT = {"epochs": 15, "patience": 5, "trunk": (64, 32)}
PARA_NAMES = {"quality": "qualityScore", "composition": "compositionScore", "color": "colorScore", "dof": "dofScore",
              "content": "contentScore", "light": "lightScore"}


def write_para_layout(root: Path, sim: dict) -> tuple[Path, Path, Path]:
    """The simulation as PARA's release files (annotation/PARA-Images.csv, PARA-UserInfo.csv), a
    test-rater list and a feature store. Returns (PARA folder, test list, store)."""
    r, a = sim["ratings"], sim["attributes"]
    table = pd.DataFrame({
        "sessionId": "session1", "imageName": r["image"], "userId": r["user"], "aestheticScore": r["score"].astype(float),
        **{PARA_NAMES[n]: a[n] for n in SIMULATED_ATTRIBUTES},
        "imgEmotion": "Contentment", "difficultyOfJudgment": 0, "contentPreference": 3, "willingnessToShare": 3, "semantic": "portrait",
    })
    users = sim["users"]
    bfi = big_five_to_para(users[list(BIG_FIVE)].to_numpy())  # O, C, E, A, N → BFI-10 sums 2..10
    info = pd.DataFrame({"userId": users["user"], "age": "22-25", "gender": "female", "EducationalLevel": "university",
                         "artExperience": "beginner", "photographyExperience": "beginner",
                         **{f"personality-{t}": bfi[:, "OCEAN".index(t)] for t in "EANOC"}})
    ann = root / "PARA" / "annotation"
    ann.mkdir(parents=True)
    table.to_csv(ann / "PARA-Images.csv", index=False)
    info.to_csv(ann / "PARA-UserInfo.csv", index=False)
    test_list = root / "TestUserIDs.txt"
    test_list.write_text("".join(f"{u}\n" for u in users.loc[users["split"] == "test", "user"]))
    store = write_store(root / "store", list(sim["images"]), sim["features"], backbone="simulated")
    return root / "PARA", test_list, store


@pytest.fixture(scope="module")
def para(tmp_path_factory):
    root = tmp_path_factory.mktemp("para-attributes")
    folder, test_list, store = write_para_layout(root, simulate(SPEC, seed=3))
    write_import(parse_para(folder, test_raters=test_list), store, root / "data")
    return read_dataset(root / "data")


@pytest.fixture(scope="module")
def fitted(para):
    return {w: create_method("pa-iaa", attribute_weight=w, **FIT).fit(para.without("test"), seed=0) for w in (0.0, 0.5)}


def held_out_images(data) -> np.ndarray:
    """Images rated by test raters only (the simulation's test pool): never seen while fitting."""
    seen = set(data.ratings.loc[data.ratings["user"].isin(set(data.users_in("train"))), "image_index"])
    return np.array(sorted(set(data.ratings["image_index"]) - seen))


def test_attribute_head_predicts_held_out_images_mean_attribute_scores(para, fitted):
    method = fitted[0.5]
    assert para.attribute_names[:6] == list(SIMULATED_ATTRIBUTES) and method.attribute_names == list(SIMULATED_ATTRIBUTES)
    images = held_out_images(para)
    assert len(images) > 100
    truth = para.image_attributes(split="test").loc[images, method.attribute_names].to_numpy()  # test raters' mean scores
    pred = method.predict_attributes(para.features[images])
    r = [plcc(pred[:, k], truth[:, k]) for k in range(pred.shape[1])]
    assert min(r) > 0.4 and np.mean(r) > 0.6, r
    assert abs(pred.mean() - truth.mean()) < 0.3  # on the attributes' 1..5 scale, not z-scores
    logged = [e for e in method.fit_log if e.get("event") == "attributes"]
    assert logged and logged[0]["mean_pearson_r"] > 0.6


def test_aesthetics_head_still_works_with_the_attribute_head(para, fitted):
    images = held_out_images(para)
    test = para.ratings[para.ratings["image_index"].isin(set(images))]
    mean_score = test.groupby("image_index")["score"].mean().loc[images].to_numpy()
    r = {w: plcc(m.generic_score(para.features[images]), mean_score) for w, m in fitted.items()}
    assert r[0.5] > 0.5 and r[0.5] > r[0.0] - 0.05, r
    rater = para.raters("test")[0]
    model = fitted[0.5].adapt(para.features[rater.image_index[:10]], rater.scores[:10])
    assert np.isfinite(model.predict(para.features[rater.image_index[10:]])).all()


def test_attribute_head_survives_state_round_trip(para, fitted):
    method = fitted[0.5]
    restored = create_method("pa-iaa", attribute_weight=0.5, **FIT)
    restored.load_state_dict(method.state_dict())
    restored.load_extra_state(method.extra_state())
    x = para.features[:20]
    np.testing.assert_allclose(restored.predict_attributes(x), method.predict_attributes(x), rtol=1e-6)
    assert restored.attribute_names == method.attribute_names


def test_attribute_head_is_off_by_default_and_needs_attributes(para, fitted, tmp_path):
    off = fitted[0.0]
    assert off.config.attribute_weight == 0.0 and off.net.attributes is None and off.attribute_names == []
    assert not any(k.startswith("net.attributes") for k in off.state_dict())
    with pytest.raises(ConfigError, match="fitted without an attribute head"):
        off.predict_attributes(para.features[:3])
    with pytest.raises(ConfigError, match=r"PAIAAConfig.attribute_weight = -1.0: expected a number >= 0"):
        create_method("pa-iaa", attribute_weight=-1.0)
    no_attributes = dataclasses.replace(para.without("test"), attributes=None)
    with pytest.warns(UserWarning, match="has no attributes.csv"):
        method = create_method("pa-iaa", attribute_weight=0.5, epochs=2, trunk=(16,)).fit(no_attributes, seed=0)
    assert method.net.attributes is None
