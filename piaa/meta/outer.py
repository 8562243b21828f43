"""Meta-gradients over a batch of raters, and the meta-optimiser that applies them.

Orders:
- ``second``: exact MAML gradient, differentiated through the inner loop (Hessian terms included).
- ``first``: first-order MAML: the query-loss gradient at the adapted parameters (inner gradients
  treated as constants).
- ``reptile``: no query-loss gradient at all; the meta-"gradient" is θ − θ', the step that moves the
  prior toward the adapted copy (BLG-PIAA's released update, with an optional second inner phase on
  the query set).

A task batch is a dict of stacked tensors ``xs, ys, ws`` (support) and ``xq, yq, wq`` (query) with a
leading rater axis; rows with weight 0 are padding so raters of different sizes share one shape.
Engines (same numbers, different speed):
- ``batched`` (default): the raters' parameters are stacked along a leading axis, the forward pass is
  mapped over raters with `vmap`, and gradients come from ordinary autograd (`create_graph` for the
  second order). One autograd graph for the whole meta-batch, no nested functorch transforms.
- ``vmap``: the per-rater function (inner loop with `torch.func.grad`) mapped with `vmap`.
- ``loop``: the same per-rater function called rater by rater.
- ``learn2learn``: learn2learn's ``MAML``/``MetaSGD`` (SGD inner loop, second or first order), through
  the adapter in `piaa.meta.learn2learn_engine`; needs learn2learn installed (docs/learn2learn.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torch.func import functional_call, grad_and_value, vmap

from piaa.meta.inner import InnerOptimizer, InnerSGD, Params, inner_loop, make_loss

ORDERS = ("second", "first", "reptile")
ENGINES = ("batched", "vmap", "loop", "learn2learn")
LR_PREFIX = "inner_lr."  # meta-parameters holding Meta-SGD's learned per-parameter step sizes


def split_meta(meta: Mapping[str, torch.Tensor]) -> tuple[Params, Params | None]:
    """Model parameters and (Meta-SGD) learned inner step sizes from one flat meta-parameter dict."""
    params = {k: v for k, v in meta.items() if not k.startswith(LR_PREFIX)}
    lrs = {k[len(LR_PREFIX):]: v for k, v in meta.items() if k.startswith(LR_PREFIX)}
    return params, (lrs or None)


@dataclass
class MetaGradient:
    """Computes per-batch meta-gradients for one module, inner optimiser and order."""

    module: torch.nn.Module
    inner: InnerOptimizer
    steps: int
    order: str = "second"
    query_phase: bool = False  # reptile only: also take `steps` inner steps on the query set
    engine: str = "batched"  # batched | vmap | loop | learn2learn
    _adapter: Any = field(default=None, init=False, repr=False)  # the learn2learn engine, when chosen

    def __post_init__(self) -> None:
        if self.order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {self.order!r}")
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {self.engine!r}")
        check_functional(self.module)
        if self.engine == "learn2learn":
            from piaa.meta.learn2learn_engine import Learn2LearnMetaGradient

            if not isinstance(self.inner, InnerSGD):
                raise ValueError("engine=learn2learn adapts with plain SGD: use an SGD inner optimiser")
            self._adapter = Learn2LearnMetaGradient(self.module, lr=self.inner.lr, steps=self.steps, order=self.order, lr_prefix=LR_PREFIX)

    # -- per-rater functions (pure) ---------------------------------------------------------------
    def _query_loss(self, meta: Params, buffers: Params, state0: dict, xs, ys, ws, xq, yq, wq) -> torch.Tensor:
        params, lrs = split_meta(meta)
        loss = make_loss(self.module, buffers)
        adapted, _ = inner_loop(loss, params, self.inner, state0, [(xs, ys, ws)], self.steps, first_order=self.order == "first", lrs=lrs)
        return loss(adapted, xq, yq, wq)

    def _adapted(self, meta: Params, buffers: Params, state0: dict, xs, ys, ws, xq, yq, wq):
        params, lrs = split_meta(meta)
        loss = make_loss(self.module, buffers)
        phases = [(xs, ys, ws)] + ([(xq, yq, wq)] if self.query_phase else [])
        adapted, state = inner_loop(loss, params, self.inner, state0, phases, self.steps, first_order=True, lrs=lrs)
        moments = (state["m"], state["v"]) if "m" in state else ({}, {})
        return {k: v.detach() for k, v in adapted.items()}, moments, loss(adapted, xq, yq, wq).detach()

    # -- batch ------------------------------------------------------------------------------------
    def __call__(self, meta: Params, buffers: Params, batch: Mapping[str, torch.Tensor], state0: dict | None = None) -> tuple[Params, dict]:
        """Mean meta-gradient over the batch's raters, plus info (query loss, final inner moments).

        `state0` is the inner optimiser's starting state (fresh when None; BLG-PIAA carries it).
        """
        if state0 is None:
            state0 = self.inner.init(split_meta(meta)[0])
        t0 = state0["t"]
        tensors = {k: v for k, v in state0.items() if k != "t"}
        keys = ("xs", "ys", "ws", "xq", "yq", "wq")
        n = batch["xs"].shape[0]

        if self.engine == "batched":
            return self._batched(meta, buffers, batch, t0, tensors)
        if self._adapter is not None:
            grads, query_loss = self._adapter(meta, buffers, batch)
            return grads, {"query_loss": query_loss, "state": {"t": t0, **tensors}}

        if self.order == "reptile":
            def one(meta_, buf_, st_, *data):
                return self._adapted(meta_, buf_, {"t": t0, **st_}, *data)

            if self.engine == "vmap":
                adapted, (m, v), qloss = vmap(one, in_dims=(None, None, None) + (0,) * 6, randomness="different")(meta, buffers, tensors, *(batch[k] for k in keys))
            else:
                outs = [one(meta, buffers, tensors, *(batch[k][i] for k in keys)) for i in range(n)]
                adapted = {k: torch.stack([o[0][k] for o in outs]) for k in outs[0][0]}
                m = {k: torch.stack([o[1][0][k] for o in outs]) for k in outs[0][1][0]}
                v = {k: torch.stack([o[1][1][k] for o in outs]) for k in outs[0][1][1]}
                qloss = torch.stack([o[2] for o in outs])
            params, _ = split_meta(meta)
            grads = {k: (params[k] - adapted[k]).mean(0) for k in params}
            grads.update({k: torch.zeros_like(p) for k, p in meta.items() if k not in grads})
            return grads, {"query_loss": float(qloss.mean()), "state": self._end_state(t0, m, v)}

        def one_loss(meta_, buf_, st_, *data):
            return self._query_loss(meta_, buf_, {"t": t0, **st_}, *data)

        if self.engine == "vmap":
            per = vmap(grad_and_value(one_loss), in_dims=(None, None, None) + (0,) * 6, randomness="different")(meta, buffers, tensors, *(batch[k] for k in keys))
            grads = {k: g.mean(0) for k, g in per[0].items()}
            qloss = per[1]
        else:
            acc: dict[str, torch.Tensor] = {}
            losses = []
            for i in range(n):
                g, l = grad_and_value(one_loss)(meta, buffers, tensors, *(batch[k][i] for k in keys))
                for k, x in g.items():
                    acc[k] = acc[k] + x if k in acc else x
                losses.append(l)
            grads = {k: x / n for k, x in acc.items()}
            qloss = torch.stack(losses)
        return grads, {"query_loss": float(qloss.mean()), "state": state0}


    def _end_state(self, t0: int, m: Params, v: Params) -> dict:
        """The inner state carried on (BLG-PIAA): step count and the raters' mean moments."""
        end_state: dict = {"t": t0 + self.steps * (2 if self.query_phase else 1)}
        if m:
            end_state.update(m={k: x.detach().mean(0) for k, x in m.items()}, v={k: x.detach().mean(0) for k, x in v.items()})
        return end_state

    def _batched(self, meta: Params, buffers: Params, batch: Mapping[str, torch.Tensor], t0: int, tensors: dict) -> tuple[Params, dict]:
        """All raters at once: stacked per-rater parameters, vmapped forward, plain autograd."""
        n = batch["xs"].shape[0]
        reptile = self.order == "reptile"
        second = self.order == "second"
        leaves = {k: v.detach().requires_grad_(not reptile) for k, v in meta.items()}
        params, lrs = split_meta(leaves)
        module = self.module

        def forward(p: Params, x: torch.Tensor) -> torch.Tensor:
            return functional_call(module, {**p, **buffers}, (x,))

        mapped = vmap(forward, randomness="different")

        def losses(p: Params, x, y, w) -> torch.Tensor:
            pred = mapped(p, x)
            return (w * (pred - y) ** 2).sum(1) / w.sum(1).clamp_min(1e-12)

        stacked = {k: p.unsqueeze(0).expand(n, *p.shape) for k, p in params.items()}
        if reptile:
            stacked = {k: v.clone().requires_grad_(True) for k, v in stacked.items()}
        state: dict = {"t": t0}
        for part in ("m", "v"):
            if part in tensors:
                state[part] = {k: x.unsqueeze(0).expand(n, *x.shape) for k, x in tensors[part].items()}
        phases = [(batch["xs"], batch["ys"], batch["ws"])]
        if reptile and self.query_phase:
            phases.append((batch["xq"], batch["yq"], batch["wq"]))
        names = list(stacked)
        for x, y, w in phases:
            for _ in range(self.steps):
                g = torch.autograd.grad(losses(stacked, x, y, w).sum(), [stacked[k] for k in names], create_graph=second)
                stacked, state = self.inner.step(stacked, dict(zip(names, g)), state, lrs)
                if reptile:
                    stacked = {k: v.detach().requires_grad_(True) for k, v in stacked.items()}
                    state = {"t": state["t"], **{p: {k: x.detach() for k, x in state[p].items()} for p in ("m", "v") if p in state}}
        qloss = losses(stacked, batch["xq"], batch["yq"], batch["wq"])
        if reptile:
            grads = {k: (params[k] - stacked[k].detach()).mean(0) for k in params}
            grads.update({k: torch.zeros_like(p) for k, p in meta.items() if k not in grads})
            return grads, {"query_loss": float(qloss.detach().mean()), "state": self._end_state(t0, state.get("m", {}), state.get("v", {}))}
        names = list(leaves)
        g = torch.autograd.grad(qloss.mean(), [leaves[k] for k in names], allow_unused=True)
        grads = {k: (gk if gk is not None else torch.zeros_like(leaves[k])) for k, gk in zip(names, g)}
        return grads, {"query_loss": float(qloss.detach().mean()), "state": {"t": t0, **tensors}}


