"""Closed-form inner gradients and a hand-written meta-gradient for ReLU MLP regressors.

Why: on the demo shapes autograd spends most of a meta-step building, walking and double-walking
graphs of small operations. For the head every preset meta-trains (standardise, then Linear → ReLU
(→ Dropout) blocks, a Linear to one output, a sigmoid, weighted MSE), and for a plain MLP of the same
blocks with a squared-error loss (Finn et al.'s sinusoid regressor), the inner gradient has a
closed form, and so has the reverse pass of an unrolled inner loop. Writing both out lets the
engine do only the matrix products, and fewer of them:

* **The first layer's input never changes.** Its input z (the standardised features) is fixed, and an SGD step moves its weights by z^T g, so its pre-activation on rows z' moves by
  (z' z^T + 1) g: a rows × rows Gram product instead of two rows × features × width products per
  step (the `+ 1` is the bias). The adapted first-layer weights are formed once, where needed.
* **The meta-gradient's reverse pass is written by hand** (second-order MAML with SGD), so it saves
  exactly the tensors it needs and runs no graph machinery.
* Loops that need no meta-gradient through them (first-order MAML, Reptile, BLG-PIAA) update the
  weights in place (`step_inplace`: fused `_foreach` kernels, torch's fused Adam), as test-time
  adaptation does.

The engine uses this path where it applies (`plan_for`) and autograd everywhere else (other modules
and losses, Adam with second-order meta-gradients, Meta-SGD's learned step sizes, ANIL's partial
inner loop); both give the same numbers (tests/meta/test_closed_form.py checks every case against
autograd in float64). Dropout masks are drawn in the same order and shapes as the module's own
forward passes, so a seeded run draws the same masks on either path.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from piaa.meta.core import Params, TaskBatch, weighted_mse
from piaa.meta.inner import InnerAdam, InnerSGD, step_inplace


@dataclass(frozen=True)
class HeadPlan:
    """Where the module keeps what the closed form needs: Linear weight and bias names in order, the
    dropout probability after each hidden block (None: no Dropout layer), whether the module is in
    train mode (dropout active), the standardiser's buffers and the output's link."""

    weights: tuple[str, ...]
    biases: tuple[str, ...]
    dropouts: tuple[float | None, ...]
    training: bool
    standardize: tuple[str, str] | None  # the standardiser's (mean, scale) buffers; None: inputs as they are
    sigmoid: bool  # output through a sigmoid (the score head) or as it is (a plain MLP)

    @property
    def layers(self) -> int:
        return len(self.weights)


def plan_for(module: nn.Module, loss, inner, *, adapt=None, lrs=None, second_order: bool = False) -> HeadPlan | None:
    """The plan for `module` if the closed form computes exactly what autograd would, else None.

    Modules: the score head, or a plain `nn.Sequential` of Linear → ReLU (→ Dropout) blocks ending in a
    Linear with one output. Losses: one declaring ``squared_error = True``, i.e. Σ w·(pred − y)² / Σ w over
    a task's rows (`weighted_mse`, the sinusoid example's `mse`). A meta-gradient through the inner loop
    (`second_order`) is written out for SGD only.
    """
    from piaa.meta.model import ScoreHead  # noqa: PLC0415  (model imports piaa.nn only; keep core light)

    if not getattr(loss, "squared_error", False) or adapt is not None or lrs is not None:
        return None
    if not isinstance(inner, InnerSGD if second_order else (InnerSGD, InnerAdam)):
        return None
    if type(module) is ScoreHead:
        body, prefix, standardize, sigmoid = module.body, "body.", ("standardize.mean", "standardize.scale"), True
    elif type(module) is nn.Sequential:
        body, prefix, standardize, sigmoid = module, "", None, False
    else:
        return None
    weights, biases, dropouts = [], [], []
    children = list(body.named_children())
    i = 0
    while i < len(children):
        name, layer = children[i]
        if type(layer) is not nn.Linear or layer.bias is None:
            return None
        weights.append(f"{prefix}{name}.weight")
        biases.append(f"{prefix}{name}.bias")
        i += 1
        if i == len(children):
            break
        if type(children[i][1]) is not nn.ReLU:
            return None
        i += 1
        p = None
        if i < len(children) and type(children[i][1]) is nn.Dropout:
            p = float(children[i][1].p)
            i += 1
        dropouts.append(p)
    if len(weights) < 2 or body[-1].out_features != 1 or len(dropouts) != len(weights) - 1:
        return None
    return HeadPlan(tuple(weights), tuple(biases), tuple(dropouts), module.training, standardize, sigmoid)


# -- products over a leading task axis. The second operand is stacked ([tasks, k, n]) or shared by
#    every task ([k, n]: one matrix product over all rows). A product with k = 1 or n = 1 (into or out
#    of the one-unit output layer) is a broadcast multiply (and sum): cheaper than a batched gemv.

def _mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b, a: [tasks, r, k] (may be a transposed view)."""
    k, n = b.shape[-2], b.shape[-1]
    if n == 1:
        return (a * b.transpose(-1, -2)).sum(-1, keepdim=True)
    if k == 1:
        return a * b
    if b.dim() == 2:
        t, r, _ = a.shape
        return torch.mm(a.reshape(t * r, k), b).view(t, r, n)
    return torch.bmm(a, b)


