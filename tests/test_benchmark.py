"""`piaa benchmark`: same draws for every method, same bytes for the same seed, failures kept apart."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from piaa.baselines.giaa import GenericPrior, GIAAConfig
from piaa.benchmark import run_benchmark, split_overrides, write_benchmark
from piaa.errors import ConfigError
from piaa.method import UserModel
from piaa.registry import register_method
from piaa.seeding import derive_seed
from piaa.tasks.format import read_dataset
from piaa.tasks.simulate import DemoSpec, write_demo

SMALL = DemoSpec(n_train_raters=30, n_test_raters=6, n_personality_raters=4, feature_dim=32, train_ratings=(60, 120), test_ratings=(120, 160))
FAST = ["epochs=15", "hidden=32", "patience=4"]
SEEN: dict[str, dict[int, str]] = defaultdict(dict)  # method → adapt seed → hash of the support set
BAD_USER = "42"


def _digest(x, y) -> str:
    return hashlib.sha1(np.ascontiguousarray(x).tobytes() + np.ascontiguousarray(y).tobytes()).hexdigest()


@dataclass(frozen=True)
class TinyConfig(GIAAConfig):
    epochs: int = 3
    hidden: tuple[int, ...] = (8,)


class _Recorder(GenericPrior):
    """Test-only: records the support set it is handed for each episode (adapt seed)."""

    Config = TinyConfig

    def adapt(self, x_support, y_support, *, big_five=None, seed: int = 0) -> UserModel:
        SEEN[self.name][seed] = _digest(x_support, y_support)
        return super().adapt(x_support, y_support, big_five=big_five, seed=seed)


@register_method("test-recorder-a")
class RecorderA(_Recorder):
    summary = "test only"


@register_method("test-recorder-b")
class RecorderB(_Recorder):
    summary = "test only"


@register_method("test-flaky")
class Flaky(GenericPrior):
    """Test-only: fails on every episode of one rater (recognised by the protocol's per-episode seed)."""

    Config = TinyConfig
    summary = "test only"
    bad_seeds: set[int] = set()

    def adapt(self, x_support, y_support, *, big_five=None, seed: int = 0) -> UserModel:
        if seed in self.bad_seeds:
            raise RuntimeError("deliberate failure for this rater")
        return super().adapt(x_support, y_support, big_five=big_five, seed=seed)


@register_method("test-broken-fit")
class BrokenFit(GenericPrior):
    Config = TinyConfig
    summary = "test only"

    def fit(self, data, *, seed=0, progress=False, checkpoint_dir=None):
        raise ValueError("deliberate failure while training")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return write_demo(tmp_path_factory.mktemp("bench") / "demo", seed=3, spec=SMALL)


@pytest.fixture(scope="module")
def data(demo):
    return read_dataset(demo)


@pytest.mark.slow  # > 8 s; CI and `make test` run it, `pytest -m 'not slow'` skips it
def test_same_seed_gives_byte_identical_tables(data, tmp_path):
    methods = ["giaa", "ridge", "knn", "user-mean"]
    first = write_benchmark(run_benchmark(data, methods, shots=(0, 10, 50), repeats=2, seed=5, overrides=FAST), tmp_path / "a")
    second = write_benchmark(run_benchmark(data, methods, shots=(0, 10, 50), repeats=2, seed=5, overrides=FAST), tmp_path / "b")
    for name in ("results.csv", "summary.csv", "significance.csv", "summary.md"):
        if name == "summary.md":  # the timing section differs; the tables above it must not
            a, b = ((d / name).read_text().split("## Time per method")[0] for d in (first, second))
            assert a == b
        else:
            assert (first / name).read_bytes() == (second / name).read_bytes(), name
    rows = pd.read_csv(first / "results.csv")
    assert set(rows["method"]) == set(methods)
    assert len(rows) == len(methods) * 6 * (1 + 2 + 2)  # raters × (0-shot once + 2 repeats × 2 settings)
    other = run_benchmark(data, ["ridge"], shots=(10,), repeats=2, seed=6, overrides=FAST)
    assert not np.allclose(other.rows["srocc"], rows[(rows["method"] == "ridge") & (rows["shots"] == 10)]["srocc"])


def test_every_method_sees_the_same_support_draws(data):
    SEEN.clear()
    run_benchmark(data, ["test-recorder-a", "ridge", "test-recorder-b"], shots=(10, 50), repeats=3, seed=1, overrides=FAST)
    a, b = SEEN["test-recorder-a"], SEEN["test-recorder-b"]
    assert len(a) == 6 * 2 * 3 and a == b
    assert len(set(a.values())) == len(a)  # and the draws differ between raters, settings and repeats


def test_failing_method_and_rater_do_not_lose_other_results(data, tmp_path):
    Flaky.bad_seeds = {derive_seed(2, "adapt", BAD_USER, k, r) for k in (0, 10) for r in range(2)}
    result = run_benchmark(data, ["giaa", "test-broken-fit", "test-flaky", "ridge"], shots=(0, 10), repeats=2, seed=2, overrides=["epochs=3", "hidden=8"])
    rows = result.rows
    # The other methods have every episode; the flaky one loses exactly one rater's episodes.
    for name in ("giaa", "ridge"):
        assert rows[rows["method"] == name]["error"].isna().all() and (rows["method"] == name).sum() == 6 * 3
    flaky = rows[rows["method"] == "test-flaky"]
    assert len(flaky) == 6 * 3
    assert set(flaky.loc[flaky["error"].notna(), "user"]) == {BAD_USER}
    assert flaky.loc[flaky["user"] != BAD_USER, "srocc"].notna().all()
    # Failures are reported: the fit failure and the per-episode errors, with their messages.
    assert "deliberate failure while training" in result.fit_failures["test-broken-fit"]
    fails = result.failures()
    assert set(fails["method"]) == {"test-broken-fit", "test-flaky"}
    adapt_errors = fails.loc[fails["stage"] == "adapt", "error"]
    assert len(adapt_errors) == 3 and adapt_errors.str.contains("RuntimeError: deliberate failure for this rater").all()
    s = result.summary.set_index(["method", "shots"])
    assert s.loc[("test-flaky", 10), "n_users"] == 5 and s.loc[("test-flaky", 10), "n_failed_users"] == 1
    assert s.loc[("test-broken-fit", 10), "status"] == "fit failed"
    out = write_benchmark(result, tmp_path / "out")
    md = (out / "summary.md").read_text()
    assert "test-broken-fit: training failed" in md and "test-flaky: 3 episode(s) on 1 rater(s) failed" in md
    assert len(pd.read_csv(out / "failures.csv")) == 4


def test_wilcoxon_says_whether_the_lead_is_significant(data):
    result = run_benchmark(data, ["giaa", "user-mean", "ridge"], shots=(0, 50), repeats=2, seed=0, overrides=FAST)
    sig = result.significance.set_index(["shots", "versus"])
    # At 0 shots every method is the prior: the "lead" is a tie, p = 1.
    assert sig.loc[(0, "runner-up"), "p_value"] == 1.0 and not sig.loc[(0, "runner-up"), "significant"]
    row = sig.loc[(50, "runner-up")]
    assert row["n_raters"] == 6 and 0 <= row["p_value"] <= 1
    both = result.paired(row["best"], row["other"], 50)
    from scipy.stats import wilcoxon

    assert row["p_value"] == pytest.approx(wilcoxon(both[row["best"]] - both[row["other"]]).pvalue)


def test_overrides_reach_the_methods_that_have_the_field():
    per = split_overrides(["giaa", "knn", "pam"], ["epochs=3", "knn.neighbours=4", "pam.n_content=2"])
    assert per == {"giaa": ["epochs=3"], "knn": ["epochs=3", "neighbours=4"], "pam": ["epochs=3", "n_content=2"]}
    with pytest.raises(ConfigError, match="no benchmarked method has a config field 'neighbors'"):
        split_overrides(["knn"], ["neighbors=3"])


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "piaa.console.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.mark.slow  # > 8 s; CI and `make test` run it, `pytest -m 'not slow'` skips it
def test_cli_end_to_end(demo, tmp_path):
    out = tmp_path / "bench"
    args = ["benchmark", "--data", str(demo), "--methods", "giaa,ridge,pam,user-mean", "--shots", "0", "--shots", "10",
            "--shots", "50", "--repeats", "2", "--seed", "0", "--out", str(out)]
    for item in FAST:
        args += ["--set", item]
    done = _cli(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "| ridge |" in done.stdout and "Wilcoxon" in done.stdout
    files = set(p.name for p in out.iterdir())
    assert {"results.csv", "summary.csv", "summary.md", "significance.csv", "failures.csv", "timings.csv", "benchmark.json", "srocc_vs_shots.png"} <= files
    meta = json.loads((out / "benchmark.json").read_text())
    assert meta["methods"] == ["giaa", "ridge", "pam", "user-mean"] and meta["shots"] == [0, 10, 50]
    pair = meta["compare"]
    assert pair[1] == "giaa" and f"per_rater_{pair[0]}_vs_giaa.png" in files
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 4 * 3 and summary["n_users"].eq(6).all()
    # An existing non-empty --out is never overwritten: one error line, exit 2, files untouched.
    before = (out / "results.csv").read_bytes()
    again = _cli(*args, cwd=tmp_path)
    assert again.returncode == 2 and "already exists and is not empty" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1 and (out / "results.csv").read_bytes() == before
    # A misspelt method is a usage error before anything is trained, with a suggestion.
    bad = _cli("benchmark", "--data", str(demo), "--methods", "giaa,rigde", "--out", str(tmp_path / "x"), cwd=tmp_path)
    assert bad.returncode == 2 and "did you mean 'ridge'" in bad.stderr and not (tmp_path / "x").exists()


def test_bad_arguments_fail_before_training(data):
    with pytest.raises(ConfigError, match="--shots"):
        run_benchmark(data, ["giaa"], shots=(-1, 10))
    with pytest.raises(ConfigError, match="--repeats"):
        run_benchmark(data, ["giaa"], repeats=0)
    with pytest.raises(ConfigError, match="unknown method 'rigde'; did you mean 'ridge'"):
        run_benchmark(data, ["giaa", "rigde"])


def test_all_methods_failing_still_writes_a_report(data, tmp_path):
    result = run_benchmark(data, ["test-broken-fit"], shots=(0, 10), repeats=1)
    out = write_benchmark(result, tmp_path / "out")
    assert "fit failed" in (out / "summary.md").read_text()
    assert pd.read_csv(out / "failures.csv")["stage"].tolist() == ["fit"]
    assert (out / "srocc_vs_shots.png").is_file()
