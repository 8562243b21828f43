"""The closed-form path (piaa.meta.closed_form) computes what autograd computes: meta-gradients,
query losses and carried Adam moments equal the autograd engine's in float64, with dropout drawing
the same masks, for every case it takes; every other case is left to autograd."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from piaa.meta import ANIL, MAML, InnerAdam, InnerSGD, MetaSGD, Reptile, TaskBatch
from piaa.meta.closed_form import plan_for
from piaa.meta.core import weighted_mse
from piaa.meta.inner import step_inplace
from piaa.meta.model import ScoreHead
from piaa.meta.sinusoid import mse as sinusoid_mse

DT = torch.float64


def _head(hidden=(7, 5), dropout=0.0) -> ScoreHead:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(4)
        head = ScoreHead(6, hidden, dropout).to(DT)
    head.standardize.mean.add_(0.3)
    head.standardize.scale.mul_(1.7)
    head.train()
    return head


def _mlp(hidden=(7, 5), dropout=0.0) -> nn.Sequential:
    """A plain ReLU MLP with one linear output (the sinusoid regressor's shape)."""
    layers, last = [], 6
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(4)
        for width in hidden:
            layers += [nn.Linear(last, width), nn.ReLU()] + ([nn.Dropout(dropout)] if dropout else [])
            last = width
        net = nn.Sequential(*layers, nn.Linear(last, 1)).to(DT)
    net.train()
    return net


def _batch(tasks=3, support=9, query=6, trailing=False) -> TaskBatch:
    g = torch.Generator().manual_seed(2)
    xs, xq = torch.randn(tasks, support, 6, generator=g, dtype=DT), torch.randn(tasks, query, 6, generator=g, dtype=DT)
    ys, yq = torch.rand(tasks, support, generator=g, dtype=DT), torch.rand(tasks, query, generator=g, dtype=DT)
    if trailing:  # targets shaped like a plain MLP's predictions, (rows, 1)
        ys, yq = ys.unsqueeze(-1), yq.unsqueeze(-1)
    ws = torch.ones(tasks, support, dtype=DT)
    ws[0, -3:] = 0  # padding rows
    wq = torch.ones(tasks, query, dtype=DT)
    wq[-1, -1] = 0
    return TaskBatch(xs, ys, xq, yq, ws, wq)


CASES = {
    "maml-sgd-second": lambda m, cf: MAML(m, InnerSGD(0.8), 3, closed_form=cf),
    "maml-sgd-second-one-step": lambda m, cf: MAML(m, InnerSGD(0.8), 1, closed_form=cf),
    "maml-sgd-first": lambda m, cf: MAML(m, InnerSGD(0.8), 3, first_order=True, closed_form=cf),
    "maml-adam-first": lambda m, cf: MAML(m, InnerAdam(0.05), 3, first_order=True, closed_form=cf),
    "reptile-sgd": lambda m, cf: Reptile(m, InnerSGD(0.8), 3, closed_form=cf),
    "reptile-sgd-one-step": lambda m, cf: Reptile(m, InnerSGD(0.8), 1, closed_form=cf),
    "blg-piaa-adam-support-query": lambda m, cf: Reptile(m, InnerAdam(0.05), 2, query_phase=True, closed_form=cf),
    "blg-piaa-tuned-sgd-support-query": lambda m, cf: Reptile(m, InnerSGD(0.8), 3, query_phase=True, closed_form=cf),
}


def _two_steps(algorithm, head):
    """Two meta-steps (the second carries the first's inner state, as BLG-PIAA does), each with
    its own seeded dropout masks."""
    theta = {k: v.detach().clone() for k, v in head.named_parameters()}
    buffers = dict(head.named_buffers())
    meta = algorithm.init_meta(theta)
    trailing = isinstance(head, nn.Sequential)
    torch.manual_seed(11)
    first = algorithm.meta_gradient(meta, buffers, _batch(trailing=trailing))
    torch.manual_seed(12)
    second = algorithm.meta_gradient(meta, buffers, _batch(trailing=trailing), first.inner_state)
    return first, second


def _with_loss(algorithm, loss):
    algorithm.loss = loss
    return algorithm


@pytest.mark.parametrize("hidden", [(7,), (7, 5), (7, 5, 4)])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
@pytest.mark.parametrize("module", ["score-head", "plain-mlp"])
@pytest.mark.parametrize("name", list(CASES))
def test_closed_form_equals_autograd(name, module, hidden, dropout):
    head = _head(hidden, dropout) if module == "score-head" else _mlp(hidden, dropout)
    loss = weighted_mse if module == "score-head" else sinusoid_mse
    assert plan_for(head, loss, InnerSGD(0.1)) is not None
    closed = _two_steps(_with_loss(CASES[name](head, True), loss), head)
    reference = _two_steps(_with_loss(CASES[name](head, False), loss), head)
    for got, want in zip(closed, reference):
        torch.testing.assert_close(got.query_loss, want.query_loss, rtol=1e-10, atol=1e-13)
        for k, expected in want.grads["params"].items():
            assert got.grads["params"][k].shape == expected.shape
            torch.testing.assert_close(got.grads["params"][k], expected, rtol=1e-10, atol=1e-13)
        assert (got.inner_state is None) == (want.inner_state is None)
        if want.inner_state is not None:
            assert got.inner_state["t"] == want.inner_state["t"]
            for moment in ("m", "v"):
                for k, expected in want.inner_state.get(moment, {}).items():
                    torch.testing.assert_close(got.inner_state[moment][k], expected, rtol=1e-10, atol=1e-15)
    norm = sum(float(g.norm()) for g in closed[0].grads["params"].values())
    assert norm > 1e-3  # a real gradient, not zeros on both sides


def test_closed_form_second_order_terms_are_there():
    """The hand-written reverse pass is not first-order MAML in disguise: the two differ."""
    head = _head()
    second, _ = _two_steps(CASES["maml-sgd-second"](head, True), head)
    first, _ = _two_steps(CASES["maml-sgd-first"](head, True), head)
    diff = max(float((second.grads["params"][k] - first.grads["params"][k]).abs().max()) for k in first.grads["params"])
    assert diff > 1e-4


def test_closed_form_draws_the_dropout_masks_the_module_would():
    """With dropout, the result depends on the masks: equal to autograd under one seed (above), and
    different under another seed (so the masks are really applied)."""
    head = _head(dropout=0.5)
    algorithm = CASES["maml-sgd-second"](head, True)
    theta = {k: v.detach() for k, v in head.named_parameters()}
    meta, buffers = algorithm.init_meta(theta), dict(head.named_buffers())
    torch.manual_seed(1)
    a = algorithm.meta_gradient(meta, buffers, _batch())
    torch.manual_seed(2)
    b = algorithm.meta_gradient(meta, buffers, _batch())
    torch.manual_seed(1)
    c = algorithm.meta_gradient(meta, buffers, _batch())
    assert float((a.grads["params"]["body.0.weight"] - b.grads["params"]["body.0.weight"]).abs().max()) > 1e-6
    torch.testing.assert_close(a.grads["params"]["body.0.weight"], c.grads["params"]["body.0.weight"], rtol=0, atol=0)


class _Opaque(nn.Module):
    def __init__(self, head):
        super().__init__()
        self.head = head

    def forward(self, x):
        return self.head(x)


def test_closed_form_is_not_planned_where_it_would_differ():
    head = _head()
    sgd = InnerSGD(0.5)
    assert plan_for(head, weighted_mse, sgd) is not None
    assert plan_for(_Opaque(head), weighted_mse, sgd) is None  # another module
    assert plan_for(head, lambda p, y, w: ((p - y).abs() * w).sum(-1), sgd) is None  # another loss
    assert plan_for(head, weighted_mse, sgd, adapt={"body.4.weight"}) is None  # ANIL's partial inner loop
    assert plan_for(head, weighted_mse, sgd, lrs={"body.0.weight": torch.ones(1)}) is None  # Meta-SGD
    tanh = _head()
    tanh.body[1] = nn.Tanh()
    assert plan_for(tanh, weighted_mse, sgd) is None  # another activation
    nobias = _head()
    nobias.body[0] = nn.Linear(6, 7, bias=False).to(DT)
    assert plan_for(nobias, weighted_mse, sgd) is None
    two_outputs = nn.Sequential(nn.Linear(6, 7), nn.ReLU(), nn.Linear(7, 2))
    assert plan_for(two_outputs, sinusoid_mse, sgd) is None
    assert plan_for(_mlp(), sinusoid_mse, sgd) is not None


@pytest.mark.parametrize("algorithm", [
    lambda m: MAML(m, InnerAdam(0.05), 3),  # second-order Adam
    lambda m: MetaSGD(m, InnerSGD(0.5), 2),
    lambda m: ANIL(m, InnerSGD(0.5), 3),
])
def test_cases_without_a_closed_form_still_match_autograd(algorithm):
    head = _head()
    got = _two_steps(algorithm(head), head)[0]
    fallback = algorithm(head)
    fallback.closed_form = False
    want = _two_steps(fallback, head)[0]
    for k, v in want.grads["params"].items():
        torch.testing.assert_close(got.grads["params"][k], v, rtol=0, atol=0)


def test_in_place_adam_equals_the_functional_inner_adam():
    """step_inplace (torch's fused Adam kernel, eps rescaled) follows InnerAdam.step exactly."""
    g = torch.Generator().manual_seed(0)
    opt = InnerAdam(0.01)
    params = {"w": torch.randn(3, 4, 5, generator=g, dtype=DT), "b": torch.randn(3, 1, 5, generator=g, dtype=DT)}
    grads = [{k: torch.randn(v.shape, generator=g, dtype=DT) * 10 ** -i for k, v in params.items()} for i in range(4)]
    grads[1]["w"] = grads[1]["w"].transpose(1, 2).contiguous().transpose(1, 2)  # autograd may hand back other strides
    functional, state = dict(params), opt.init(params)
    in_place, inplace_state = [v.clone() for v in params.values()], {"t": 0}
    for gr in grads:
        functional, state = opt.step(functional, gr, state)
        step_inplace(opt, in_place, list(gr.values()), inplace_state)
    for got, want in zip(in_place, functional.values()):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-15)
    assert inplace_state["t"] == 4


def test_closed_form_plan_names_the_path_each_algorithm_takes():
    """Second-order MAML is written out for SGD only; Meta-SGD, ANIL and closed_form=False use autograd."""
    head = _head()
    meta = lambda a: a.init_meta({k: v.detach() for k, v in head.named_parameters()})
    closed = [MAML(head, InnerSGD(0.5), 3), MAML(head, InnerSGD(0.5), 3, first_order=True),
              MAML(head, InnerAdam(0.01), 3, first_order=True), Reptile(head, InnerAdam(0.01), 2, query_phase=True)]
    autograd = [MAML(head, InnerAdam(0.01), 3), MetaSGD(head, InnerSGD(0.5), 2), ANIL(head, InnerSGD(0.5), 3),
                MAML(head, InnerSGD(0.5), 3, closed_form=False), Reptile(head, InnerSGD(0.5), 2, closed_form=False)]
    assert all(a.closed_form_plan(meta(a)) is not None for a in closed)
    assert all(a.closed_form_plan(meta(a)) is None for a in autograd)
