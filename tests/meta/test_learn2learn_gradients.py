"""learn2learn as a third independent reference for the meta-gradients (beside `higher` and closed forms),
and `engine=learn2learn` against piaa's default engine. Needs learn2learn (vision venv: make test-vision)."""

from __future__ import annotations

import higher
import pytest
import torch
from torch import nn

from piaa.meta import ANIL, MAML, InnerAdam, InnerSGD, MetaSGD, Reptile, TaskBatch, weighted_mse

pytestmark = pytest.mark.vision
l2l = pytest.importorskip("learn2learn", reason="needs learn2learn in the vision venv: make install-learn2learn")

from piaa.meta.engines import meta_gradient_fn  # noqa: E402
from piaa.meta.learn2learn_engine import Learn2LearnMetaGradient  # noqa: E402
from piaa.meta.model import ScoreHead  # noqa: E402

DT = torch.float64
LR, STEPS = 0.1, 4


def _batch(n_raters: int, n_s: int, n_q: int, dim: int, seed: int, pad: int = 0) -> TaskBatch:
    """Random raters; the last `pad` support and query rows of each rater are padding (weight 0)."""
    g = torch.Generator().manual_seed(seed)
    ws, wq = torch.ones(n_raters, n_s, dtype=DT), torch.ones(n_raters, n_q, dtype=DT)
    if pad:
        ws[:, -pad:], wq[:, -pad:] = 0, 0
    xs, ys = torch.randn(n_raters, n_s, dim, generator=g, dtype=DT), torch.rand(n_raters, n_s, generator=g, dtype=DT)
    xq, yq = torch.randn(n_raters, n_q, dim, generator=g, dtype=DT), torch.rand(n_raters, n_q, generator=g, dtype=DT)
    return TaskBatch(xs, ys, xq, yq, ws, wq)


