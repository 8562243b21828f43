"""Meta-gradients computed by learn2learn (`engine=learn2learn`): an adapter with a narrow interface.

piaa's own engine differentiates a batched functional inner loop (`piaa.meta.core`); this one hands
the same module to learn2learn's `MAML` (or `MetaSGD` when the inner step sizes are meta-learned)
and lets its `clone()`/`adapt()` build the graph, task by task. It lets people who know learn2learn
run piaa's meta-training on it, and it is an independent check of piaa's gradients.

`Learn2LearnMetaGradient` is the adapter: module, parameters, support/query tensors, inner step
size, steps and order in; meta-gradients out. `build` turns a piaa MAML / first-order MAML /
Meta-SGD algorithm into an engine function, registered as `engine=learn2learn` when this module is
imported. learn2learn is optional (vision venv, `make install-learn2learn`, docs/learn2learn.md) and
only imported when the engine is built.
"""

from __future__ import annotations

import copy
from typing import Callable, Mapping

import torch

from piaa.errors import ConfigError
from piaa.learn2learn_import import import_learn2learn
from piaa.meta.core import Loss, Meta, MetaStep, Params, TaskBatch, weighted_mse
from piaa.meta.engines import register_engine
from piaa.meta.inner import InnerSGD
from piaa.meta.maml import MAML
from piaa.meta.metasgd import MetaSGD

ORDERS = ("second", "first")  # learn2learn's MAML/MetaSGD differentiate SGD steps, first or second order


class Learn2LearnMetaGradient:
    """Mean meta-gradient over tasks through `l2l.algorithms.MAML`, or `MetaSGD` when `lrs` are given.

    Works on a private copy of `module` (the caller's module and its `.grad`s are left alone).
    """

    def __init__(self, module: torch.nn.Module, *, lr: float, steps: int, order: str = "second", loss: Loss = weighted_mse):
        if order not in ORDERS:
            raise ConfigError(f"engine=learn2learn supports order {' or '.join(ORDERS)}, got {order!r}")
        if steps < 1:
            raise ConfigError(f"engine=learn2learn needs at least 1 inner step, got {steps}")
        self.l2l = import_learn2learn("engine=learn2learn")
        self.module, self.lr, self.steps, self.order, self.loss = module, float(lr), int(steps), order, loss
        self._work: torch.nn.Module | None = None

    def _working_module(self, params: Mapping[str, torch.Tensor], buffers: Mapping[str, torch.Tensor]) -> torch.nn.Module:
        if self._work is None:
            self._work = copy.deepcopy(self.module)
        work = self._work
        own = dict(work.named_parameters())
        missing = set(own) - set(params)
        if missing:
            raise ValueError(f"parameters lack {sorted(missing)}")
        with torch.no_grad():
            for name, p in own.items():
                p.copy_(params[name])
                p.grad = None
            for name, b in work.named_buffers():
                if name in buffers:
                    b.copy_(buffers[name])
        work.train(self.module.training)
        return work

    def __call__(
        self,
        params: Mapping[str, torch.Tensor],
        buffers: Mapping[str, torch.Tensor],
        support: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        query: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        lrs: Mapping[str, torch.Tensor] | None = None,
    ) -> tuple[Params, Params | None, torch.Tensor]:
        """(gradients of `params`, gradients of `lrs` or None, mean query loss as a 0-d tensor).

        `support` and `query` are (x, y, w) with a leading task axis; w = 0 marks padding rows.
        """
        work = self._working_module(params, buffers)
        names = [name for name, _ in work.named_parameters()]
        first_order = self.order == "first"
        algorithms = self.l2l.algorithms
        if lrs is not None:
            learner = algorithms.MetaSGD(work, lr=self.lr, first_order=first_order)
            with torch.no_grad():
                for name, lr in zip(names, learner.lrs):
                    lr.copy_(lrs[name])
                    lr.grad = None
        else:
            learner = algorithms.MAML(work, lr=self.lr, first_order=first_order)
        (xs, ys, ws), (xq, yq, wq) = support, query
        n = xs.shape[0]
        total = torch.zeros((), dtype=xs.dtype)
        for i in range(n):
            task = learner.clone()
            for _ in range(self.steps):
                task.adapt(self.loss(task(xs[i]), ys[i], ws[i]))
            query_loss = self.loss(task(xq[i]), yq[i], wq[i])
            (query_loss / n).backward()
            total = total + query_loss.detach()
        grads = {}
        for name, p in work.named_parameters():
            grads[name] = p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
            p.grad = None
        lr_grads = None
        if lrs is not None:
            lr_grads = {name: lr.grad.detach().clone() if lr.grad is not None else torch.zeros_like(lr) for name, lr in zip(names, learner.lrs)}
        return grads, lr_grads, total / n


def build(algorithm) -> Callable[[Meta, Params, TaskBatch, "dict | None"], MetaStep]:
    """The learn2learn engine for a MAML, first-order MAML or Meta-SGD algorithm (SGD inner loop, all
    parameters adapted); anything else is refused with a ValueError naming what learn2learn lacks."""
    if type(algorithm) not in (MAML, MetaSGD):  # subclasses (ANIL) change what the inner loop adapts
        raise ValueError(f"engine=learn2learn runs MAML, first-order MAML and Meta-SGD, not {type(algorithm).__name__}")
    if not isinstance(algorithm.inner, InnerSGD):
        raise ValueError("engine=learn2learn adapts with plain SGD: use an SGD inner optimiser")
    if algorithm.adapt is not None:
        raise ValueError("engine=learn2learn adapts every parameter: it cannot restrict the inner loop to some (ANIL)")
    adapter = Learn2LearnMetaGradient(algorithm.module, lr=algorithm.inner.lr, steps=algorithm.steps,
                                      order="first" if algorithm.first_order else "second", loss=algorithm.loss)

    def meta_gradient(meta: Meta, buffers: Params, batch: TaskBatch, inner_state: dict | None = None) -> MetaStep:
        grads, lr_grads, query_loss = adapter(meta["params"], buffers, batch.support, batch.query, meta.get("lrs"))
        out: Meta = {"params": grads}
        if lr_grads is not None:
            out["lrs"] = lr_grads
        return MetaStep(out, query_loss, None)

    return meta_gradient


register_engine("learn2learn", build)