def check_functional(module: torch.nn.Module) -> None:
    """Refuse modules whose forward would update running statistics (BatchNorm) inside an inner loop."""
    for name, sub in module.named_modules():
        if getattr(sub, "track_running_stats", False):
            raise ValueError(
                f"module {name or type(module).__name__} ({type(sub).__name__}) tracks running statistics; "
                "use track_running_stats=False, GroupNorm or LayerNorm inside meta-learned models"
            )


class OuterOptimizer:
    """Adam or SGD over a flat dict of meta-parameters; its state is tensors (checkpointable)."""

    def __init__(self, kind: str, lr: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        if kind not in ("adam", "sgd"):
            raise ValueError(f"outer optimiser must be 'adam' or 'sgd', got {kind!r}")
        self.kind, self.lr, self.beta1, self.beta2, self.eps = kind, lr, beta1, beta2, eps
        self.t = 0
        self.m: Params = {}
        self.v: Params = {}

    @torch.no_grad()
    def step(self, meta: Params, grads: Params) -> Params:
        self.t += 1
        if self.kind == "sgd":
            return {k: p - self.lr * grads[k] for k, p in meta.items()}
        b1, b2 = self.beta1, self.beta2
        out = {}
        for k, p in meta.items():
            g = grads[k]
            self.m[k] = b1 * self.m.get(k, torch.zeros_like(p)) + (1 - b1) * g
            self.v[k] = b2 * self.v.get(k, torch.zeros_like(p)) + (1 - b2) * g * g
            m_hat = self.m[k] / (1 - b1**self.t)
            v_hat = self.v[k] / (1 - b2**self.t)
            out[k] = p - self.lr * m_hat / (v_hat.sqrt() + self.eps)
        return out

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {**{f"m.{k}": v for k, v in self.m.items()}, **{f"v.{k}": v for k, v in self.v.items()}}

    def load_state_tensors(self, t: int, tensors: Mapping[str, torch.Tensor]) -> None:
        self.t = t
        self.m = {k[2:]: v.clone() for k, v in tensors.items() if k.startswith("m.")}
        self.v = {k[2:]: v.clone() for k, v in tensors.items() if k.startswith("v.")}

