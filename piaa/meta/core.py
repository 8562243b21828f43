"""The functional core every meta-learning algorithm is written in.

Parameters are plain `{name: tensor}` dicts. A meta-batch of tasks is adapted at once: each task's
copy of the adapted parameters is stacked along a leading task axis, the module's forward pass is
mapped over tasks with `vmap`, and inner gradients come from ordinary autograd on the sum of the
per-task losses (tasks are independent, so that sum's gradient is every task's own gradient). One
autograd graph for the whole meta-batch; `create_graph` keeps it differentiable for second-order
meta-gradients.

The meta-parameters (`Meta`) are groups of parameter dicts: ``params`` (the module's weights) and,
for Meta-SGD, ``lrs`` (learned per-parameter inner step sizes). An algorithm maps
(meta, buffers, task batch, inner state) to a `MetaStep`: that one function is what an engine
replaces or a distributed all-reduce wraps.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Protocol

import torch
from torch import nn
from torch.func import functional_call, vmap

Params = dict[str, torch.Tensor]
Meta = dict[str, Params]  # group ("params", "lrs") -> parameter dict
Loss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # (pred, y, w) -> scalar per task


def weighted_mse(pred: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the rows with weight > 0 (padding rows carry weight 0).

    Reduces the last axis only, so it also takes a leading task axis (one loss per task).
    """
    return (w * (pred - y) ** 2).sum(-1) / w.sum(-1).clamp_min(1e-12)


weighted_mse.batched = True  # type: ignore[attr-defined]  # see task_losses
weighted_mse.squared_error = True  # type: ignore[attr-defined]  # Σ w (pred − y)² / Σ w: piaa.meta.closed_form may take it


