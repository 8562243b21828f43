"""piaa.meta as a library on the sinusoid regression of Finn et al. (2017)."""

from __future__ import annotations

import torch

from piaa.meta.sinusoid import SinusoidTasks, fine_tune_mse, train_maml, train_pretrained


def test_maml_one_step_error_is_well_below_the_pretrained_baselines():
    """A short MAML run (300 meta-steps of 10 tasks) already adapts in one step to under 60% of the
    error of the same network pretrained on all tasks, at either of the paper's baseline step sizes."""
    test = SinusoidTasks().draw(200, torch.Generator().manual_seed(5))
    maml = train_maml(300, meta_batch=10, outer_lr=1e-2)
    pretrained = train_pretrained(300, meta_batch=10, lr=1e-2)
    maml_curve = fine_tune_mse(maml, test, 0.01, 1)
    baseline = min(fine_tune_mse(pretrained, test, lr, 1)[1] for lr in (0.01, 0.02))
    assert maml_curve[1] < 0.6 * baseline
    assert maml_curve[1] < 0.6 * maml_curve[0]  # the step itself does the work, not the prior alone


def test_sinusoid_tasks_are_reproducible_from_the_seed():
    a = SinusoidTasks().sampler(4, seed=1)(7)
    b = SinusoidTasks().sampler(4, seed=1)(7)
    c = SinusoidTasks().sampler(4, seed=1)(8)
    assert torch.equal(a.xs, b.xs) and torch.equal(a.ys, b.ys)
    assert not torch.equal(a.xs, c.xs)
    assert float(a.ys.abs().max()) <= 5.0 and float(a.xs.abs().max()) <= 5.0
