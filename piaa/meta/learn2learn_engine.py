"""Meta-gradients computed by learn2learn (`engine=learn2learn`): an adapter with a narrow interface.

piaa's own engines differentiate a functional inner loop written with torch.func; this one hands the
same head to learn2learn's `MAML` (or `MetaSGD` when the inner step sizes are meta-learned) and lets
its `clone()`/`adapt()` build the graph, rater by rater. It exists so that people who know
learn2learn can run piaa's meta-training on it, and as an independent check of piaa's gradients.

learn2learn is optional: it lives in the vision venv (`make install-learn2learn`, see
docs/learn2learn.md) because its import needs torchvision. Nothing here imports it at module load.
"""

from __future__ import annotations

import copy
from typing import Mapping

import torch

from piaa.errors import ConfigError
from piaa.learn2learn_import import import_learn2learn
from piaa.meta.inner import weighted_mse

Params = dict[str, torch.Tensor]
ORDERS = ("second", "first")  # learn2learn's MAML/MetaSGD differentiate SGD steps, first or second order


class Learn2LearnMetaGradient:
    """Mean meta-gradient over a batch of raters through `l2l.algorithms.MAML` / `MetaSGD`.

    Given the head module, its meta-parameters and buffers, and a task batch (stacked support
    ``xs, ys, ws`` and query ``xq, yq, wq`` with a leading rater axis), returns gradients keyed like
    the meta-parameters. `lrs` (Meta-SGD) are per-parameter inner step sizes keyed by parameter name;
    their gradients come back under `lr_prefix + name`.
    """

    def __init__(self, module: torch.nn.Module, *, lr: float, steps: int, order: str = "second", lr_prefix: str = "inner_lr."):
        if order not in ORDERS:
            raise ConfigError(f"engine=learn2learn supports order {' or '.join(ORDERS)}, got {order!r}")
        if steps < 1:
            raise ConfigError(f"engine=learn2learn needs at least 1 inner step, got {steps}")
        self.l2l = import_learn2learn("engine=learn2learn")
        self.module, self.lr, self.steps, self.order, self.lr_prefix = module, float(lr), int(steps), order, lr_prefix
        self._work: torch.nn.Module | None = None  # a private copy of the module that learn2learn wraps

    def _working_module(self, params: Mapping[str, torch.Tensor], buffers: Mapping[str, torch.Tensor]) -> torch.nn.Module:
        if self._work is None:
            self._work = copy.deepcopy(self.module)
        work = self._work
        own = dict(work.named_parameters())
        missing = set(own) - set(params)
        if missing:
            raise ValueError(f"meta-parameters lack {sorted(missing)}")
        with torch.no_grad():
            for name, p in own.items():
                p.copy_(params[name])
                p.grad = None
            for name, b in work.named_buffers():
                if name in buffers:
                    b.copy_(buffers[name])
        work.train(self.module.training)
        return work

    def __call__(self, meta: Mapping[str, torch.Tensor], buffers: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]) -> tuple[Params, float]:
        """(meta-gradients, mean query loss) for one batch of raters."""
        params = {k: v for k, v in meta.items() if not k.startswith(self.lr_prefix)}
        lrs = {k[len(self.lr_prefix):]: v for k, v in meta.items() if k.startswith(self.lr_prefix)}
        work = self._working_module(params, buffers)
        names = [name for name, _ in work.named_parameters()]
        first_order = self.order == "first"
        algorithms = self.l2l.algorithms
        if lrs:
            learner = algorithms.MetaSGD(work, lr=self.lr, first_order=first_order)
            with torch.no_grad():
                for name, lr in zip(names, learner.lrs):
                    lr.copy_(lrs[name])
                    lr.grad = None
        else:
            learner = algorithms.MAML(work, lr=self.lr, first_order=first_order)
        n = batch["xs"].shape[0]
        losses = []
        for i in range(n):
            task = learner.clone()
            for _ in range(self.steps):
                task.adapt(weighted_mse(task(batch["xs"][i]), batch["ys"][i], batch["ws"][i]))
            query = weighted_mse(task(batch["xq"][i]), batch["yq"][i], batch["wq"][i])
            (query / n).backward()
            losses.append(float(query.detach()))
        grads: Params = {}
        for name, p in work.named_parameters():
            grads[name] = p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
            p.grad = None
        if lrs:
            for name, lr in zip(names, learner.lrs):
                grads[self.lr_prefix + name] = lr.grad.detach().clone() if lr.grad is not None else torch.zeros_like(lr)
        return grads, sum(losses) / n
