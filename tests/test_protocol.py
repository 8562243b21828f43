"""The few-shot protocol: averaging order, undefined and skipped raters, failures, determinism."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest
import torch

from piaa.method import Method, MethodConfig, UserModel
from piaa.protocol import evaluate
from piaa.registry import create_method
from piaa.tasks.format import read_dataset, write_dataset


class _Fixed(UserModel):
    def __init__(self, fn):
        self.fn = fn

    def predict(self, x):
        return self.fn(np.asarray(x))


class ScriptedMethod(Method):
    """Feature 0 says which rater an image belongs to, feature 1 is its true score.

    Rater "good" is predicted perfectly (SROCC 1). Rater "bad" gets reversed scores (SROCC -1) when
    the support scores sum to an odd number and a constant (undefined SROCC) otherwise. Rater "boom"
    makes adapt raise.
    """

    name = "scripted"
    Config = MethodConfig

    def fit(self, data, *, seed=0, progress=False, checkpoint_dir=None):
        return self

    def adapt(self, x_support, y_support, *, big_five=None, seed=0):
        if len(x_support) == 0:
            return _Fixed(lambda x: x[:, 1].astype(float))
        who = int(np.asarray(x_support)[0, 0])
        if who == 2:
            raise RuntimeError("adapt failed on purpose")
        if who == 0:
            return _Fixed(lambda x: x[:, 1].astype(float))
        if int(np.sum(y_support)) % 2:
            return _Fixed(lambda x: -x[:, 1].astype(float))
        return _Fixed(lambda x: np.zeros(len(x)))

    def state_dict(self):
        return {"dummy": torch.zeros(1)}

    def load_state_dict(self, state):
        pass


@pytest.fixture(scope="module")
def scripted_data(tmp_path_factory):
    rng = np.random.default_rng(0)
    users, images, scores, feats = [], [], [], []
    sizes = {"good": 130, "bad": 130, "boom": 40, "small": 60, "trainer": 30}
    code = {"good": 0, "bad": 1, "boom": 2, "small": 0, "trainer": 0}
    for user, n in sizes.items():
        s = rng.integers(1, 6, size=n)
        for i in range(n):
            images.append(f"{user}-{i}")
            users.append(user)
            scores.append(int(s[i]))
            feats.append([code[user], s[i]])
    ratings = pd.DataFrame({"user": users, "image": images, "score": scores})
    user_table = pd.DataFrame({"user": list(sizes), "split": ["test", "test", "test", "test", "train"]})
    path = write_dataset(tmp_path_factory.mktemp("scripted") / "d", name="scripted", score_range=(1, 5),
                         ratings=ratings, users=user_table, images=images, features=np.asarray(feats, np.float32))
    return read_dataset(path)


def test_averages_per_rater_over_repeats_then_over_raters(scripted_data):
    result = evaluate(ScriptedMethod(), scripted_data, shots=[10], repeats=10, seed=0)
    rows = result.rows
    bad = rows[rows["user"] == "bad"]
    n_nan = int(bad["srocc"].isna().sum())
    assert 0 < n_nan < 10, "the fixture should give the 'bad' rater some undefined repeats"
    assert np.allclose(bad["srocc"].dropna(), -1.0)
    good = rows[rows["user"] == "good"]
    assert np.allclose(good["srocc"], 1.0)
    summary = result.summary.set_index("shots").loc[10]
    # per rater: good = 1, bad = -1 (undefined repeats ignored), small = 1, boom failed → mean 1/3
    assert summary["srocc_mean"] == pytest.approx(1 / 3)
    flat = rows.dropna(subset=["srocc"])["srocc"].mean()
    assert flat != pytest.approx(1 / 3), "the flat mean over episodes would be a different number"
    assert summary["n_undefined"] == n_nan
    assert summary["n_users"] == 3
    assert summary["srocc_std"] == pytest.approx(np.std([1.0, -1.0, 1.0]))


def test_failures_are_recorded_and_do_not_lose_others(scripted_data):
    result = evaluate(ScriptedMethod(), scripted_data, shots=[10], repeats=3, seed=0)
    failures = result.failures()
    assert set(failures["user"]) == {"boom"} and len(failures) == 3
    assert "adapt failed on purpose" in failures["error"].iloc[0]
    assert result.summary.iloc[0]["n_failed"] == 1
    assert result.summary.iloc[0]["n_users"] == 3


def test_raters_with_too_few_images_are_skipped_and_counted(scripted_data):
    result = evaluate(ScriptedMethod(), scripted_data, shots=[10, 100], repeats=2, seed=0)
    assert set(result.skipped[100]) == {"boom", "small"}
    assert result.skipped[10] == []
    s = result.summary.set_index("shots")
    assert s.loc[100, "n_skipped"] == 2 and s.loc[10, "n_skipped"] == 0
    assert set(result.rows.loc[result.rows["shots"] == 100, "user"]) == {"good", "bad"}


def test_zero_shots_uses_one_repeat_and_all_images(scripted_data):
    result = evaluate(ScriptedMethod(), scripted_data, shots=[0], repeats=5, seed=0, users=["small"])
    assert len(result.rows) == 1
    assert result.rows.iloc[0]["n_query"] == 60 and result.rows.iloc[0]["n_support"] == 0
    assert result.rows.iloc[0]["srocc"] == pytest.approx(1.0)


def test_same_seed_same_rows_and_json(tiny_dir):
    data = read_dataset(tiny_dir)
    method = create_method("ridge", ["epochs=10", "hidden=16"]).fit(data.without("test"), seed=1)
    a = evaluate(method, data, shots=[10, 100], repeats=3, seed=7)
    b = evaluate(method, data, shots=[100, 10], repeats=3, seed=7)
    pd.testing.assert_frame_equal(a.rows, b.rows)
    assert a.to_json() == b.to_json()
    c = evaluate(method, data, shots=[10, 100], repeats=3, seed=8)
    assert not np.allclose(a.rows["srocc"], c.rows["srocc"])