@dataclass(frozen=True)
class TaskBatch:
    """Support (xs, ys) and query (xq, yq) sets of several tasks, task axis first.

    Weights `ws`/`wq` (1 = real row, 0 = padding) let tasks of different sizes share one shape;
    omitted, every row counts.
    """

    xs: torch.Tensor
    ys: torch.Tensor
    xq: torch.Tensor
    yq: torch.Tensor
    ws: torch.Tensor | None = None
    wq: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.ws is None:
            object.__setattr__(self, "ws", torch.ones(self.ys.shape[:2], dtype=self.ys.dtype))
        if self.wq is None:
            object.__setattr__(self, "wq", torch.ones(self.yq.shape[:2], dtype=self.yq.dtype))

    def __len__(self) -> int:
        return int(self.xs.shape[0])

    @property
    def support(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.xs, self.ys, self.ws

    @property
    def query(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.xq, self.yq, self.wq

    def select(self, rows: slice | torch.Tensor) -> "TaskBatch":
        """The tasks at `rows` (e.g. one rank's share of a meta-batch)."""
        return TaskBatch(self.xs[rows], self.ys[rows], self.xq[rows], self.yq[rows], self.ws[rows], self.wq[rows])


@dataclass
class MetaStep:
    """One meta-batch's result: the mean meta-gradient (same groups as the meta-parameters), the mean
    query loss after adaptation, and the inner optimiser state to carry on (None: nothing carried)."""

    grads: Meta
    query_loss: torch.Tensor
    inner_state: dict | None = None


class Algorithm(Protocol):
    """What the training loop needs from a meta-learning algorithm."""

    def init_meta(self, params: Params) -> Meta: ...

    def meta_gradient(self, meta: Meta, buffers: Params, batch: TaskBatch, inner_state: dict | None = None) -> MetaStep: ...


def task_losses(module: torch.nn.Module, buffers: Mapping[str, torch.Tensor], loss: Loss = weighted_mse, shared: Params | None = None,
                layout: "Layout | None" = None):
    """losses(stacked_params, x, y, w) -> one loss per task, the module mapped over the task axis.

    `shared` parameters (not adapted, e.g. ANIL's body) are the same for every task. Modules made of
    the layers `stacked_forward` knows run as batched matrix products over the task axis (no `vmap`
    around the forward pass, whose per-op overhead dominates small models); any other module is
    mapped with `vmap(functional_call)`. Both give the same numbers. A loss marked `batched = True`
    accepts a leading task axis itself (like `weighted_mse`); any other is mapped with `vmap`.
    With a `layout`, stacked parameters are in that layout (`Layout.stack`), not the module's.
    """
    fixed = {**buffers, **(shared or {})}
    fast = _forward(module, layout)
    per_task_loss = loss if getattr(loss, "batched", False) else vmap(loss)
    if fast is not None:
        if not fixed:
            return lambda p, x, y, w: per_task_loss(fast(p, x), y, w)

        def batched(p: Params, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            return per_task_loss(fast({**fixed, **p}, x), y, w)

        return batched
    if layout is not None and layout.keys:
        raise ValueError("a Layout with matmul keys needs a module that stacked_forward runs")

    def one(p: Params, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return loss(functional_call(module, {**fixed, **p}, (x,)), y, w)

    return vmap(one, randomness="different")


def _forward(module: nn.Module, layout: "Layout | None") -> "Forward | None":
    cache = _FORWARD_CACHE.setdefault(module, {})
    key = None if layout is None else layout.keys
    if key not in cache:
        cache[key] = stacked_forward(module, fast=key or frozenset())
    return cache[key]


class Layout:
    """Where an inner loop keeps the stacked (per-task) weights of the Linear layers `stacked_forward`
    runs: weight as [tasks, in, out] and bias as [tasks, 1, out], the operands `baddbmm` takes, so no
    forward pass transposes or reshapes a parameter (each such view is one more autograd node per
    layer, per step, in forward, backward and double backward). Conversion happens once per
    meta-batch, at the boundary; meta-parameters, checkpoints and gradients stay in the module's
    layout. Parameters of other layers are stacked as `stack` does.
    """

    def __init__(self, module: nn.Module):
        weights, biases = _matmul_linears(module) if stacked_forward(module) is not None else ((), ())
        self.weights, self.biases = frozenset(weights), frozenset(biases)
        self.keys = self.weights | self.biases

    def stack(self, params: Params, n: int) -> Params:
        """`n` copies of each parameter along a leading task axis, in this layout (views, no copy)."""
        out = {}
        for k, p in params.items():
            if k in self.weights:
                out[k] = p.t().expand(n, p.shape[1], p.shape[0])
            elif k in self.biases:
                out[k] = p.expand(n, 1, p.shape[0])
            else:
                out[k] = p.expand(n, *p.shape)
        return out

    def to_layout(self, params: Params) -> Params:
        """Tensors shaped like the parameters (any leading axes; e.g. Meta-SGD step sizes, Adam
        moments) in this layout."""
        return {k: (v.transpose(-1, -2) if k in self.weights else v.unsqueeze(-2) if k in self.biases else v) for k, v in params.items()}

    def from_layout(self, params: Params) -> Params:
        """The inverse of `to_layout`: back to the module's shapes."""
        return {k: (v.transpose(-1, -2) if k in self.weights else v.squeeze(-2) if k in self.biases else v) for k, v in params.items()}


def layout_of(module: nn.Module) -> Layout:
    """The module's `Layout`, built once per module (like its stacked forward)."""
    if module not in _LAYOUT_CACHE:
        _LAYOUT_CACHE[module] = Layout(module)
    return _LAYOUT_CACHE[module]


def _matmul_linears(module: nn.Module, prefix: str = "") -> tuple[list[str], list[str]]:
    """Weight and bias names of the Linear layers `stacked_forward` runs as batched matmuls: reached
    through Sequential, or through a module with its own `stacked_forward` that declares
    ``stacked_forward_via_rule = True`` (its parameters reach the forward only through `rule`)."""
    if hasattr(module, "stacked_forward"):  # checked first, as `stacked_forward` does
        if not getattr(module, "stacked_forward_via_rule", False):
            return [], []
    elif isinstance(module, nn.Linear):
        return [prefix + "weight"], ([prefix + "bias"] if module.bias is not None else [])
    elif not isinstance(module, nn.Sequential):
        return [], []
    weights, biases = [], []
    for name, sub in module.named_children():
        w, b = _matmul_linears(sub, f"{prefix}{name}.")
        weights += w
        biases += b
    return weights, biases


# Layers applied element-wise (or row-wise): the same call works on a leading task axis.
ELEMENTWISE = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.Softplus, nn.GELU, nn.LeakyReLU, nn.ELU, nn.SiLU, nn.Identity, nn.Dropout)
_FORWARD_CACHE: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()  # module -> layout keys -> forward
_LAYOUT_CACHE: "weakref.WeakKeyDictionary[nn.Module, Layout]" = weakref.WeakKeyDictionary()
_DIRECT = {nn.ReLU: torch.relu, nn.Tanh: torch.tanh, nn.Sigmoid: torch.sigmoid, nn.Identity: lambda x: x}
Forward = Callable[[Params, torch.Tensor], torch.Tensor]


def stacked_forward(module: nn.Module, prefix: str = "", fast: frozenset = frozenset()) -> Forward | None:
    """forward(params, x) over a leading task axis for Linear / Sequential / element-wise layers, or
    for a module defining `stacked_forward(params, x, prefix, rule)`; None for anything else.

    Parameters may be stacked (task axis first: batched matmul) or shared (plain weight: broadcast).
    Stacked parameters named in `fast` are in `Layout`'s matmul layout.
    """
    if hasattr(module, "stacked_forward"):
        built: dict[tuple[int, str], Forward | None] = {}

        def rule(sub: nn.Module, sub_prefix: str) -> Forward | None:  # built once per submodule, not per call
            if (id(sub), sub_prefix) not in built:
                built[id(sub), sub_prefix] = stacked_forward(sub, sub_prefix, fast)
            return built[id(sub), sub_prefix]

        return lambda p, x: module.stacked_forward(p, x, prefix, rule)
    if isinstance(module, nn.Linear):
        w_key, b_key = prefix + "weight", prefix + "bias"
        has_bias = module.bias is not None
        if w_key in fast or b_key in fast:
            def matmul_linear(p: Params, x: torch.Tensor) -> torch.Tensor:
                w, b = p[w_key], (p[b_key] if has_bias else None)
                if w.dim() == 2:  # shared weight (ANIL's body); bias shared too, or stacked [tasks, 1, out]
                    return torch.nn.functional.linear(x, w, b) if b is None or b.dim() == 1 else torch.matmul(x, w.t()) + b
                if b is None:
                    return torch.bmm(x, w)
                return torch.baddbmm(b, x, w)

            return matmul_linear

        def linear(p: Params, x: torch.Tensor) -> torch.Tensor:
            w, b = p[w_key], (p[b_key] if has_bias else None)
            if w.dim() == 2:  # shared by every task
                return torch.nn.functional.linear(x, w, b)
            if x.dim() != 3:
                raise ValueError(f"{prefix}weight is stacked over tasks; inputs must be (tasks, rows, features), got {tuple(x.shape)}")
            if b is None:
                return torch.bmm(x, w.transpose(1, 2))
            return torch.baddbmm(b.unsqueeze(1) if b.dim() == 2 else b, x, w.transpose(1, 2))

        return linear
    if isinstance(module, nn.Sequential):
        parts = [stacked_forward(sub, f"{prefix}{name}.", fast) for name, sub in module.named_children()]
        if any(f is None for f in parts):
            return None

        def sequential(p: Params, x: torch.Tensor) -> torch.Tensor:
            for f in parts:
                x = f(p, x)
            return x

        return sequential
    if isinstance(module, ELEMENTWISE):
        direct = _DIRECT.get(type(module), module.forward)  # skip Module.__call__'s hook machinery
        return lambda p, x: direct(x)
    return None


def stack(params: Params, n: int) -> Params:
    """`n` copies of each parameter along a new leading task axis (a view, no copy)."""
    return {k: p.expand(n, *p.shape) for k, p in params.items()}


GRAPHS = ("second", "first", "none")


def inner_loop(
    losses: Callable[..., torch.Tensor],
    params: Params,
    opt: Any,
    state: dict,
    phases: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    steps: int,
    *,
    graph: str,
    lrs: Params | None = None,
) -> tuple[Params, dict]:
    """`steps` inner-optimiser steps on each phase's (x, y, w) in turn, for all tasks at once.

    `params` are stacked (task axis first) and must require grad. `graph` says what stays
    differentiable: ``second`` the whole inner loop (MAML); ``first`` only the path through the
    parameters themselves, inner gradients being constants (first-order MAML); ``none`` nothing, the
    graph is cut after every step (Reptile, test-time adaptation).
    """
    if graph not in GRAPHS:
        raise ValueError(f"graph must be one of {GRAPHS}, got {graph!r}")
    names = list(params)
    create, retain = graph == "second", graph != "none"
    ones = None  # d(sum of task losses)/d(each task's loss), without a sum node in the graph
    for x, y, w in phases:
        for _ in range(steps):
            per_task = losses(params, x, y, w)
            if ones is None:
                ones = torch.ones_like(per_task)
            g = torch.autograd.grad(per_task, [params[k] for k in names], ones, create_graph=create, retain_graph=retain)
            if graph == "first":
                g = [d.detach() for d in g]
            params, state = opt.step(params, dict(zip(names, g)), state, lrs)
            if graph == "none":
                params = {k: v.detach().requires_grad_(True) for k, v in params.items()}
                state = detach_state(state)
    return params, state


def detach_state(state: dict) -> dict:
    return {k: ({n: t.detach() for n, t in v.items()} if isinstance(v, dict) else v) for k, v in state.items()}


def leaves(meta: Meta, requires_grad: bool = True) -> Meta:
    """Fresh autograd leaves for every meta-parameter (gradients are taken with respect to these)."""
    return {g: {k: v.detach().requires_grad_(requires_grad) for k, v in p.items()} for g, p in meta.items()}


def clone(meta: Meta) -> Meta:
    return {g: {k: v.detach().clone() for k, v in p.items()} for g, p in meta.items()}


def flatten(tree: Mapping[str, Any], sep: str = "/") -> dict[str, torch.Tensor]:
    """Nested dicts of tensors as one flat dict with 'a/b/c' keys (checkpoints, torch.optim, safetensors)."""
    out: dict[str, torch.Tensor] = {}
    for k, v in tree.items():
        if sep in k:
            raise ValueError(f"key {k!r} contains {sep!r}")
        if isinstance(v, Mapping):
            out.update({f"{k}{sep}{kk}": vv for kk, vv in flatten(v, sep).items()})
        else:
            out[k] = v
    return out


def unflatten(flat: Mapping[str, Any], sep: str = "/") -> dict[str, Any]:
    """The inverse of `flatten`."""
    tree: dict[str, Any] = {}
    for key, v in flat.items():
        *path, leaf = key.split(sep)
        node = tree
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = v
    return tree


def check_functional(module: torch.nn.Module) -> None:
    """Refuse modules whose forward would update running statistics (BatchNorm) inside an inner loop."""
    for name, sub in module.named_modules():
        if getattr(sub, "track_running_stats", False):
            raise ValueError(
                f"module {name or type(module).__name__} ({type(sub).__name__}) tracks running statistics; "
                "use track_running_stats=False, GroupNorm or LayerNorm inside meta-learned models"
            )


def zeros_like(meta: Meta) -> Meta:
    return {g: {k: torch.zeros_like(v) for k, v in p.items()} for g, p in meta.items()}

