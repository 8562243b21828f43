"""Meta-training on a small simulated dataset: determinism, kill-and-resume, presets, the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from piaa.protocol import evaluate
from piaa.registry import create_method, list_methods
from piaa.meta.checkpoint import INDEX, load_checkpoint
from piaa.one_se import one_se_choice
from piaa.meta.validation import Validator

# A few seconds of meta-training on the small dataset.
QUICK = dict(hidden=(16, 8), pretrain_epochs=3, meta_steps=12, val_every=4, checkpoint_every=4, patience=0,
             support_shots=(10,), query_size=10, val_shots=(10,), adapt_steps=3)

PRESETS = ["blg-piaa", "blg-piaa-tuned", "maml", "fomaml", "reptile", "meta-sgd", "anil"]


def _quick(name: str, **more):
    return create_method(name, **{**QUICK, **more})


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_presets_are_registered():
    assert set(PRESETS) <= set(list_methods())
    assert create_method("blg-piaa").config.order == "reptile"
    assert create_method("maml").config.order == "second"
    assert create_method("fomaml").config.order == "first"
    assert create_method("meta-sgd").config.learn_inner_lr is True
    assert create_method("anil").config.inner_params == "last"
    assert create_method("blg-piaa-tuned").config.inner_lr > create_method("blg-piaa").config.inner_lr


def test_same_seed_same_weights_other_seed_other_weights(small):
    train = small.without("test")
    a = _quick("blg-piaa").fit(train, seed=1).state_dict()
    b = _quick("blg-piaa").fit(train, seed=1).state_dict()
    c = _quick("blg-piaa").fit(train, seed=2).state_dict()
    assert _same(a, b)
    assert not _same(a, c)


class Killed(Exception):
    pass


@pytest.mark.parametrize("name", ["blg-piaa", "maml"])
def test_killed_and_resumed_run_ends_with_identical_weights(small, tmp_path, name):
    train = small.without("test")
    # Validation every 4 steps makes model selection part of what must survive the interruption.
    whole = _quick(name, patience=0).fit(train, seed=5)

    def kill_at_7(step: int) -> None:
        if step == 7:
            raise Killed

    first = _quick(name, patience=0)
    first._on_step = kill_at_7
    with pytest.raises(Killed):
        first.fit(train, seed=5, checkpoint_dir=tmp_path)
    tensors, info = load_checkpoint(tmp_path)
    assert info["step"] == 4 and not info["done"]  # the last checkpoint before the kill
    resumed = _quick(name, patience=0).fit(train, seed=5, checkpoint_dir=tmp_path)
    assert _same(whole.state_dict(), resumed.state_dict())
    assert whole.adapt_lrs == resumed.adapt_lrs
    assert len(list(tmp_path.glob("state-*.safetensors"))) == 1


def test_checkpoint_of_another_config_is_not_resumed(small, tmp_path):
    train = small.without("test")
    _quick("blg-piaa", meta_steps=4).fit(train, seed=0, checkpoint_dir=tmp_path)
    with pytest.raises(Exception, match="different configuration"):
        _quick("blg-piaa", meta_steps=4, inner_lr=0.01).fit(train, seed=0, checkpoint_dir=tmp_path)


def test_corrupt_checkpoint_is_reported(small, tmp_path):
    _quick("blg-piaa", meta_steps=4).fit(small.without("test"), seed=0, checkpoint_dir=tmp_path)
    state = next(tmp_path.glob("state-*.safetensors"))
    state.write_bytes(state.read_bytes()[:-3] + b"xyz")
    with pytest.raises(Exception, match="checksum"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("name", ["blg-piaa", "maml"] + [pytest.param(n, marks=pytest.mark.slow) for n in ("fomaml", "reptile", "meta-sgd", "anil", "blg-piaa-tuned")])
def test_each_preset_meta_trains_and_adapts(small, name):
    method = _quick(name).fit(small.without("test"), seed=0)
    result = evaluate(method, small, shots=[10, 100], repeats=2, seed=0)
    assert result.failures().empty
    summary = result.summary.set_index("shots")
    assert summary.loc[10, "n_users"] == 4 and summary.loc[100, "n_users"] == 4
    # The simulated raters share a generic taste, so a meta-learned prior ranks clearly above chance.
    assert summary.loc[100, "srocc_mean"] > 0.1
    assert any("val_srocc" in e for e in method.fit_log)


def test_adapt_fits_the_support_set_and_reports_adapted_weights(small):
    method = _quick("blg-piaa", adapt_lr_grid=(), adapt_lr=0.01, adapt_steps=30).fit(small.without("test"), seed=0)
    rater = small.rater("42")
    x = np.asarray(small.features[rater.image_index[:20]])
    y = rater.scores[:20]
    prior = method.adapt(x[:0], y[:0])
    user = method.adapt(x, y, seed=1)
    err = lambda m: float(np.mean((m.predict(x) - y) ** 2))
    assert err(user) < err(prior)
    lo, hi = small.score_range
    assert ((user.predict(x) >= lo) & (user.predict(x) <= hi)).all()
    state = user.state_dict()
    assert set(state) == set(method.meta["params"])
    assert any(not torch.equal(state[k], method.meta["params"][k]) for k in state)
    # Same seed → same adapted weights.
    assert _same(state, method.adapt(x, y, seed=1).state_dict())


def test_validation_never_uses_test_raters(small, monkeypatch):
    seen = []
    original = type(small).rater

    def spy(self, user):
        r = original(self, user)
        seen.append(r.split)
        return r

    assert small.users_in("test")  # the data handed to fit holds test raters: fit itself must leave them out
    monkeypatch.setattr(type(small), "rater", spy)
    method = _quick("blg-piaa", meta_steps=2, val_fraction=0.25).fit(small, seed=0)
    assert any(row.get("val_srocc") is not None for row in method.fit_log)  # validation raters were scored
    assert "train" in seen and "test" not in seen


def test_cli_meta_train_then_adapt_user_42(small_dir, tmp_path, monkeypatch):
    from piaa.console.cli import app

    monkeypatch.setenv("PIAA_RUNS", str(tmp_path / "runs"))
    runner = CliRunner()
    sets = [f"--set={k}={','.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in QUICK.items()]
    res = runner.invoke(app, ["meta-train", "--method", "blg-piaa", "--data", str(small_dir), "--no-progress", *sets])
    assert res.exit_code == 0, res.output
    run_dir = next((tmp_path / "runs").glob("blg-piaa-*"))
    info = json.loads((run_dir / "config.json").read_text())
    assert info["method"] == "blg-piaa" and info["config"]["meta_steps"] == 12
    assert not (tmp_path / "runs" / ".checkpoints").exists() or not any((tmp_path / "runs" / ".checkpoints").iterdir())
    res = runner.invoke(app, ["adapt", "--user", "42", "--shots", "10", "--repeats", "3", "--json", str(tmp_path / "a.json")])
    assert res.exit_code == 0, res.output
    assert "user 42: SROCC" in res.output
    rows = json.loads((tmp_path / "a.json").read_text())["rows"]
    assert len(rows) == 3 and all(r["srocc"] is not None for r in rows)


@pytest.mark.slow
def test_cli_run_killed_with_sigkill_resumes_to_the_same_weights(small_dir, tmp_path):
    """A real `piaa meta-train` process is SIGKILLed mid-run; running the command again resumes."""
    env = {**os.environ, "PIAA_RUNS": str(tmp_path / "runs"), "OMP_NUM_THREADS": "1"}
    sets = [f"--set={k}={','.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in {**QUICK, "meta_steps": 300, "checkpoint_every": 5, "val_every": 50}.items()]
    args = [sys.executable, "-m", "piaa", "meta-train", "--method", "blg-piaa", "--data", str(small_dir), "--no-progress", *sets]
    proc = subprocess.Popen(args + ["--out", str(tmp_path / "interrupted")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    index = None
    while time.time() < deadline and index is None:
        index = next(tmp_path.glob(".interrupted.checkpoints-*/" + INDEX), None)
        time.sleep(0.05)
    assert index is not None, "no checkpoint appeared"
    while json.loads(index.read_text())["step"] < 20 and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step = json.loads(index.read_text())["step"]
    assert 20 <= step < 300 and not (tmp_path / "interrupted").exists()
    subprocess.run(args + ["--out", str(tmp_path / "interrupted")], env=env, check=True, capture_output=True)
    subprocess.run(args + ["--out", str(tmp_path / "whole")], env=env, check=True, capture_output=True)
    a = load_file(str(tmp_path / "interrupted" / "weights.safetensors"))
    b = load_file(str(tmp_path / "whole" / "weights.safetensors"))
    assert _same(a, b)
    assert not index.parent.exists()  # checkpoints are removed once the run is saved


class _PeakedValidator(Validator):
    """A validator whose score peaks at step size 2.0 (for testing the grid's edge handling)."""

    def __init__(self):  # no model or raters: per_rater below is the whole score
        pass

    def per_rater(self, meta, lr=None):  # every rater alike: no noise, the rule is the argmax
        return {10: np.full(5, -abs(np.log(lr / 2.0)) if lr > 0 else -10.0)}


def test_a_step_size_grid_whose_edge_wins_is_extended_and_an_edge_choice_is_flagged():
    chosen, log = _PeakedValidator().choose_step_sizes({}, (0.0, 0.1, 0.3), max_extensions=2)
    assert log[0]["grid"] == pytest.approx([0.0, 0.1, 0.3, 0.9, 2.7])
    assert chosen == {10: pytest.approx(2.7)} and log[0]["at_grid_edge"] is True
    chosen, log = _PeakedValidator().choose_step_sizes({}, (0.0, 0.1, 0.3), max_extensions=4)
    assert chosen == {10: pytest.approx(2.7)} and "at_grid_edge" not in log[0]  # 8.1 was tried and lost


class _TwoPeakValidator(Validator):
    """Per-rater scores: step size 1.0 leads 0.3 by `gap` on average, with rater-to-rater noise in
    the difference (standard deviation 0.05 over 40 raters: a paired standard error of ~0.008)."""

    def __init__(self, gap: float):
        noise = np.random.default_rng(7).normal(0.0, 0.05, 40)
        base = np.linspace(0.3, 0.7, 40)  # raters differ a lot in level; pairing removes that
        self.scores = {0.0: base - 0.1, 0.1: base - 0.05, 0.3: base, 1.0: base + gap + noise - noise.mean()}

    def per_rater(self, meta, lr=None):
        return {10: self.scores[lr]} if lr in self.scores else {10: self.scores[0.0] - 1.0}


def test_one_se_rule_takes_the_smaller_step_among_near_tied_scores_and_the_best_beyond_the_se():
    tied = one_se_choice(_TwoPeakValidator(gap=0.004).scores)
    assert tied.best == 1.0 and 0.0 < tied.mean[1.0] - tied.mean[0.3] < tied.se[0.3]
    assert tied.chosen == 0.3  # 0.1 is 0.05 behind with no noise in its difference: outside the SE
    clear = one_se_choice(_TwoPeakValidator(gap=0.03).scores)
    assert clear.mean[1.0] - clear.mean[0.3] > clear.se[0.3] and clear.chosen == clear.best == 1.0
    assert 0.005 < clear.se[0.3] < 0.012  # 0.05 / sqrt(40) ≈ 0.008


def test_step_size_choice_logs_the_rule_the_se_and_the_argmax_it_did_not_take():
    chosen, log = _TwoPeakValidator(gap=0.004).choose_step_sizes({}, (0.0, 0.1, 0.3, 1.0), max_extensions=2)
    assert chosen == {10: 0.3}
    entry = log[0]
    assert entry["best_adapt_lr"] == 1.0 and entry["adapt_lr"] == 0.3 and entry["rule"].startswith("one-SE")
    assert 0 < entry["best_val_srocc"] - entry["val_srocc"] < entry["se_vs_best"]
    assert entry["grid"] == [0.0, 0.1, 0.3, 1.0, 3.0]  # the best sat at the top edge: extended once (3.0 loses)
    assert "at_grid_edge" not in entry
    chosen, log = _TwoPeakValidator(gap=0.03).choose_step_sizes({}, (0.0, 0.1, 0.3, 1.0), max_extensions=2)
    assert chosen == {10: 1.0} and log[0]["se_vs_best"] == 0.0


def test_every_preset_logs_validation_at_step_zero_the_selected_step_and_the_argmax_it_did_not_take(small):
    method = _quick("anil").fit(small.without("test"), seed=0)
    entry = next(e for e in method.fit_log if "selected_step" in e)
    scores = {e["step"]: e["val_srocc"] for e in method.fit_log if "val_srocc" in e and "step" in e}
    assert entry["val_srocc_step0"] == scores[0]
    assert entry["val_srocc_selected"] == scores[entry["selected_step"]]
    assert entry["val_srocc_argmax"] == max(scores.values()) == scores[entry["argmax_step"]]
    assert entry["selected_step"] <= entry["argmax_step"] and entry["rule"].startswith("one-SE")
    # an earlier step is kept only when the argmax's lead is within one paired standard error
    assert entry["val_srocc_argmax"] - entry["val_srocc_selected"] <= entry["se_argmax_vs_selected"]


class _PriorComparingValidator:
    """Validation raters' SROCC at the chosen step sizes: the step-0 prior scores `base`, the
    meta-trained prior `base + gain + noise` (noise sd 0.04 over 30 raters: a paired SE of ~0.007)."""

    def __init__(self, start, gain: float):
        self.start = start
        noise = np.random.default_rng(3).normal(0.0, 0.04, 30)
        self.base, self.trained = np.linspace(0.4, 0.7, 30), np.linspace(0.4, 0.7, 30) + gain + noise - noise.mean()

    def choose_step_sizes(self, meta, grid):
        return {10: 0.1}, [{"adapt_lr_for_shots": 10, "adapt_lr": 0.1, "for": "step 0"}]

    def tuned_per_rater(self, meta, lrs):
        return self.base if meta is self.start else self.trained


@pytest.mark.parametrize("gain, kept", [(0.003, False), (0.03, True)])
def test_meta_trained_prior_is_kept_only_when_it_beats_step_zero_by_more_than_one_se(gain, kept):
    method = create_method("reptile")
    trained, start = {"params": {"w": torch.ones(2)}}, {"params": {"w": torch.zeros(2)}}
    method.meta, method.adapt_lrs = trained, {10: 0.3}
    method.fit_log = [{"selected_step": 900, "val_srocc_step0": 0.5, "val_srocc_selected": 0.6, "meta_steps_run": 1000}]
    validator = _PriorComparingValidator(start, gain)
    entries = method._keep_step0_unless_beaten(validator, start, [{"adapt_lr_for_shots": 10, "adapt_lr": 0.3}])
    selection = method.fit_log[0]
    assert selection["kept_meta_trained"] is kept
    assert (selection["tuned_gain"] > selection["tuned_gain_se"]) is kept and 0.004 < selection["tuned_gain_se"] < 0.011
    if kept:
        assert method.meta is trained and method.adapt_lrs == {10: 0.3} and selection["selected_step"] == 900
    else:
        assert method.meta is start and method.adapt_lrs == {10: 0.1} and entries[0]["for"] == "step 0"
        assert selection["selected_step"] == 0 and selection["val_srocc_selected"] == selection["val_srocc_step0"]
