"""learn2learn as a third independent reference for the meta-gradients (beside `higher` and closed forms),
and `engine=learn2learn` against piaa's own engines. Needs learn2learn (vision venv: make test-vision)."""

from __future__ import annotations

import higher
import pytest
import torch
from torch import nn

from piaa.meta.inner import InnerSGD, weighted_mse
from piaa.meta.outer import LR_PREFIX, MetaGradient

pytestmark = pytest.mark.vision
l2l = pytest.importorskip("learn2learn", reason="needs learn2learn in the vision venv: make install-learn2learn")

from piaa.meta.learn2learn_engine import Learn2LearnMetaGradient  # noqa: E402
from piaa.meta.model import ScoreHead  # noqa: E402

DT = torch.float64
LR, STEPS = 0.1, 4


def _batch(n_raters: int, n_s: int, n_q: int, dim: int, seed: int, pad: int = 0) -> dict[str, torch.Tensor]:
    """Random raters; the last `pad` support and query rows of each rater are padding (weight 0)."""
    g = torch.Generator().manual_seed(seed)
    ws, wq = torch.ones(n_raters, n_s, dtype=DT), torch.ones(n_raters, n_q, dtype=DT)
    if pad:
        ws[:, -pad:], wq[:, -pad:] = 0, 0
    return {
        "xs": torch.randn(n_raters, n_s, dim, generator=g, dtype=DT), "ys": torch.rand(n_raters, n_s, generator=g, dtype=DT), "ws": ws,
        "xq": torch.randn(n_raters, n_q, dim, generator=g, dtype=DT), "yq": torch.rand(n_raters, n_q, generator=g, dtype=DT), "wq": wq,
    }


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
    n = batch["xs"].shape[0]
    for i in range(n):
        learner = maml.clone()
        for _ in range(steps):
            learner.adapt(weighted_mse(learner(batch["xs"][i]), batch["ys"][i], batch["ws"][i]))
        (weighted_mse(learner(batch["xq"][i]), batch["yq"][i], batch["wq"][i]) / n).backward()
    return {k: p.grad.detach().clone() for k, p in model.named_parameters()}


def _higher_reference(model: nn.Module, batch, steps: int, lr: float, first_order: bool) -> dict[str, torch.Tensor]:
    model.zero_grad()
    n = batch["xs"].shape[0]
    detach = (lambda gs: [g.detach() for g in gs]) if first_order else None
    for i in range(n):
        with higher.innerloop_ctx(model, torch.optim.SGD(model.parameters(), lr=lr), copy_initial_weights=False) as (fmodel, diffopt):
            for _ in range(steps):
                diffopt.step(weighted_mse(fmodel(batch["xs"][i]), batch["ys"][i], batch["ws"][i]), grad_callback=detach)
            (weighted_mse(fmodel(batch["xq"][i]), batch["yq"][i], batch["wq"][i]) / n).backward()
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


@pytest.mark.parametrize("order", ["second", "first"])
@pytest.mark.parametrize("engine", ["batched", "vmap", "loop"])
def test_piaa_meta_gradient_equals_learn2learn(order, engine):
    model, batch = _head(2), _batch(3, 12, 9, 6, seed=2, pad=3)
    ours, _ = MetaGradient(model, InnerSGD(LR), steps=STEPS, order=order, engine=engine)(_params(model), _buffers(model), batch)
    _assert_close(ours, _l2l_reference(model, batch, STEPS, LR, first_order=order == "first"))


@pytest.mark.parametrize("order", ["second", "first"])
def test_learn2learn_engine_equals_default_engine(order):
    model, batch = _head(3), _batch(4, 10, 8, 6, seed=3, pad=1)
    default, info = MetaGradient(model, InnerSGD(LR), steps=STEPS, order=order)(_params(model), _buffers(model), batch)
    adapter = Learn2LearnMetaGradient(model, lr=LR, steps=STEPS, order=order)
    ours, query_loss = adapter(_params(model), _buffers(model), batch)
    _assert_close(ours, default)
    assert query_loss == pytest.approx(info["query_loss"], abs=1e-10)
    # the adapter works on its own copy: a second call with other parameters is not polluted by the first
    shifted = {k: v + 0.05 for k, v in _params(model).items()}
    again, _ = adapter(shifted, _buffers(model), batch)
    expected, _ = MetaGradient(model, InnerSGD(LR), steps=STEPS, order=order)(shifted, _buffers(model), batch)
    _assert_close(again, expected)
    assert all(p.grad is None for p in model.parameters())


def test_second_and_first_order_differ_under_learn2learn():
    """The orders are really different computations (so the two tests above check two things)."""
    model, batch = _head(4), _batch(2, 10, 8, 6, seed=4)
    second, _ = Learn2LearnMetaGradient(model, lr=LR, steps=STEPS, order="second")(_params(model), _buffers(model), batch)
    first, _ = Learn2LearnMetaGradient(model, lr=LR, steps=STEPS, order="first")(_params(model), _buffers(model), batch)
    assert max(float((second[k] - first[k]).abs().max()) for k in second) > 1e-4


@pytest.mark.parametrize("order", ["second", "first"])
def test_meta_sgd_through_learn2learn_equals_default_engine(order):
    """Learned per-parameter step sizes: l2l's MetaSGD against piaa's InnerSGD with `lrs`, both gradients."""
    model, batch = _head(5), _batch(3, 10, 8, 6, seed=5)
    theta = _params(model)
    g = torch.Generator().manual_seed(6)
    meta = {**theta, **{LR_PREFIX + k: 0.05 + 0.1 * torch.rand(v.shape, generator=g, dtype=DT) for k, v in theta.items()}}
    default, _ = MetaGradient(model, InnerSGD(LR), steps=2, order=order)(meta, _buffers(model), batch)
    ours, _ = Learn2LearnMetaGradient(model, lr=LR, steps=2, order=order)(meta, _buffers(model), batch)
    _assert_close(ours, default)
    assert max(float(ours[LR_PREFIX + k].abs().max()) for k in theta) > 1e-4
