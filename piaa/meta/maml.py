"""MAML (Finn et al., ICML 2017): the meta-gradient of the query loss after inner steps on the support set.

Second order differentiates through the inner loop (Hessian terms included); `first_order` treats
the inner gradients as constants (first-order MAML), so the meta-gradient is the query-loss gradient
at the adapted weights. `adapt` names the parameters the inner loop changes (all by default; ANIL
adapts only the last layer); the others are shared by every task and still get a meta-gradient.
A ``lrs`` group in the meta-parameters (Meta-SGD) replaces the scalar inner step size.
For the score head the presets train, the meta-gradient is computed in closed form
(`piaa.meta.closed_form`: same numbers, a fraction of the time); `closed_form=False` forces autograd.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Collection

import torch

from piaa.meta.core import Loss, Meta, MetaStep, Params, TaskBatch, check_functional, inner_loop, layout_of, leaves, task_losses, weighted_mse
from piaa.meta.closed_form import HeadPlan, adapt_in_place, fast_weights, maml_sgd, plan_for, query_pass
from piaa.meta.inner import InnerOptimizer, InnerSGD


@dataclass
class MAML:
    module: torch.nn.Module
    inner: InnerOptimizer
    steps: int
    first_order: bool = False
    loss: Loss = weighted_mse
    adapt: Collection[str] | None = None  # parameter names the inner loop updates (None: all)
    closed_form: bool = True  # use piaa.meta.closed_form where it applies (False: always autograd)

    def __post_init__(self) -> None:
        check_functional(self.module)

    def init_meta(self, params: Params) -> Meta:
        return {"params": dict(params)}

    def adapted_names(self, params: Params) -> list[str]:
        if self.adapt is None:
            return list(params)
        unknown = set(self.adapt) - set(params)
        if unknown:
            raise ValueError(f"adapt names parameters the module does not have: {sorted(unknown)}")
        return [k for k in params if k in self.adapt]

    def meta_gradient(self, meta: Meta, buffers: Params, batch: TaskBatch, inner_state: dict | None = None) -> MetaStep:
        """Mean meta-gradient over the batch's tasks (the inner state is not carried: None in, None out)."""
        closed = self._closed_form(meta, buffers, batch)
        if closed is not None:
            return closed
        meta = leaves(meta)
        params, lrs = meta["params"], meta.get("lrs")
        names = self.adapted_names(params)
        shared = {k: v for k, v in params.items() if k not in names}
        layout = layout_of(self.module)
        losses = task_losses(self.module, buffers, self.loss, shared, layout)
        fast = layout.stack({k: params[k] for k in names}, len(batch))
        if lrs is not None:
            lrs = layout.to_layout(lrs)
        graph = "first" if self.first_order else "second"
        fast, _ = inner_loop(losses, fast, self.inner, self.inner.init(fast), [batch.support], self.steps, graph=graph, lrs=lrs)
        qloss = losses(fast, *batch.query).mean()
        flat = [(g, k, v) for g, p in meta.items() for k, v in p.items()]
        grads = torch.autograd.grad(qloss, [v for _, _, v in flat], allow_unused=True)
        out: Meta = {g: {} for g in meta}
        for (g, k, v), d in zip(flat, grads):
            out[g][k] = d if d is not None else torch.zeros_like(v)
        return MetaStep(out, qloss.detach(), None)

    def closed_form_plan(self, meta: Meta) -> HeadPlan | None:
        """How `piaa.meta.closed_form` computes this algorithm's meta-gradient, or None where autograd
        does (second-order Adam, Meta-SGD, a partial inner loop, another module or loss, or
        ``closed_form=False``)."""
        if not self.closed_form:
            return None
        return plan_for(self.module, self.loss, self.inner, adapt=self.adapt, lrs=meta.get("lrs"), second_order=not self.first_order)

    def _closed_form(self, meta: Meta, buffers: Params, batch: TaskBatch) -> MetaStep | None:
        plan = self.closed_form_plan(meta)
        if plan is None:
            return None
        params = {k: v.detach() for k, v in meta["params"].items()}
        if isinstance(self.inner, InnerSGD):
            grads, qloss = maml_sgd(plan, params, buffers, batch, self.inner.lr, self.steps, self.first_order)
        else:
            fast = fast_weights(layout_of(self.module), params, len(batch))
            adapt_in_place(plan, fast, buffers, [batch.support], self.inner, self.inner.init(fast), self.steps)
            grads, qloss = query_pass(plan, fast, buffers, batch, gradient=True)
        return MetaStep({"params": grads}, qloss, None)
