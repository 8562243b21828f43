"""One fixed meta-gradient problem per order, shared by the torchrun worker and the test."""

from __future__ import annotations

import torch

from piaa import distributed
from piaa.meta.inner import make_inner
from piaa.meta.model import ScoreHead
from piaa.meta.outer import MetaGradient

N_RATERS, SHOTS, QUERY, DIM = 5, 6, 7, 4  # 5 raters: an uneven split (3 + 2) over two ranks
# name: (order, inner optimiser, inner lr, carried inner state)
CASES = {
    "second": ("second", "sgd", 0.1, False),
    "first": ("first", "sgd", 0.1, False),
    "reptile": ("reptile", "adam", 0.01, True),
}


def problem() -> tuple[ScoreHead, dict, dict, dict]:
    gen = torch.Generator().manual_seed(7)
    torch.manual_seed(7)
    module = ScoreHead(DIM, (8,), dropout=0.0)
    meta = {k: v.detach().clone() for k, v in module.named_parameters()}
    buffers = {k: v.detach().clone() for k, v in module.named_buffers()}
    batch = {
        "xs": torch.randn(N_RATERS, SHOTS, DIM, generator=gen), "ys": torch.rand(N_RATERS, SHOTS, generator=gen),
        "ws": torch.ones(N_RATERS, SHOTS),
        "xq": torch.randn(N_RATERS, QUERY, DIM, generator=gen), "yq": torch.rand(N_RATERS, QUERY, generator=gen),
        "wq": torch.ones(N_RATERS, QUERY),
    }
    batch["ws"][0, -2:] = 0  # a padded rater
    return module, meta, buffers, batch


def meta_gradient(name: str, group: distributed.Group) -> dict[str, torch.Tensor]:
    order, inner, lr, carry = CASES[name]
    module, meta, buffers, batch = problem()
    fn = MetaGradient(module, make_inner(inner, lr), steps=3, order=order, query_phase=order == "reptile")
    state0 = None
    if carry:  # BLG-PIAA carries Adam's moments across meta-batches: start from non-zero ones
        gen = torch.Generator().manual_seed(11)
        state0 = {"t": 4, "m": {k: 0.01 * torch.randn(v.shape, generator=gen) for k, v in meta.items()},
                  "v": {k: 0.001 * torch.rand(v.shape, generator=gen) for k, v in meta.items()}}
    grads, info = distributed.sharded(fn, group)(meta, buffers, batch, state0)
    out = {f"grad.{k}": v for k, v in grads.items()}
    out["query_loss"] = torch.tensor([info["query_loss"]], dtype=torch.float64)
    for part in ("m", "v"):
        out.update({f"state.{part}.{k}": v for k, v in info["state"].get(part, {}).items()})
    return {k: v.detach().contiguous() for k, v in out.items()}
