"""Checkpoint selection and early stopping by the one-SE rule (piaa.meta.selection, piaa.meta.loop)
on synthetic validation curves: 30 validation raters whose levels differ a lot (pairing removes that)
and independent per-step noise of sd 0.05, so the paired standard error between two checkpoints is
about 0.05·√2/√30 ≈ 0.013."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from piaa.errors import RunError
from piaa.meta.checkpoint import INDEX, load_checkpoint
from piaa.meta.core import MetaStep
from piaa.meta.loop import LoopSpec, TrainState, run_meta_training
from piaa.one_se import paired_se
from piaa.meta.selection import CheckpointSelection

RATERS = np.linspace(0.3, 0.7, 30)


def _noise(step: int) -> np.ndarray:
    n = np.random.default_rng(step).normal(0.0, 0.05, len(RATERS))
    return n - n.mean()  # the mean of a step's scores is exactly its level


def _scores(level: float, step: int) -> np.ndarray:
    return RATERS + level + _noise(step)


def _meta(step: int) -> dict:
    return {"params": {"w": torch.tensor([float(step)])}}


def _select(levels: dict[int, float]) -> CheckpointSelection:
    selection = CheckpointSelection()
    for step, level in levels.items():
        selection.add(step, _meta(step), _scores(level, step))
    return selection


def test_a_late_argmax_within_one_se_of_an_earlier_checkpoint_leaves_the_earlier_one_selected():
    selection = _select({0: 0.0, 100: 0.10, 200: 0.104, 300: 0.108})
    summary = selection.summary()
    assert summary["argmax_step"] == 300 and summary["selected_step"] == 100
    assert summary["val_srocc_argmax"] - summary["val_srocc_selected"] == pytest.approx(0.008)
    assert 0.008 < summary["se_argmax_vs_selected"] < 0.02
    assert summary["se_argmax_vs_selected"] == pytest.approx(paired_se(_scores(0.108, 300), _scores(0.10, 100)), abs=1e-6)
    assert torch.equal(selection.best["params"]["w"], torch.tensor([100.0]))  # the selected step's weights
    # step 0 is 0.1 behind with an SE near 0.013: clearly beaten, so no longer held
    assert sorted(selection.weights) == sorted(selection.scores) == [100, 200, 300]


def test_an_argmax_clearly_ahead_of_every_earlier_checkpoint_is_selected_and_the_rest_dropped():
    selection = _select({0: 0.0, 100: 0.10, 200: 0.104, 300: 0.15})
    summary = selection.summary()
    assert summary["selected_step"] == summary["argmax_step"] == 300 and summary["se_argmax_vs_selected"] == 0.0
    assert list(selection.weights) == [300]  # 100 and 200 are 0.05 and 0.046 behind: beyond one SE


def test_a_single_number_per_checkpoint_is_a_plain_argmax_with_ties_to_the_earlier_step():
    selection = CheckpointSelection()
    changes = [selection.add(step, _meta(step), value) for step, value in [(0, 0.5), (10, 0.6), (20, 0.6), (30, 0.59)]]
    assert changes == [True, True, False, False]
    assert selection.selected == 10 and sorted(selection.weights) == [10, 20]


def _level(step: int) -> float:
    """Rises by 0.03 per meta-step up to step 4, then creeps up by 0.001 per step (within one SE)."""
    return 0.03 * min(step, 4) + 0.001 * step


def _toy_run(tmp_path=None, *, per_rater: bool = True, on_step=None) -> TrainState:
    """Meta-parameter w counts the meta-steps (SGD of step 1 on a gradient of -1); the score of w is
    the synthetic curve at that step."""
    def meta_gradient(meta, buffers, batch, inner_state):
        return MetaStep({"params": {"w": torch.tensor([-1.0])}}, torch.tensor(0.0))

    def score(meta):
        step = int(round(float(meta["params"]["w"].detach())))
        scores = _scores(_level(step), step)
        return scores if per_rater else float(scores.mean())

    state = TrainState.start(_meta(0), lambda params: torch.optim.SGD(params, lr=1.0))
    spec = LoopSpec(meta_steps=12, val_every=2, patience=3, checkpoint_every=2)
    return run_meta_training(state, meta_gradient, lambda step: None, spec, score=score, checkpoint_dir=tmp_path,
                             fingerprint="toy", on_step=on_step)


def test_patience_counts_validations_that_leave_the_one_se_choice_unchanged_not_argmax_gains():
    state = _toy_run()
    validated = [e["step"] for e in state.log if "val_srocc" in e]
    # steps 6, 8 and 10 each beat step 4 by less than one SE: three validations without a change
    assert state.best_step == 4 and state.step == 10 and validated == [0, 2, 4, 6, 8, 10]
    assert state.selection.summary()["argmax_step"] == 10
    assert [e["selected_so_far"] for e in state.log if "val_srocc" in e] == [0, 2, 4, 4, 4, 4]
    # a plain argmax (one number per checkpoint) counts every tiny gain as progress: it never stops
    argmax = _toy_run(per_rater=False)
    assert argmax.best_step == argmax.step == 12


class Killed(Exception):
    pass


def _kill_at(at: int):
    def on_step(step: int) -> None:
        if step == at:
            raise Killed
    return on_step


def test_a_run_killed_and_resumed_selects_and_stops_as_the_uninterrupted_run(tmp_path):
    whole = _toy_run()
    with pytest.raises(Killed):
        _toy_run(tmp_path, on_step=_kill_at(7))
    tensors, info = load_checkpoint(tmp_path)
    held = sorted({int(k.split("/")[1]) for k in tensors if k.startswith("candidates/")})
    assert info["step"] == 6 and info["selected_step"] == 4 and held == [4, 6]  # 0 and 2 were clearly beaten
    resumed = _toy_run(tmp_path)
    assert (resumed.best_step, resumed.step, resumed.since_best) == (whole.best_step, whole.step, whole.since_best) == (4, 10, 3)
    assert torch.equal(resumed.best["params"]["w"], whole.best["params"]["w"])
    assert [e for e in resumed.log if "val_srocc" in e] == [e for e in whole.log if "val_srocc" in e]
    assert resumed.selection.summary() == whole.selection.summary()


def test_a_checkpoint_without_a_selection_from_an_older_piaa_is_refused_with_its_directory(tmp_path):
    with pytest.raises(Killed):
        _toy_run(tmp_path, on_step=_kill_at(3))
    index = json.loads((tmp_path / INDEX).read_text())
    del index["selected_step"]  # what a checkpoint written before the one-SE selection holds
    (tmp_path / INDEX).write_text(json.dumps(index))
    with pytest.raises(RunError, match=f"{tmp_path} holds a checkpoint of an older piaa"):
        _toy_run(tmp_path)
