"""Reptile (Nichol et al., 2018) and BLG-PIAA's bi-level update (Zhu et al., IEEE TCYB 2020).

No query-loss gradient: the meta-"gradient" is θ − θ', the step that moves the prior toward the
weights adapted on the support set (and, with `query_phase`, then on the query set: BLG-PIAA).
With an outer SGD step size ε this is θ ← θ + ε(θ' − θ). The inner optimiser's state (BLG-PIAA's
Adam moments) can be carried from one meta-batch to the next: pass the previous step's
`inner_state` back in. For the score head the presets train, the inner loop runs in closed form
(`piaa.meta.closed_form`, in place, same numbers); `closed_form=False` forces autograd.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from piaa.meta.core import Loss, Meta, MetaStep, Params, TaskBatch, check_functional, inner_loop, layout_of, task_losses, weighted_mse
from piaa.meta.closed_form import HeadPlan, adapt_in_place, fast_weights, plan_for, query_pass
from piaa.meta.inner import InnerOptimizer


@dataclass
class Reptile:
    module: torch.nn.Module
    inner: InnerOptimizer
    steps: int
    query_phase: bool = False
    loss: Loss = weighted_mse
    closed_form: bool = True  # use piaa.meta.closed_form where it applies (False: always autograd)

    def __post_init__(self) -> None:
        check_functional(self.module)

    def init_meta(self, params: Params) -> Meta:
        return {"params": dict(params)}

    def closed_form_plan(self, meta: Meta) -> HeadPlan | None:
        """How `piaa.meta.closed_form` runs this inner loop, or None where autograd does."""
        return plan_for(self.module, self.loss, self.inner) if self.closed_form else None

    def meta_gradient(self, meta: Meta, buffers: Params, batch: TaskBatch, inner_state: dict | None = None) -> MetaStep:
        """θ − mean θ' over the batch; the returned inner state is the tasks' mean final state."""
        params = meta["params"]
        n = len(batch)
        layout = layout_of(self.module)
        state = inner_state if inner_state is not None else self.inner.init(params)
        state = {k: ({m: t.expand(n, *t.shape) for m, t in layout.to_layout({m: t.detach() for m, t in v.items()}).items()}
                     if isinstance(v, dict) else v) for k, v in state.items()}
        phases = [batch.support] + ([batch.query] if self.query_phase else [])
        plan = self.closed_form_plan(meta)
        if plan is not None:
            fast = fast_weights(layout, params, n)
            state = adapt_in_place(plan, fast, buffers, phases, self.inner, state, self.steps)
            _, qloss = query_pass(plan, fast, buffers, batch, gradient=False)
        else:
            losses = task_losses(self.module, buffers, self.loss, layout=layout)
            fast = {k: v.detach().clone().requires_grad_(True) for k, v in layout.stack(params, n).items()}
            fast, state = inner_loop(losses, fast, self.inner, state, phases, self.steps, graph="none")
            with torch.no_grad():
                qloss = losses(fast, *batch.query).mean()
        adapted = layout.from_layout({k: v.detach() for k, v in fast.items()})
        grads = {k: (params[k].detach() - adapted[k]).mean(0) for k in params}
        end = {k: ({m: t.contiguous() for m, t in layout.from_layout({m: t.mean(0) for m, t in v.items()}).items()}
                   if isinstance(v, dict) else v) for k, v in state.items()}
        return MetaStep({"params": grads}, qloss, end)
