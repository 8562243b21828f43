"""The command line end to end on small generated data."""

from __future__ import annotations

import json

import pytest

from tests_helpers import FAST


def _set(*fields):
    out = []
    for f in fields:
        out += ["--set", f]
    return out


def test_simulate_then_describe(cli, tmp_path):
    r = cli("data", "simulate", "--out", tmp_path / "d", "--seed", "1")
    assert r.code == 0, r.err
    r = cli("data", "describe", tmp_path / "d")
    assert r.code == 0, r.err
    assert "150 train, 30 test, 80 personality" in r.out
    assert "256 dims, float32" in r.out
    assert "ceiling_srocc" in r.out


def test_simulate_refuses_to_overwrite(cli, tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "mine.txt").write_text("keep me")
    r = cli("data", "simulate", "--out", tmp_path / "d")
    assert r.code == 2 and "already exists" in r.err
    assert (tmp_path / "d" / "mine.txt").read_text() == "keep me"


def test_train_adapt_evaluate_on_any_directory(cli, tiny_dir, tmp_path):
    r = cli("meta-train", "--data", tiny_dir, "--method", "ridge", *_set(*FAST))
    assert r.code == 0, r.err
    assert "run saved to" in r.out
    user = "4"  # any test rater of the tiny dataset
    from piaa.tasks.format import read_dataset

    user = read_dataset(tiny_dir).users_in("test")[0]
    r = cli("adapt", "--user", user, "--shots", "10", "--repeats", "3", "--json", tmp_path / "a.json")
    assert r.code == 0, r.err
    assert f"user {user}: SROCC" in r.out
    payload = json.loads((tmp_path / "a.json").read_text())
    assert [set(row) for row in payload["rows"]] == [{"user", "shots", "repeat", "srocc", "plcc"}] * 3
    assert set(payload["summary"][0]) >= {"shots", "srocc_mean", "srocc_std", "plcc_mean", "n_users"}

    r = cli("evaluate", "--data", tiny_dir, "--method", "ridge", *_set(*FAST), "--repeats", "2",
            "--json", tmp_path / "e.json", "--csv", tmp_path / "e.csv")
    assert r.code == 0, r.err
    summary = json.loads((tmp_path / "e.json").read_text())["summary"]
    assert [s["shots"] for s in summary] == [10, 100]
    assert all(s["n_users"] == 6 for s in summary)
    assert (tmp_path / "e.csv").read_text().startswith("user,shots,repeat")


def test_same_seed_byte_identical_json(cli, tiny_dir, tmp_path):
    assert cli("meta-train", "--data", tiny_dir, "--method", "ridge", "--out", tmp_path / "run", *_set(*FAST)).code == 0
    for name in ("a", "b"):
        r = cli("evaluate", "--run", tmp_path / "run", "--repeats", "3", "--seed", "11", "--json", tmp_path / f"{name}.json")
        assert r.code == 0, r.err
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


@pytest.mark.parametrize("args,expected", [
    (["adapt", "--user", "42", "--shots", "10"], "no run found"),
    (["meta-train", "--method", "rigde"], "did you mean 'ridge'"),
    (["meta-train", "--set", "epochz=3"], "no field 'epochz'"),
    (["evaluate", "--data", "/nonexistent/dir", "--method", "ridge"], "is not a directory"),
])
def test_user_errors_are_one_line_exit_2(cli, args, expected):
    r = cli(*args)
    assert r.code == 2
    lines = [line for line in r.err.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], r.err


def test_adapt_unknown_user_and_too_many_shots(cli, tiny_dir, tmp_path):
    assert cli("meta-train", "--data", tiny_dir, "--method", "ridge", "--out", tmp_path / "run", *_set(*FAST)).code == 0
    r = cli("adapt", "--user", "nobody", "--shots", "10")
    assert r.code == 2 and "unknown user 'nobody'" in r.err
    from piaa.tasks.format import read_dataset

    user = read_dataset(tiny_dir).users_in("test")[0]
    r = cli("adapt", "--user", user, "--shots", "500")
    assert r.code == 2 and "500 shots need at least 510" in r.err


def test_methods_lists_registry(cli):
    from piaa.registry import list_methods

    r = cli("methods")
    listed = [line.split("│")[1].strip() for line in r.out.splitlines() if line.startswith("│") and line.split("│")[1].strip()]
    assert r.code == 0 and listed == list(list_methods())  # every registered method, one row each, in order
    assert {"giaa", "ridge", "pa-iaa", "maml", "knn"} <= set(listed)


@pytest.mark.slow  # > 8 s; CI and `make test` run it, `pytest -m 'not slow'` skips it
def test_demo_default_path(cli, demo_dir, monkeypatch):
    """On a fresh install: `piaa meta-train` then `piaa adapt --user 42 --shots 10`."""
    monkeypatch.setenv("PIAA_DEMO_DIR", str(demo_dir))
    r = cli("meta-train")
    assert r.code == 0, r.err
    r = cli("adapt", "--user", "42", "--shots", "10")
    assert r.code == 0, r.err
    assert "user 42: SROCC" in r.out