def _head(seed: int = 0) -> ScoreHead:
    """piaa's real head (standardiser buffers, MLP, sigmoid) in float64, dropout off so every engine sees one function."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = ScoreHead(6, (16, 8), dropout=0.0).to(DT)
    with torch.no_grad():
        head.standardize.mean.copy_(torch.linspace(-0.5, 0.5, 6, dtype=DT))
        head.standardize.scale.copy_(torch.linspace(0.5, 2.0, 6, dtype=DT))
    return head.train()


def _params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def _buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_buffers()}


def _l2l_reference(model: nn.Module, batch, steps: int, lr: float, first_order: bool) -> dict[str, torch.Tensor]:
    """learn2learn as users write it: MAML wrapper, clone per task, adapt on support, backprop the query loss."""
    model.zero_grad()
    maml = l2l.algorithms.MAML(model, lr=lr, first_order=first_order)
    n = len(batch)
    for i in range(n):
        learner = maml.clone()
        for _ in range(steps):
            learner.adapt(weighted_mse(learner(batch.xs[i]), batch.ys[i], batch.ws[i]))
        (weighted_mse(learner(batch.xq[i]), batch.yq[i], batch.wq[i]) / n).backward()
    return {k: p.grad.detach().clone() for k, p in model.named_parameters()}


def _higher_reference(model: nn.Module, batch, steps: int, lr: float, first_order: bool) -> dict[str, torch.Tensor]:
    model.zero_grad()
    n = len(batch)
    detach = (lambda gs: [g.detach() for g in gs]) if first_order else None
    for i in range(n):
        with higher.innerloop_ctx(model, torch.optim.SGD(model.parameters(), lr=lr), copy_initial_weights=False) as (fmodel, diffopt):
            for _ in range(steps):
                diffopt.step(weighted_mse(fmodel(batch.xs[i]), batch.ys[i], batch.ws[i]), grad_callback=detach)
            (weighted_mse(fmodel(batch.xq[i]), batch.yq[i], batch.wq[i]) / n).backward()
    return {k: p.grad.detach().clone() for k, p in model.named_parameters()}


def _assert_close(ours, ref, atol=1e-5):
    assert set(ours) == set(ref)
    for k in ref:
        assert ours[k].shape == ref[k].shape, k
        torch.testing.assert_close(ours[k], ref[k], rtol=0, atol=atol)


@pytest.mark.parametrize("order", ["second", "first"])
def test_learn2learn_reference_equals_higher_on_the_score_head(order):
    """The two third-party references agree with each other first, so either one failing below is meaningful."""
    model, batch = _head(1), _batch(3, 12, 9, 6, seed=1, pad=2)
    ref_l2l = _l2l_reference(model, batch, STEPS, LR, first_order=order == "first")
    ref_higher = _higher_reference(model, batch, STEPS, LR, first_order=order == "first")
    _assert_close(ref_l2l, ref_higher, atol=1e-10)
    assert max(float(g.abs().max()) for g in ref_l2l.values()) > 1e-3  # not a comparison between zeros


def _default(model, batch, order: str, steps: int = STEPS, meta=None):
    """piaa's default (batched) engine: the MAML algorithm's own meta-gradient."""
    algorithm = (MetaSGD if meta is not None and "lrs" in meta else MAML)(model, InnerSGD(LR), steps, first_order=order == "first")
    return algorithm.meta_gradient(meta or {"params": _params(model)}, _buffers(model), batch)


@pytest.mark.parametrize("order", ["second", "first"])
def test_piaa_meta_gradient_equals_learn2learn(order):
    model, batch = _head(2), _batch(3, 12, 9, 6, seed=2, pad=3)
    ours = _default(model, batch, order).grads["params"]
    _assert_close(ours, _l2l_reference(model, batch, STEPS, LR, first_order=order == "first"))


@pytest.mark.parametrize("order", ["second", "first"])
def test_learn2learn_engine_equals_default_engine(order):
    model, batch = _head(3), _batch(4, 10, 8, 6, seed=3, pad=1)
    algorithm = MAML(model, InnerSGD(LR), STEPS, first_order=order == "first")
    default = algorithm.meta_gradient({"params": _params(model)}, _buffers(model), batch)
    engine = meta_gradient_fn(algorithm, "learn2learn")
    ours = engine({"params": _params(model)}, _buffers(model), batch)
    _assert_close(ours.grads["params"], default.grads["params"])
    assert float(ours.query_loss) == pytest.approx(float(default.query_loss), abs=1e-10)
    # the adapter works on its own copy: a second call with other parameters is not polluted by the first
    shifted = {"params": {k: v + 0.05 for k, v in _params(model).items()}}
    again = engine(shifted, _buffers(model), batch)
    _assert_close(again.grads["params"], algorithm.meta_gradient(shifted, _buffers(model), batch).grads["params"])
    assert all(p.grad is None for p in model.parameters())


def test_second_and_first_order_differ_under_learn2learn():
    """The orders are really different computations (so the two tests above check two things)."""
    model, batch = _head(4), _batch(2, 10, 8, 6, seed=4)
    run = lambda order: Learn2LearnMetaGradient(model, lr=LR, steps=STEPS, order=order)(_params(model), _buffers(model), batch.support, batch.query)[0]
    second, first = run("second"), run("first")
    assert max(float((second[k] - first[k]).abs().max()) for k in second) > 1e-4


@pytest.mark.parametrize("order", ["second", "first"])
def test_meta_sgd_through_learn2learn_equals_default_engine(order):
    """Learned per-parameter step sizes: l2l's MetaSGD against piaa's Meta-SGD, gradients of weights and step sizes."""
    model, batch = _head(5), _batch(3, 10, 8, 6, seed=5)
    theta = _params(model)
    g = torch.Generator().manual_seed(6)
    meta = {"params": theta, "lrs": {k: 0.05 + 0.1 * torch.rand(v.shape, generator=g, dtype=DT) for k, v in theta.items()}}
    algorithm = MetaSGD(model, InnerSGD(LR), 2, first_order=order == "first")
    default = algorithm.meta_gradient(meta, _buffers(model), batch)
    ours = meta_gradient_fn(algorithm, "learn2learn")(meta, _buffers(model), batch)
    for group in ("params", "lrs"):
        _assert_close(ours.grads[group], default.grads[group])
    assert max(float(v.abs().max()) for v in ours.grads["lrs"].values()) > 1e-4


@pytest.mark.parametrize("algorithm", [
    lambda m: ANIL(m, InnerSGD(LR), 2), lambda m: MAML(m, InnerAdam(0.01), 2), lambda m: Reptile(m, InnerSGD(LR), 2),
], ids=["anil", "adam-inner", "reptile"])
def test_what_learn2learn_cannot_run_is_refused_by_name(algorithm):
    with pytest.raises(ValueError, match="engine=learn2learn"):
        meta_gradient_fn(algorithm(_head(0)), "learn2learn")
