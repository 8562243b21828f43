"""`--set engine=learn2learn`: refused cleanly where it cannot run; where learn2learn is installed
(vision venv), meta-training through it follows the default engine's trajectory."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from piaa.errors import ConfigError
from piaa.meta.core import flatten
from piaa.protocol import evaluate
from piaa.registry import create_method

ROOT = Path(__file__).resolve().parents[2]
QUICK = dict(hidden=(16, 8), pretrain_epochs=3, meta_steps=6, val_every=3, checkpoint_every=3, patience=0,
             support_shots=(10,), query_size=10, val_shots=(10,), adapt_steps=3)
HAVE_L2L = importlib.util.find_spec("learn2learn") is not None


@pytest.mark.parametrize("name", ["blg-piaa", "reptile", "anil"])
def test_presets_learn2learn_cannot_run_refuse_it_by_name(name):
    """Adam inner loops (blg-piaa, reptile) and last-layer-only adaptation (anil) have no learn2learn MAML."""
    with pytest.raises(ConfigError, match="engine=learn2learn needs order second or first, inner_optimizer sgd and inner_params all"):
        create_method(name, ["engine=learn2learn"])


@pytest.mark.skipif(HAVE_L2L, reason="learn2learn is installed here; the vision tests run the engine")
def test_meta_train_with_learn2learn_missing_is_one_line_exit_2_and_writes_nothing(tmp_path):
    env = {**os.environ, "PIAA_RUNS": str(tmp_path / "runs"), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "piaa", "meta-train", "--method", "maml", "--set", "engine=learn2learn", "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "engine=learn2learn needs learn2learn 0.2.0" in proc.stderr
    assert "make install-learn2learn" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "runs").exists()


def _fit(name: str, engine: str, data, **more):
    return create_method(name, **{**QUICK, "dropout": 0.0, "engine": engine, **more}).fit(data, seed=4)


@pytest.mark.vision
@pytest.mark.parametrize("name", ["maml", "fomaml", "meta-sgd"])
def test_learn2learn_engine_trains_to_the_default_engines_weights(small, name):
    """Same seed, dropout off: the whole fit (pretraining, meta-steps, validation, step-size choice) ends
    with the same meta-parameters whichever engine computes the meta-gradients."""
    pytest.importorskip("learn2learn", reason="needs learn2learn in the vision venv: make install-learn2learn")
    train = small.without("test")
    ours_method = _fit(name, "learn2learn", train)
    ours = flatten(ours_method.meta)
    default_method = _fit(name, "batched", train)
    default, start = flatten(default_method.meta), flatten(_fit(name, "batched", train, meta_steps=0).meta)
    assert ours.keys() == default.keys() == start.keys()
    moved = max(float((ours[k] - v).abs().max()) for k, v in start.items())
    assert moved > 1e-4  # meta-training changed the weights, so agreement below is not trivial
    for k, v in default.items():
        torch.testing.assert_close(ours[k], v, rtol=0, atol=1e-5)
    assert ours_method.adapt_lrs == default_method.adapt_lrs
    assert [e["query_loss"] for e in ours_method.fit_log if "query_loss" in e] == pytest.approx(
        [e["query_loss"] for e in default_method.fit_log if "query_loss" in e], abs=1e-5)


@pytest.mark.vision
@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="open (issue 13): with the one-SE step-size rule both engines choose the same step sizes (0.3 at 10 "
    "shots, 1.0 at 100), but their validation curves part after ~400 meta-steps (rounding) and model selection "
    "on the noisy curve keeps step 1000 (default) against 500 (learn2learn, early-stopped at 800): test SROCC "
    "at 10 shots 0.562 against 0.540; strict, so a fix shows up",
)
def test_full_maml_on_the_demo_learn2learn_matches_the_default_engine():
    """The issue's check: `meta-train --method maml` on the demo with each engine: the same validation
    choices and test SROCC within 0.005 at 10 and 100 shots. Preset defaults except dropout, which is
    off: each engine draws its own dropout masks, and over the preset's 1,000 meta-steps those
    different draws alone move the step-size choice (measured: 0.3 against 1.0 at 10 shots under a
    plain argmax; the one-SE rule made the choices agree, the weights still drift apart)."""
    pytest.importorskip("learn2learn", reason="needs learn2learn in the vision venv: make install-learn2learn")
    from piaa.runs import resolve_data

    data, _ = resolve_data(None)
    results = {}
    for engine in ("batched", "learn2learn"):
        method = create_method("maml", engine=engine, dropout=0.0).fit(data.without("test"), seed=0)
        summary = evaluate(method, data, shots=[10, 100], repeats=10, seed=0).summary.set_index("shots")
        validations = {e["step"]: e["val_srocc"] for e in method.fit_log if "val_srocc" in e and "step" in e}
        choices = [{k: e[k] for k in ("adapt_lr_for_shots", "adapt_lr", "best_adapt_lr", "se_vs_best", "val_srocc_by_lr")}
                   for e in method.fit_log if "adapt_lr_for_shots" in e]
        results[engine] = (dict(method.adapt_lrs), summary["srocc_mean"].to_dict(), validations, choices)
    (lrs_l2l, test_l2l, val_l2l, why_l2l), (lrs_default, test_default, val_default, why_default) = results["learn2learn"], results["batched"]
    assert lrs_l2l == lrs_default, (why_l2l, why_default)
    for k in (10, 100):
        assert np.isfinite(test_default[k]) and abs(test_l2l[k] - test_default[k]) < 0.005
    # the meta-trained weights themselves (not only the selected prior) validate alike at every check
    assert val_l2l.keys() == val_default.keys() and len(val_default) >= 2
    for step, score in val_default.items():
        assert abs(val_l2l[step] - score) < 0.005, step
