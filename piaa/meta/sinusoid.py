"""The sinusoid regression of Finn et al., "Model-Agnostic Meta-Learning for Fast Adaptation of Deep
Networks", ICML 2017 (section 5.1), written with `piaa.meta` as a library example.

A task is y = A·sin(x − φ) with amplitude A ~ U[0.1, 5], phase φ ~ U[0, π] and inputs x ~ U[−5, 5];
K points form the support set. The paper's model is an MLP 1 → 40 → 40 → 1 with ReLU, meta-trained
with one inner SGD step of α = 0.01 on K = 10 points, meta-batches of 25 tasks and Adam; its
baseline is the same network pretrained on all tasks jointly (one regression on the pooled data)
and fine-tuned at test time with a tuned step size (0.02 for K = 10).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from piaa.meta.core import TaskBatch, inner_loop, stack, task_losses
from piaa.meta.inner import InnerSGD
from piaa.meta.loop import LoopSpec, TrainState, run_meta_training
from piaa.meta.maml import MAML


@dataclass(frozen=True)
class SinusoidTasks:
    """Draws batches of sinusoid tasks from a seeded generator (same seed and step, same tasks)."""

    shots: int = 10
    query: int = 10
    amplitude: tuple[float, float] = (0.1, 5.0)
    phase: tuple[float, float] = (0.0, math.pi)
    x_range: tuple[float, float] = (-5.0, 5.0)

    def draw(self, n_tasks: int, generator: torch.Generator) -> TaskBatch:
        u = lambda lo, hi, *shape: lo + (hi - lo) * torch.rand(*shape, generator=generator)
        amp = u(*self.amplitude, n_tasks, 1, 1)
        phase = u(*self.phase, n_tasks, 1, 1)
        xs = u(*self.x_range, n_tasks, self.shots, 1)
        xq = u(*self.x_range, n_tasks, self.query, 1)
        return TaskBatch(xs, amp * torch.sin(xs - phase), xq, amp * torch.sin(xq - phase))

    def sampler(self, n_tasks: int, seed: int):
        """step -> that step's batch, drawn from (seed, step) alone (so runs resume exactly)."""
        return lambda step: self.draw(n_tasks, torch.Generator().manual_seed(seed * 1_000_003 + step))


def mse(pred: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Mean squared error of one task's rows (pred and y are (rows, 1)); any (pred, y, w) loss works."""
    return ((pred - y) ** 2).squeeze(-1).mul(w).sum(-1) / w.sum(-1)


mse.batched = True  # it reduces trailing axes only, so it also takes a leading task axis
mse.squared_error = True  # a weighted squared error: the engine may use piaa.meta.closed_form


def network(seed: int, hidden: int = 40) -> nn.Module:
    """The paper's regressor: 1 → 40 → 40 → 1 with ReLU."""
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))
    with torch.no_grad():
        for layer in net:  # PyTorch's default Linear init, drawn from our generator
            if isinstance(layer, nn.Linear):
                bound = 1 / math.sqrt(layer.in_features)
                layer.weight.uniform_(-bound, bound, generator=g)
                layer.bias.uniform_(-bound, bound, generator=g)
    return net


def train_maml(steps: int, *, seed: int = 0, tasks: SinusoidTasks = SinusoidTasks(), meta_batch: int = 25,
               inner_lr: float = 0.01, outer_lr: float = 1e-3) -> nn.Module:
    """MAML as in the paper (one inner step of `inner_lr`, Adam outer step), for `steps` meta-steps."""
    net = network(seed)
    algorithm = MAML(net, InnerSGD(inner_lr), steps=1, loss=mse)
    state = TrainState.start(algorithm.init_meta(dict(net.named_parameters())), lambda ps: torch.optim.Adam(ps, lr=outer_lr))
    state = run_meta_training(state, algorithm.meta_gradient, tasks.sampler(meta_batch, seed), LoopSpec(meta_steps=steps, val_every=steps, checkpoint_every=steps), seed=seed)
    net.load_state_dict(state.meta["params"])
    return net


def train_pretrained(steps: int, *, seed: int = 0, tasks: SinusoidTasks = SinusoidTasks(), meta_batch: int = 25, lr: float = 1e-3) -> nn.Module:
    """The baseline: one regression on all tasks' points pooled (Adam), no meta-learning."""
    net = network(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sample = tasks.sampler(meta_batch, seed)
    for step in range(steps):
        batch = sample(step)
        x, y = torch.cat([batch.xs, batch.xq], 1), torch.cat([batch.ys, batch.yq], 1)
        loss = ((net(x) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net


def fine_tune_mse(net: nn.Module, batch: TaskBatch, lr: float, max_steps: int) -> list[float]:
    """Mean query MSE over the batch's tasks after 0..max_steps SGD steps of `lr` on each support set
    (all tasks at once, with the library's inner loop)."""
    losses = task_losses(net, {}, mse)
    opt = InnerSGD(lr)
    fast = {k: v.detach().clone().requires_grad_(True) for k, v in stack(dict(net.named_parameters()), len(batch)).items()}
    state = opt.init(fast)
    curve = []
    for step in range(max_steps + 1):
        with torch.no_grad():
            curve.append(float(losses(fast, *batch.query).mean()))
        if step < max_steps:
            fast, state = inner_loop(losses, fast, opt, state, [batch.support], 1, graph="none")
    return curve
