"""Functional, differentiable inner-loop optimisers over parameter dicts.

Parameters are plain `{name: tensor}` dicts (stacked over tasks or not), so an update is an ordinary
tensor expression that autograd can differentiate through (second-order MAML). Adam keeps its
first and second moments as tensors in the state, so they are differentiable too (BLG-PIAA's
inner update).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import torch

from piaa.meta.core import Params


@dataclass(frozen=True)
class InnerSGD:
    """p ← p − lr·g; `lrs` (Meta-SGD) replaces the scalar with learned per-parameter step sizes."""

    lr: float

    def init(self, params: Mapping[str, torch.Tensor]) -> dict:
        return {"t": 0}

    def step(self, params: Params, grads: Params, state: dict, lrs: Params | None = None) -> tuple[Params, dict]:
        if lrs is None:  # one fused op per parameter (and per backward node)
            new = {k: torch.add(p, grads[k], alpha=-self.lr) for k, p in params.items()}
        else:
            new = {k: (torch.addcmul(p, lrs[k], grads[k], value=-1) if isinstance(lrs[k], torch.Tensor)  # one op
                       else torch.add(p, grads[k], alpha=-lrs[k])) for k, p in params.items()}
        return new, {"t": state["t"] + 1}


def _safe_sqrt(v: torch.Tensor) -> torch.Tensor:
    """sqrt with a zero (not infinite) derivative at 0, like `higher`'s masked Adam.

    Below 1e-30 the value is sqrt(1e-30) = 1e-15 (invisible next to eps) and the derivative is 0;
    one clamp instead of masks keeps the per-step op count low.
    """
    return v.clamp_min(1e-30).sqrt()


@dataclass(frozen=True)
class InnerAdam:
    """Adam as a pure function of (params, grads, state); the same formula as `higher`'s Adam."""

    lr: float
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    def init(self, params: Mapping[str, torch.Tensor]) -> dict:
        return {"t": 0, "m": {k: torch.zeros_like(p) for k, p in params.items()}, "v": {k: torch.zeros_like(p) for k, p in params.items()}}

    def step(self, params: Params, grads: Params, state: dict, lrs: Params | None = None) -> tuple[Params, dict]:
        t = state["t"] + 1
        b1, b2 = self.beta1, self.beta2
        scale = math.sqrt(1 - b2**t) / (1 - b1**t)
        m = {k: torch.lerp(state["m"][k], g, 1 - b1) for k, g in grads.items()}
        v = {k: torch.addcmul(b2 * state["v"][k], g, g, value=1 - b2) for k, g in grads.items()}
        new = {}
        for k, p in params.items():
            denom = _safe_sqrt(v[k]) + self.eps
            if lrs is None:
                new[k] = torch.addcdiv(p, m[k], denom, value=-self.lr * scale)
            else:
                new[k] = p - (lrs[k] * scale) * m[k] / denom
        return new, {"t": t, "m": m, "v": v}


InnerOptimizer = InnerSGD | InnerAdam


_FUSED_ADAM = getattr(torch, "_fused_adam_", None)  # private but stable since torch 2.4 (CPU); None: foreach path


@torch.no_grad()
def step_inplace(opt: InnerOptimizer, params: list[torch.Tensor], grads: list[torch.Tensor], state: dict, lrs: list[torch.Tensor] | None = None) -> None:
    """The same update as `opt.step`, in place with fused foreach kernels: for test-time adaptation,
    where nothing differentiates through the steps and speed matters (600 adaptations per evaluation)."""
    if isinstance(opt, InnerSGD):
        if lrs is None:
            torch._foreach_add_(params, grads, alpha=-opt.lr)
        else:
            torch._foreach_sub_(params, torch._foreach_mul(grads, lrs))
        state["t"] += 1
        return
    if "m_list" not in state:
        state["m_list"] = [torch.zeros_like(p) for p in params]
        state["v_list"] = [torch.zeros_like(p) for p in params]
    state["t"] += 1
    t, b1, b2 = state["t"], opt.beta1, opt.beta2
    m, v = state["m_list"], state["v_list"]
    if lrs is None and _FUSED_ADAM is not None and all(p.is_contiguous() for p in params):
        # torch's one-pass Adam kernel (5x fewer passes over memory). Its formula adds eps after the
        # bias correction of sqrt(v); passing eps / sqrt(1 − β2^t) makes it this optimiser's. It walks
        # raw memory, so every tensor must share its parameter's (contiguous) layout.
        grads = [g.contiguous() for g in grads]
        steps = [torch.full((), float(t), device=p.device) for p in params]  # on the parameters' device, as the kernel expects
        _FUSED_ADAM(params, grads, m, v, [], steps, lr=opt.lr, beta1=b1, beta2=b2, weight_decay=0.0,
                    eps=opt.eps / math.sqrt(1 - b2**t), amsgrad=False, maximize=False)
        return
    torch._foreach_mul_(m, b1)
    torch._foreach_add_(m, grads, alpha=1 - b1)
    torch._foreach_mul_(v, b2)
    torch._foreach_addcmul_(v, grads, grads, value=1 - b2)
    denom = torch._foreach_sqrt(v)
    torch._foreach_add_(denom, opt.eps)
    scale = math.sqrt(1 - b2**t) / (1 - b1**t)
    if lrs is None:
        torch._foreach_addcdiv_(params, m, denom, value=-opt.lr * scale)
    else:
        torch._foreach_sub_(params, torch._foreach_mul(torch._foreach_div(m, denom), [lr * scale for lr in lrs]))


def make_inner(name: str, lr: float) -> InnerOptimizer:
    if name == "sgd":
        return InnerSGD(lr)
    if name == "adam":
        return InnerAdam(lr)
    raise ValueError(f"inner optimiser must be 'sgd' or 'adam', got {name!r}")

