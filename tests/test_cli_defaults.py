"""Compute defaults and what a newcomer reads: one thread unless --threads, progress lines off a
terminal, meta-train and adapt saying what was trained on what and how to read the SROCC, profiles
kept per run, and `piaa data describe demo`."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from piaa.progress import LineProgress
from tests_helpers import FAST


def _sets(items):
    return [arg for item in items for arg in ("--set", item)]


def test_training_runs_on_one_thread_by_default_and_on_n_with_threads(cli, tiny_dir, tmp_path, monkeypatch):
    import torch

    from piaa.registry import method_class

    cls = method_class("user-mean")
    seen = []
    original = cls.fit

    def recording(self, *args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, "fit", recording)
    torch.set_num_threads(2)  # torch's own default on a 2-core machine
    try:
        assert cli("meta-train", "--method", "user-mean", "--data", tiny_dir, "--out", tmp_path / "a", *_sets(FAST)).code == 0
        assert cli("meta-train", "--method", "user-mean", "--data", tiny_dir, "--out", tmp_path / "b", "--threads", "3", *_sets(FAST)).code == 0
        assert torch.get_num_threads() == 2  # restored afterwards
    finally:
        torch.set_num_threads(1)
    assert seen == [1, 3]


def test_line_progress_prints_at_most_once_per_interval_with_counts_and_time_left():
    import io

    now = [0.0]
    stream = io.StringIO()
    advance = LineProgress("meta-training", 600, every=30, stream=stream, clock=lambda: now[0])
    for _ in range(600):
        now[0] += 0.25  # 150 s in all: a line at 30, 60, 90, 120, 150 s
        advance(1)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 5
    assert lines[0] == "meta-training: 120/600 (20%), 0:30 elapsed, about 2:00 left"
    assert lines[-1] == "meta-training: 600/600 (100%), 2:30 elapsed, about 0:00 left"


def test_meta_train_off_a_terminal_prints_progress_lines_on_stderr(cli, tiny_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("PIAA_PROGRESS_EVERY", "0")
    result = cli("meta-train", "--method", "giaa", "--data", tiny_dir, "--out", tmp_path / "run", "--set", "epochs=3", "--set", "hidden=8")
    assert result.code == 0, result.err
    lines = [line for line in result.err.splitlines() if "/3 (" in line]
    assert [line.split(":")[1].split("(")[0].strip() for line in lines] == ["1/3", "2/3", "3/3"]
    quiet = cli("meta-train", "--method", "giaa", "--data", tiny_dir, "--out", tmp_path / "run2", "--set", "epochs=3", "--set", "hidden=8", "--no-progress")
    assert quiet.code == 0 and quiet.err == ""


def test_meta_train_says_what_it_trained_on_in_numbers(cli, tiny_dir, tmp_path):
    users = pd.read_csv(tiny_dir / "users.csv", dtype=str)
    ratings = pd.read_csv(tiny_dir / "ratings.csv", dtype=str)
    train = set(users.loc[users["split"] == "train", "user"])
    result = cli("meta-train", "--method", "user-mean", "--data", tiny_dir, "--out", tmp_path / "run", *_sets(FAST))
    assert result.code == 0, result.err
    n_ratings = int(ratings["user"].isin(train).sum())
    assert f"learned from {len(train)} training raters ({n_ratings:,} ratings)" in result.out
    assert f"the {int((users['split'] == 'test').sum())} test raters were held out" in result.out
    config_line = next(line for line in result.out.splitlines() if "config:" in line)
    assert "defaults, except" in config_line and "epochs=15" in config_line and "hidden=32,16" in config_line
    assert "{" not in result.out  # no config dump


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_dir):
    from piaa.workflows import meta_train

    return meta_train("user-mean", tiny_dir, out=tmp_path_factory.mktemp("ctx") / "run", overrides=FAST)


def test_adapt_names_the_run_and_method_and_puts_the_srocc_beside_prior_and_ceilings(cli, tiny_dir, run_dir):
    users = pd.read_csv(tiny_dir / "users.csv")
    test_user = str(users.loc[users["split"] == "test", "user"].iloc[0])
    result = cli("adapt", "--run", run_dir, "--user", test_user, "--shots", "10", "--repeats", "2")
    assert result.code == 0, result.err
    assert f"answered by user-mean from run {run_dir}" in result.out and "user is a test rater" in result.out
    prior = next(line for line in result.out.splitlines() if "generic prior" in line)
    assert -1 <= float(prior.rsplit("SROCC", 1)[1]) <= 1
    truth = json.loads((tiny_dir / "dataset.json").read_text())["ground_truth"]
    assert f"rating-noise limit {truth['ceiling_srocc']:.3f}" in result.out
    assert f"perfect generic model {truth['generic_oracle_srocc']:.3f}" in result.out
    assert "training rater" not in result.err


def test_adapt_on_a_training_rater_warns_that_the_number_is_optimistic(cli, tiny_dir, run_dir):
    users = pd.read_csv(tiny_dir / "users.csv")
    train_user = str(users.loc[users["split"] == "train", "user"].iloc[0])
    result = cli("adapt", "--run", run_dir, "--user", train_user, "--shots", "10", "--repeats", "1")
    assert result.code == 0, result.err
    assert "user is a train rater" in result.out
    warning = [line for line in result.err.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "training rater" in warning[0] and "optimistic" in warning[0]


def test_generic_prior_srocc_is_the_prior_scored_on_all_the_raters_images(tiny_dir, run_dir):
    import numpy as np

    from piaa.metrics import srocc
    from piaa.runs import load_run
    from piaa.workflows import adapt_context

    run = load_run(run_dir)
    data = run.load_data()
    user = data.users_in("test")[0]
    rater = data.rater(user)
    prior = run.method.adapt(np.zeros((0, data.feature_dim), np.float32), np.zeros(0, np.float32))
    expected = srocc(prior.predict(np.asarray(data.features[rater.image_index])), rater.scores)
    assert adapt_context(run, user)["generic_srocc"] == pytest.approx(expected)


def test_data_describe_demo_works_like_data_demo_elsewhere(cli, demo_dir, monkeypatch):
    monkeypatch.setenv("PIAA_DEMO_DIR", str(demo_dir))
    result = cli("data", "describe", "demo")
    assert result.code == 0, result.err
    assert "the embedded demo" in result.out and "150 train, 30 test, 80 personality" in result.out


def test_profiles_list_of_a_new_run_points_to_the_run_that_holds_the_profiles(cli, tiny_dir, tmp_path):
    runs = tmp_path / "runs"
    first = cli("meta-train", "--method", "user-mean", "--data", tiny_dir, "--out", runs / "first", *_sets(FAST))
    assert first.code == 0, first.err
    images = pd.read_csv(tiny_dir / "images.csv")["image"].tolist()[:12]
    (tmp_path / "mine.csv").write_text("image,score\n" + "".join(f"{im},{1 + i % 5}\n" for i, im in enumerate(images)))
    saved = cli("adapt", "--user", "ann", "--ratings", tmp_path / "mine.csv", "--save")
    assert saved.code == 0, saved.err
    assert f"profiles belong to this run: after training a new run, reach them with --run {(runs / 'first').resolve()}" in saved.out
    assert cli("meta-train", "--method", "user-mean", "--data", tiny_dir, "--out", runs / "second", *_sets(FAST)).code == 0
    listed = cli("profiles", "list")
    assert listed.code == 0 and "0 profile(s)" in listed.out
    assert "profiles are kept per run" in listed.err and "first (1)" in listed.err
    assert "ann" in cli("profiles", "list", "--run", runs / "first").out
