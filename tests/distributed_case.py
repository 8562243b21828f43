"""One fixed meta-gradient problem per order, shared by the torchrun worker and the test."""

from __future__ import annotations

import torch

from piaa import distributed
from piaa.meta.core import TaskBatch, flatten
from piaa.meta.inner import make_inner
from piaa.meta.maml import MAML
from piaa.meta.model import ScoreHead
from piaa.meta.reptile import Reptile

N_RATERS, SHOTS, QUERY, DIM = 5, 6, 7, 4  # 5 raters: an uneven split (3 + 2) over two ranks
# name: (order, inner optimiser, inner lr, carried inner state)
CASES = {
    "second": ("second", "sgd", 0.1, False),
    "first": ("first", "sgd", 0.1, False),
    "reptile": ("reptile", "adam", 0.01, True),
}


def problem() -> tuple[ScoreHead, dict, dict, TaskBatch]:
    gen = torch.Generator().manual_seed(7)
    torch.manual_seed(7)
    module = ScoreHead(DIM, (8,), dropout=0.0)
    meta = {"params": {k: v.detach().clone() for k, v in module.named_parameters()}}
    buffers = {k: v.detach().clone() for k, v in module.named_buffers()}
    xs, ys = torch.randn(N_RATERS, SHOTS, DIM, generator=gen), torch.rand(N_RATERS, SHOTS, generator=gen)
    xq, yq = torch.randn(N_RATERS, QUERY, DIM, generator=gen), torch.rand(N_RATERS, QUERY, generator=gen)
    ws = torch.ones(N_RATERS, SHOTS)
    ws[0, -2:] = 0  # a padded rater
    return module, meta, buffers, TaskBatch(xs, ys, xq, yq, ws=ws)


def meta_gradient(name: str, group: distributed.Group) -> dict[str, torch.Tensor]:
    order, inner, lr, carry = CASES[name]
    module, meta, buffers, batch = problem()
    opt = make_inner(inner, lr)
    fn = Reptile(module, opt, 3, query_phase=True) if order == "reptile" else MAML(module, opt, 3, first_order=order == "first")
    state0 = None
    if carry:  # BLG-PIAA carries Adam's moments across meta-batches: start from non-zero ones
        gen = torch.Generator().manual_seed(11)
        params = meta["params"]
        state0 = {"t": 4, "m": {k: 0.01 * torch.randn(v.shape, generator=gen) for k, v in params.items()},
                  "v": {k: 0.001 * torch.rand(v.shape, generator=gen) for k, v in params.items()}}
    step = distributed.sharded(fn.meta_gradient, group)(meta, buffers, batch, state0)
    out = {f"grad.{k}": v for k, v in flatten(step.grads).items()}
    out["query_loss"] = step.query_loss.detach().reshape(1).double()
    if step.inner_state is not None:
        out.update({f"state.{k}": v for k, v in flatten({p: step.inner_state[p] for p in ("m", "v") if p in step.inner_state}).items()})
        out["state.t"] = torch.tensor([step.inner_state["t"]])
    return {k: v.detach().contiguous() for k, v in out.items()}
