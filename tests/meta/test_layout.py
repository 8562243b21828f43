"""The inner loop's matmul layout (Linear weights stacked as [tasks, in, out], biases [tasks, 1, out])
gives the meta-gradients of the module's own forward pass, for every algorithm, and stays inside the
engine: meta-parameters, gradients and carried inner state keep the module's shapes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from piaa.meta import ANIL, MAML, InnerAdam, InnerSGD, MetaSGD, Reptile, TaskBatch
from piaa.meta.core import Layout
from piaa.meta.model import ScoreHead

DT = torch.float64


class Opaque(nn.Module):
    """The same head behind a module the batched matmul path does not know: run with vmap(functional_call)."""

    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)


def _head() -> ScoreHead:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        head = ScoreHead(6, (16, 8)).to(DT)
    head.standardize.mean.add_(0.2)
    head.standardize.scale.mul_(1.5)
    return head


def _batch() -> TaskBatch:
    g = torch.Generator().manual_seed(9)
    xs, xq = torch.randn(4, 12, 6, generator=g, dtype=DT), torch.randn(4, 9, 6, generator=g, dtype=DT)
    ys, yq = torch.rand(4, 12, generator=g, dtype=DT), torch.rand(4, 9, generator=g, dtype=DT)
    ws = (torch.rand(4, 12, generator=g, dtype=DT) > 0.2).to(DT)  # some padding rows
    return TaskBatch(xs, ys, xq, yq, ws=ws)


ALGORITHMS = {
    # closed_form=False: the head would otherwise take piaa.meta.closed_form (tests/meta/test_closed_form.py)
    "maml-sgd-second": lambda m: MAML(m, InnerSGD(0.3), 3, closed_form=False),
    "maml-sgd-first": lambda m: MAML(m, InnerSGD(0.3), 3, first_order=True, closed_form=False),
    "maml-adam-second": lambda m: MAML(m, InnerAdam(0.01), 3),
    "meta-sgd": lambda m: MetaSGD(m, InnerSGD(0.3), 2),
    "anil": lambda m: ANIL(m, InnerSGD(0.3), 3),
    "reptile-adam-support-query": lambda m: Reptile(m, InnerAdam(0.01), 2, query_phase=True, closed_form=False),
}


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_matmul_layout_gives_the_meta_gradient_of_the_modules_own_forward(name):
    head = _head()
    opaque = Opaque(head)
    assert Layout(head).weights == {"body.0.weight", "body.2.weight", "body.4.weight"}
    assert not Layout(opaque).keys  # unknown module: no layout change, vmap path
    fast_alg, ref_alg = ALGORITHMS[name](head), ALGORITHMS[name](opaque)
    if name == "anil":
        ref_alg.adapt = tuple(f"head.{k}" for k in fast_alg.adapt)
    theta = {k: v.detach().clone() for k, v in head.named_parameters()}
    buffers = dict(head.named_buffers())
    batch = _batch()
    state = None
    if name.startswith("reptile"):  # a carried Adam state, in the module's shapes
        g = torch.Generator().manual_seed(1)
        state = {"t": 3, "m": {k: 0.01 * torch.randn(v.shape, generator=g, dtype=DT) for k, v in theta.items()},
                 "v": {k: 1e-4 * torch.rand(v.shape, generator=g, dtype=DT) for k, v in theta.items()}}
    ours = fast_alg.meta_gradient(fast_alg.init_meta(theta), buffers, batch, state)
    ref_meta = {g: {f"head.{k}": v for k, v in p.items()} for g, p in fast_alg.init_meta(theta).items()}
    ref_state = None if state is None else {"t": 3, **{m: {f"head.{k}": v for k, v in state[m].items()} for m in ("m", "v")}}
    ref = ref_alg.meta_gradient(ref_meta, {f"head.{k}": v for k, v in buffers.items()}, batch, ref_state)
    for group, grads in ours.grads.items():
        for k, d in grads.items():
            assert d.shape == theta[k].shape
            torch.testing.assert_close(d, ref.grads[group][f"head.{k}"], rtol=0, atol=1e-12)
    assert max(float(d.abs().max()) for d in ours.grads["params"].values()) > 1e-4
    torch.testing.assert_close(ours.query_loss, ref.query_loss, rtol=0, atol=1e-14)
    if state is not None:
        for m in ("m", "v"):
            for k, t in ours.inner_state[m].items():
                assert t.shape == theta[k].shape and t.is_contiguous()
                torch.testing.assert_close(t, ref.inner_state[m][f"head.{k}"], rtol=0, atol=1e-14)


def test_a_module_with_its_own_stacked_forward_keeps_the_module_layout_unless_it_opts_in():
    class OwnLinear(nn.Linear):
        def stacked_forward(self, params, x, prefix, rule):
            return torch.baddbmm(params[prefix + "bias"].unsqueeze(1), x, params[prefix + "weight"].transpose(1, 2))

    assert Layout(nn.Sequential(OwnLinear(3, 2), nn.ReLU(), nn.Linear(2, 1))).keys == {"2.weight", "2.bias"}
    assert Layout(nn.Sequential(nn.Linear(3, 2), nn.Flatten(0))).keys == set()  # not run as matmuls at all
    assert Layout(_head()).biases == {"body.0.bias", "body.2.bias", "body.4.bias"}  # ScoreHead opts in