def _add_mm(c: torch.Tensor, a: torch.Tensor, b: torch.Tensor, alpha: float = 1.0, inplace: bool = False, beta: float = 1.0) -> torch.Tensor:
    """beta · c + alpha · a @ b (c broadcast to the product's shape), in place into c with `inplace`."""
    if b.dim() == 3 and b.shape[-1] > 1 and b.shape[-2] > 1:
        return c.baddbmm_(a, b, beta=beta, alpha=alpha) if inplace else torch.baddbmm(c, a, b, beta=beta, alpha=alpha)
    if b.dim() == 2 and b.shape[-1] > 1 and b.shape[-2] > 1 and c.dim() <= 1 and not inplace:
        t, r, k = a.shape
        return torch.addmm(c, a.reshape(t * r, k), b, beta=beta, alpha=alpha).view(t, r, -1)
    if inplace:
        return (c if beta == 1.0 else c.mul_(beta)).add_(_mm(a, b), alpha=alpha)
    return torch.add(c if beta == 1.0 else c * beta, _mm(a, b), alpha=alpha)


def _add_tn_(c: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """c += aᵀ b per task (a: [tasks, rows, i], b: [tasks, rows, j]), in place."""
    if a.shape[-1] == 1 or b.shape[-1] == 1:
        return c.add_(_tn(a, b))
    return c.baddbmm_(a.transpose(1, 2), b)


def _linear(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return _add_mm(b.reshape(-1) if w.dim() == 2 else b, h, w)


def _tn(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """aᵀ b per task: [tasks, rows, i] × [tasks, rows, j] → [tasks, i, j]; with i or j = 1 (the output
    layer) a broadcast multiply summed over rows, read in memory order."""
    if b.shape[-1] == 1:
        return (a * b).sum(1).unsqueeze(-1)
    if a.shape[-1] == 1:
        return (a * b).sum(1, keepdim=True)
    return _mm(a.transpose(1, 2), b)


@dataclass
class _Pass:
    """One support pass at given weights: what the inner gradient and its reverse pass need."""

    hs: list[torch.Tensor]  # hidden activations h_1 .. h_{L-1}
    masks: list[torch.Tensor | None]  # d h / d a per hidden block (ReLU mask × dropout scale); None: h > 0
    p: torch.Tensor  # prediction [tasks, rows, 1]
    gs: list[torch.Tensor]  # d loss / d pre-activation of each layer (g_0 .. g_{L-1})
    dw: list[torch.Tensor | None]  # d loss / d W_l for l ≥ 1 ([tasks, in, out])
    db: list[torch.Tensor]  # d loss / d b_l ([tasks, 1, out])


def _hidden(plan: HeadPlan, a0: torch.Tensor, ws: list, bs: list) -> tuple[list, list, torch.Tensor]:
    hs, masks, a = [], [], a0
    for layer in range(1, plan.layers):
        h = torch.relu(a)
        mask = None  # ReLU alone: its derivative is h > 0, read off h where needed
        p = plan.dropouts[layer - 1]
        if p is not None and plan.training and p > 0:  # the same draw nn.Dropout makes on the activations
            mask = F.dropout(torch.sign(h), p, True, inplace=True)
            h = a * mask
        hs.append(h)
        masks.append(mask)
        a = _linear(h, ws[layer], bs[layer])
    return hs, masks, a


def _masked(x: torch.Tensor, h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """x ⊙ d h / d a: the mask (in place into x), or, for a plain ReLU, x where h > 0 (one pass)."""
    return torch.ops.aten.threshold_backward(x, h, 0.0) if mask is None else x.mul_(mask)


def _support_pass(plan: HeadPlan, a0: torch.Tensor, ws: list, bs: list, y: torch.Tensor, c: torch.Tensor) -> _Pass:
    """Forward from the first layer's pre-activation and the closed-form gradient of Σ_tasks loss.

    c = 2w / Σw per row (d loss / d prediction = c (p − y)); y and c are [tasks, rows, 1].
    """
    hs, masks, o = _hidden(plan, a0, ws, bs)
    p = _link(plan, o)
    g = _link_adjoint(plan, p, y, c)
    layers = plan.layers
    gs: list = [None] * layers
    dw: list = [None] * layers
    db: list = [None] * layers
    gs[-1] = g
    for layer in range(layers - 1, 0, -1):
        dw[layer] = _tn(hs[layer - 1], g)
        db[layer] = g.sum(1, keepdim=True)
        g = _masked(_mm(g, ws[layer].transpose(-1, -2)), hs[layer - 1], masks[layer - 1])
        gs[layer - 1] = g
    db[0] = g.sum(1, keepdim=True)
    return _Pass(hs, masks, p, gs, dw, db)


def _rows(plan: HeadPlan, batch_part: tuple[torch.Tensor, torch.Tensor, torch.Tensor], buffers: Params):
    """(z, y, c): the first layer's (standardised) inputs, targets as [tasks, rows, 1] and loss weights
    c = 2w / Σw (d loss / d prediction = c (p − y)), as the closed form uses them."""
    x, y, w = batch_part
    z = x
    if plan.standardize is not None:
        inv = 1 / buffers[plan.standardize[1]]
        z = torch.addcmul(-buffers[plan.standardize[0]] * inv, x, inv)  # (x − mean) / scale in one pass
    c = 2 * w / w.sum(-1, keepdim=True).clamp_min(1e-12)
    return z, (y if y.dim() == 3 else y.unsqueeze(-1)), c.unsqueeze(-1)


def _link(plan: HeadPlan, o: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(o) if plan.sigmoid else o


def _link_adjoint(plan: HeadPlan, p: torch.Tensor, y: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """d loss / d o from d loss / d p = c (p − y)."""
    return c * (p - y) * p * (1 - p) if plan.sigmoid else c * (p - y)


def _gram(za: torch.Tensor, zb: torch.Tensor) -> torch.Tensor:
    """za zbᵀ + 1 per task: how the first layer's pre-activation on rows za moves per unit of
    pre-activation gradient on rows zb (the 1 is the bias)."""
    return torch.bmm(za, zb.transpose(1, 2)).add_(1.0)


def _query_loss(p: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return weighted_mse(p.squeeze(-1), y.squeeze(-1), w)


def maml_sgd(plan: HeadPlan, params: Params, buffers: Params, batch: TaskBatch, lr: float, steps: int, first_order: bool) -> tuple[Params, torch.Tensor]:
    """MAML's meta-gradient (mean query loss after `steps` SGD steps on the support set) and that
    loss, with the first layer moved through Gram products and the reverse pass written out."""
    with torch.no_grad():
        return _maml_sgd(plan, params, buffers, batch, lr, steps, first_order)


def _maml_sgd(plan, params, buffers, batch, lr, steps, first_order):
    n = len(batch)
    zs, ys, cs = _rows(plan, batch.support, buffers)
    zq, yq, cq = _rows(plan, batch.query, buffers)
    w0, b0 = params[plan.weights[0]], params[plan.biases[0]]
    a_s = _linear(zs, w0.t(), b0)
    a_q0 = _linear(zq, w0.t(), b0)
    kss = _gram(zs, zs) if steps > 1 else None
    kqs = _gram(zq, zs)
    ws = [None] + [params[k].t() for k in plan.weights[1:]]  # shared [in, out] until the first step
    bs = [None] + [params[k] for k in plan.biases[1:]]
    tape, d_sum = [], None
    for step in range(steps):
        sp = _support_pass(plan, a_s, ws, bs, ys, cs)
        if not first_order:
            tape.append((sp, ws))
        g0 = sp.gs[0]
        d_sum = g0.clone() if d_sum is None else d_sum.add_(g0)
        if step + 1 < steps:
            a_s = a_s.baddbmm_(kss, g0, alpha=-lr)  # a_s is not on the tape: its masks and h are
        ws = [None] + [torch.add(w, d, alpha=-lr) for w, d in zip(ws[1:], sp.dw[1:])]
        bs = [None] + [torch.add(b, d, alpha=-lr) for b, d in zip(bs[1:], sp.db[1:])]
        sp.dw = sp.db = None  # the reverse pass does not need them: keep the tape small
    a_q = a_q0 if d_sum is None else torch.baddbmm(a_q0, kqs, d_sum, alpha=-lr)
    hq, mq, oq = _hidden(plan, a_q, ws, bs)
    pq = _link(plan, oq)
    qloss = _query_loss(pq, yq, batch.wq).mean()

    layers = plan.layers
    w_bar: list = [None] * layers
    b_bar: list = [None] * layers
    a_bar = _link_adjoint(plan, pq, yq, cq / n)
    for layer in range(layers - 1, 0, -1):  # reverse of the query forward pass
        w_bar[layer] = _tn(hq[layer - 1], a_bar)
        b_bar[layer] = a_bar.sum(1, keepdim=True)
        a_bar = _masked(_mm(a_bar, ws[layer].transpose(-1, -2)), hq[layer - 1], mq[layer - 1])
    aq_bar = a_bar
    as_bar = None
    if not first_order and steps:
        d_bar = torch.bmm(kqs.transpose(1, 2), aq_bar).mul_(-lr)  # every step's g_0 enters the query through Σ g_0
        for step in range(steps - 1, -1, -1):
            sp, ws_k = tape[step]
            as_bar, w_bar, b_bar = _reverse_step(plan, sp, ws_k, ys, cs, kss, lr, d_bar, as_bar, w_bar, b_bar)
    grads = {}
    gw0 = torch.mm(aq_bar.reshape(-1, aq_bar.shape[-1]).t(), zq.reshape(-1, zq.shape[-1]))
    gb0 = aq_bar.sum((0, 1))
    if as_bar is not None:
        gw0.addmm_(as_bar.reshape(-1, as_bar.shape[-1]).t(), zs.reshape(-1, zs.shape[-1]))
        gb0 += as_bar.sum((0, 1))
    grads[plan.weights[0]], grads[plan.biases[0]] = gw0, gb0
    for layer in range(1, layers):
        grads[plan.weights[layer]] = w_bar[layer].sum(0).t().contiguous()
        grads[plan.biases[layer]] = b_bar[layer].sum((0, 1))
    return {k: grads[k] for k in params}, qloss


def _reverse_step(plan, sp: _Pass, ws, ys, cs, kss, lr, d_bar, as_bar, w_bar, b_bar):
    """The adjoints before one SGD step from those after it.

    The step maps (a_s, W_l, b_l) to (a_s − lr K g_0, W_l − lr h_{l−1}ᵀ g_l, b_l − lr Σ g_l) with g the
    closed-form gradients of `_support_pass`; this is that map's vector-Jacobian product, second-order
    terms included (ReLU's second derivative is zero, the sigmoid's is not).
    """
    layers = plan.layers
    g_bar: list = [None] * layers
    g_bar[0] = d_bar.clone() if as_bar is None else torch.baddbmm(d_bar, kss, as_bar, alpha=-lr)
    h_bar: list = [None] * layers
    for layer in range(1, layers):  # through dW_l = h_{l-1}ᵀ g_l and db_l = Σ g_l, whose adjoints are −lr W̄_l, −lr b̄_l
        g_bar[layer] = _add_mm(b_bar[layer], sp.hs[layer - 1], w_bar[layer], alpha=-lr, beta=-lr)
        h_bar[layer - 1] = _mm(sp.gs[layer], w_bar[layer].transpose(1, 2))  # times −lr below, inside a matmul
    b_bar = list(b_bar)
    for layer in range(1, layers):  # g_{l-1} = (g_l W_lᵀ) ⊙ mask_{l-1}
        u = _masked(g_bar[layer - 1], sp.hs[layer - 1], sp.masks[layer - 1])  # g_bar[l-1] is not needed after this
        g_bar[layer] = _add_mm(g_bar[layer], u, ws[layer], inplace=True)
        _add_tn_(w_bar[layer], u, sp.gs[layer])  # W̄ accumulates in place: its old value was used above
    p = sp.p
    if plan.sigmoid:  # g_out = c (p − y) p (1 − p): its derivative in o
        s = p * (1 - p)
        a_bar = g_bar[-1] * cs * s * (s + (p - ys) * (1 - 2 * p))
    else:  # g_out = c (o − y)
        a_bar = g_bar[-1] * cs
    for layer in range(layers - 1, 0, -1):  # the forward pass at these weights
        _add_tn_(w_bar[layer], sp.hs[layer - 1], a_bar)
        b_bar[layer] = b_bar[layer] + a_bar.sum(1, keepdim=True)
        a_bar = _add_mm(h_bar[layer - 1], a_bar, ws[layer].transpose(-1, -2), inplace=True, beta=-lr)
        a_bar = _masked(a_bar, sp.hs[layer - 1], sp.masks[layer - 1])
    as_bar = a_bar if as_bar is None else as_bar.add_(a_bar)
    return as_bar, w_bar, b_bar


def fast_weights(layout, params: Params, n: int) -> Params:
    """`n` per-task copies of `params` in `layout`'s matmul layout, contiguous: what `adapt_in_place`
    updates in place (copies, so the meta-parameters stay untouched)."""
    return {k: v.detach().clone(memory_format=torch.contiguous_format) for k, v in layout.stack(params, n).items()}


def adapt_in_place(plan: HeadPlan, fast: Params, buffers: Params, phases, inner, state: dict, steps: int) -> dict:
    """`steps` inner steps on each phase's (x, y, w) in turn, nothing differentiated through them:
    `fast` (stacked, in `Layout`'s matmul layout, contiguous) is updated in place. SGD moves the
    first layer through Gram products within a phase and forms its weights once at the phase's end.
    `state` is the inner optimiser's (Adam moments as `m`/`v` dicts in the same layout); returns it."""
    with torch.no_grad():
        ws = [fast[k] for k in plan.weights]
        bs = [fast[k] for k in plan.biases]
        names = list(plan.weights) + list(plan.biases)
        sgd = isinstance(inner, InnerSGD)
        if not sgd:
            state = {"t": state["t"], "m_list": [state["m"][k].contiguous().clone() for k in names],
                     "v_list": [state["v"][k].contiguous().clone() for k in names]}
        else:
            state = {"t": state["t"]}
        for part in phases:
            z, y, c = _rows(plan, part, buffers)
            if sgd and steps > 1:
                a = torch.baddbmm(bs[0], z, ws[0])
                kzz = _gram(z, z)
                d_sum = None
                for step in range(steps):
                    sp = _support_pass(plan, a, ws, bs, y, c)
                    d_sum = sp.gs[0] if d_sum is None else d_sum.add_(sp.gs[0])
                    if step + 1 < steps:
                        a.baddbmm_(kzz, sp.gs[0], alpha=-inner.lr)
                    torch._foreach_add_(ws[1:] + bs, sp.dw[1:] + sp.db, alpha=-inner.lr)
                ws[0].baddbmm_(z.transpose(1, 2), d_sum, alpha=-inner.lr)
                state["t"] += steps
                continue
            for _ in range(steps):
                sp = _support_pass(plan, torch.baddbmm(bs[0], z, ws[0]), ws, bs, y, c)
                step_inplace(inner, ws + bs, [_tn(z, sp.gs[0])] + sp.dw[1:] + sp.db, state)
        if sgd:
            return state
        return {"t": state["t"], "m": dict(zip(names, state["m_list"])), "v": dict(zip(names, state["v_list"]))}


def query_pass(plan: HeadPlan, fast: Params, buffers: Params, batch: TaskBatch, gradient: bool) -> tuple[Params | None, torch.Tensor]:
    """The mean query loss at `fast` (stacked, matmul layout) and, with `gradient`, its gradient with
    respect to each task's weights summed over tasks, in the module's layout (first-order MAML's
    meta-gradient)."""
    with torch.no_grad():
        n = len(batch)
        zq, yq, cq = _rows(plan, batch.query, buffers)
        ws = [fast[k] for k in plan.weights]
        bs = [fast[k] for k in plan.biases]
        a = torch.baddbmm(bs[0], zq, ws[0])
        if not gradient:
            _, _, o = _hidden(plan, a, ws, bs)
            return None, _query_loss(_link(plan, o), yq, batch.wq).mean()
        sp = _support_pass(plan, a, ws, bs, yq, cq / n)
        grads = {plan.weights[0]: torch.mm(sp.gs[0].reshape(-1, sp.gs[0].shape[-1]).t(), zq.reshape(-1, zq.shape[-1]))}
        for layer in range(1, plan.layers):
            grads[plan.weights[layer]] = sp.dw[layer].sum(0).t().contiguous()
        for layer in range(plan.layers):
            grads[plan.biases[layer]] = sp.db[layer].sum((0, 1))
        return grads, _query_loss(sp.p, yq, batch.wq).mean()
