"""The meta-gradients against `higher`, against closed forms, and against each other."""

from __future__ import annotations

import higher
import pytest
import torch
from torch import nn
from torch.func import functional_call, grad, jvp

from piaa.meta import ANIL, MAML, InnerAdam, InnerSGD, MetaSGD, Reptile, TaskBatch, weighted_mse
from piaa.meta.anil import last_layer
from piaa.meta.loop import TrainState, meta_step

DT = torch.float64


def _batch(n_raters: int, n_s: int, n_q: int, shape: tuple[int, ...], seed: int, **replace) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)
    xs, ys = torch.randn(n_raters, n_s, *shape, generator=g, dtype=DT), torch.randn(n_raters, n_s, generator=g, dtype=DT)
    xq, yq = torch.randn(n_raters, n_q, *shape, generator=g, dtype=DT), torch.randn(n_raters, n_q, generator=g, dtype=DT)
    return TaskBatch(**{**dict(xs=xs, ys=ys, xq=xq, yq=yq), **replace})


def _maml(model, inner, steps: int, order: str, **kw):
    """MAML (order second / first) or Reptile, as the meta-learning presets build them."""
    if order == "reptile":
        return Reptile(model, inner, steps, **kw)
    return MAML(model, inner, steps, first_order=order == "first", **kw)


def _grads(algorithm, theta, batch, state=None):
    """The meta-gradient of the module's weights, and the whole MetaStep."""
    step = algorithm.meta_gradient(algorithm.init_meta(theta), {}, batch, state)
    return step.grads["params"], step


def _mlp(seed: int = 0) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 8), nn.Softplus(), nn.Linear(8, 1), nn.Flatten(0)).to(DT)


class TinyConv(nn.Module):
    """A small image encoder + head (GroupNorm, not BatchNorm) for end-to-end checks on CPU."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.norm = nn.GroupNorm(2, 4)
        self.conv2 = nn.Conv2d(4, 4, 3, stride=2, padding=1)
        self.head = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.norm(self.conv1(x)))
        h = torch.tanh(self.conv2(h)).mean(dim=(-1, -2))
        return self.head(h).squeeze(-1)


def _conv(seed: int = 0) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return TinyConv().to(DT)


def _higher_meta_grad(model: nn.Module, torch_opt, batch, steps: int, first_order: bool) -> dict[str, torch.Tensor]:
    """The straightforward reference: a `higher` inner loop per rater, mean query loss backpropagated."""
    model.zero_grad()
    n = len(batch)
    detach = (lambda gs: [g.detach() for g in gs]) if first_order else None
    for i in range(n):
        with higher.innerloop_ctx(model, torch_opt, copy_initial_weights=False) as (fmodel, diffopt):
            for _ in range(steps):
                diffopt.step(weighted_mse(fmodel(batch.xs[i]), batch.ys[i], batch.ws[i]), grad_callback=detach)
            (weighted_mse(fmodel(batch.xq[i]), batch.yq[i], batch.wq[i]) / n).backward()
    return {k: p.grad.detach().clone() for k, p in model.named_parameters()}


def _params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


CASES = [
    ("sgd", lambda: InnerSGD(0.1), lambda ps: torch.optim.SGD(ps, lr=0.1)),
    ("adam", lambda: InnerAdam(0.01), lambda ps: torch.optim.Adam(ps, lr=0.01)),
]


@pytest.mark.parametrize("name,inner,reference", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("order", ["second", "first"])
def test_meta_gradient_equals_higher(name, inner, reference, order):
    model = _mlp()
    batch = _batch(3, 12, 9, (6,), seed=1)
    ours, info = _grads(_maml(model, inner(), 4, order), _params(model), batch)
    ref = _higher_meta_grad(model, reference(model.parameters()), batch, steps=4, first_order=order == "first")
    for k in ref:
        assert ours[k].shape == ref[k].shape
        torch.testing.assert_close(ours[k], ref[k], rtol=0, atol=1e-5)
    assert max(float(ref[k].abs().max()) for k in ref) > 1e-3  # the comparison is not between zeros
    assert float(info.query_loss) > 0


@pytest.mark.parametrize("name,inner,reference", CASES, ids=[c[0] for c in CASES])
def test_conv_encoder_second_order_equals_higher(name, inner, reference):
    model = _conv()
    batch = _batch(2, 5, 4, (3, 8, 8), seed=2)
    ours, _ = _grads(_maml(model, inner(), 2, "second"), _params(model), batch)
    ref = _higher_meta_grad(model, reference(model.parameters()), batch, steps=2, first_order=False)
    for k in ref:
        torch.testing.assert_close(ours[k], ref[k], rtol=0, atol=1e-5)


def test_first_order_drops_exactly_the_second_order_term():
    """One SGD step: second = (I − α H_s(θ)) ∇L_q(θ'), first = ∇L_q(θ'); their gap is −α H_s ∇L_q(θ')."""
    model, alpha = _mlp(3), 0.2
    batch = _batch(1, 10, 7, (6,), seed=4)
    theta = _params(model)
    second, _ = _grads(_maml(model, InnerSGD(alpha), 1, "second"), theta, batch)
    first, _ = _grads(_maml(model, InnerSGD(alpha), 1, "first"), theta, batch)

    def loss(params, x, y):
        return weighted_mse(functional_call(model, params, (x,)), y, torch.ones_like(y))

    xs, ys, xq, yq = batch.xs[0], batch.ys[0], batch.xq[0], batch.yq[0]
    g_s = grad(loss)(theta, xs, ys)
    adapted = {k: theta[k] - alpha * g_s[k] for k in theta}
    g_q = grad(loss)(adapted, xq, yq)
    _, hvp = jvp(lambda p: grad(loss)(p, xs, ys), (theta,), (g_q,))
    for k in theta:
        torch.testing.assert_close(first[k], g_q[k], rtol=0, atol=1e-12)
        torch.testing.assert_close(second[k] - first[k], -alpha * hvp[k], rtol=0, atol=1e-10)
        assert float(hvp[k].abs().max()) > 1e-4


def test_maml_gradient_on_linear_regression_matches_closed_form():
    """f(x) = x·w, K SGD steps: w_K = A^K w + c with A = I − (2α/n) XsᵀXs, so ∇ = (A^K)ᵀ (2/m) Xqᵀ(Xq w_K − yq)."""
    d, n, m, alpha, steps = 5, 8, 6, 0.05, 3
    model = nn.Sequential(nn.Linear(d, 1, bias=False), nn.Flatten(0)).to(DT)
    batch = _batch(1, n, m, (d,), seed=5)
    ours, _ = _grads(_maml(model, InnerSGD(alpha), steps, "second"), _params(model), batch)

    xs, ys, xq, yq = batch.xs[0], batch.ys[0], batch.xq[0], batch.yq[0]
    w = model[0].weight.detach().reshape(d)
    a = torch.eye(d, dtype=DT) - (2 * alpha / n) * xs.T @ xs
    w_k = w.clone()
    for _ in range(steps):
        w_k = w_k - alpha * (2 / n) * xs.T @ (xs @ w_k - ys)
    expected = torch.linalg.matrix_power(a, steps).T @ ((2 / m) * xq.T @ (xq @ w_k - yq))
    torch.testing.assert_close(ours["0.weight"].reshape(d), expected, rtol=0, atol=1e-12)


def test_meta_sgd_step_size_gradient_matches_closed_form():
    """One step with learned step sizes α: θ' = θ − α⊙g_s, so ∂L_q/∂α = −g_s ⊙ ∇L_q(θ')."""
    model = _mlp(6)
    batch = _batch(1, 9, 8, (6,), seed=7)
    theta = _params(model)
    algorithm = MetaSGD(model, InnerSGD(0.1), steps=1)
    meta = algorithm.init_meta(theta)
    assert all(torch.equal(v, torch.full_like(v, 0.1)) for v in meta["lrs"].values())
    ours = algorithm.meta_gradient(meta, {}, batch).grads["lrs"]

    def loss(params, x, y):
        return weighted_mse(functional_call(model, params, (x,)), y, torch.ones_like(y))

    g_s = grad(loss)(theta, batch.xs[0], batch.ys[0])
    g_q = grad(loss)({k: theta[k] - 0.1 * g_s[k] for k in theta}, batch.xq[0], batch.yq[0])
    for k in theta:
        torch.testing.assert_close(ours[k], -g_s[k] * g_q[k], rtol=0, atol=1e-12)


def test_reptile_gradient_is_the_step_toward_the_adapted_weights():
    model = _mlp(8)
    batch = _batch(2, 10, 10, (6,), seed=9)
    theta = _params(model)
    g, info = _grads(Reptile(model, InnerSGD(0.1), 3, query_phase=True), theta, batch)
    # Reference: plain autograd SGD on support then query, for each rater.
    expected = {k: torch.zeros_like(v) for k, v in theta.items()}
    for i in range(2):
        params = {k: v.clone().requires_grad_(True) for k, v in theta.items()}
        for x, y in ((batch.xs[i], batch.ys[i]), (batch.xq[i], batch.yq[i])):
            for _ in range(3):
                loss = weighted_mse(functional_call(model, params, (x,)), y, torch.ones_like(y))
                grads = torch.autograd.grad(loss, list(params.values()))
                params = {k: (p - 0.1 * gk).detach().requires_grad_(True) for (k, p), gk in zip(params.items(), grads)}
        for k in theta:
            expected[k] += (theta[k] - params[k].detach()) / 2
    for k in theta:
        torch.testing.assert_close(g[k], expected[k], rtol=0, atol=1e-12)
    assert info.inner_state["t"] == 6


def test_meta_training_the_conv_encoder_lowers_the_query_loss():
    """End to end on tiny images: a few second-order outer steps improve the post-adaptation loss."""
    model = _conv(1)
    raw = _batch(4, 6, 6, (3, 8, 8), seed=11)
    # a learnable target shared by all raters
    batch = TaskBatch(raw.xs, raw.xs.mean(dim=(2, 3, 4)) * 5, raw.xq, raw.xq.mean(dim=(2, 3, 4)) * 5)
    algorithm = MAML(model, InnerAdam(0.01), steps=2)
    state = TrainState.start(algorithm.init_meta(_params(model)), lambda ps: torch.optim.Adam(ps, lr=0.02))
    losses = [float(meta_step(state, algorithm.meta_gradient, {}, batch, seed=0, carry=False).query_loss) for _ in range(15)]
    assert losses[-1] < 0.5 * losses[0]


def test_batchnorm_with_running_statistics_is_refused():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    with pytest.raises(ValueError, match="running statistics"):
        MAML(model, InnerSGD(0.1), steps=1)


@pytest.mark.parametrize("opt", [InnerSGD(0.1), InnerAdam(0.01)], ids=["sgd", "adam"])
@pytest.mark.parametrize("learned", [False, True], ids=["scalar-lr", "per-parameter-lr"])
def test_in_place_adaptation_step_equals_the_functional_step(opt, learned):
    from piaa.meta.inner import step_inplace  # noqa: PLC0415

    g = torch.Generator().manual_seed(0)
    params = {"a": torch.randn(3, 4, generator=g, dtype=DT), "b": torch.randn(4, generator=g, dtype=DT)}
    lrs = {k: torch.rand(v.shape, generator=g, dtype=DT) * 0.1 for k, v in params.items()} if learned else None
    functional, state = dict(params), opt.init(params)
    in_place, state2 = [v.clone() for v in params.values()], {"t": 0}
    for _ in range(4):
        grads = {k: torch.randn(v.shape, generator=g, dtype=DT) for k, v in params.items()}
        functional, state = opt.step(functional, grads, state, lrs)
        step_inplace(opt, in_place, list(grads.values()), state2, list(lrs.values()) if lrs else None)
    for k, v in zip(params, in_place):
        torch.testing.assert_close(v, functional[k], rtol=0, atol=1e-12)


def test_reptile_with_carried_adam_state_equals_torch_adam_per_rater():
    """BLG-PIAA's update: each rater runs Adam from the carried moments (support then query); the
    meta-gradient is θ minus the raters' mean adapted weights, the carried state their mean moments."""
    model = _mlp(12)
    batch = _batch(3, 10, 10, (6,), seed=13)
    theta = _params(model)
    start = InnerAdam(0.01).init(theta)
    start = {"t": 4, "m": {k: v + 0.01 for k, v in start["m"].items()}, "v": {k: v + 1e-4 for k, v in start["v"].items()}}
    ours, step = _grads(Reptile(model, InnerAdam(0.01), 2, query_phase=True), theta, batch, start)
    expected = {k: torch.zeros_like(v) for k, v in theta.items()}
    moments = {k: torch.zeros_like(v) for k, v in theta.items()}
    for i in range(3):
        params = {k: v.clone().requires_grad_(True) for k, v in theta.items()}
        opt = torch.optim.Adam(list(params.values()), lr=0.01)
        opt.load_state_dict({"state": {j: {"step": torch.tensor(4.0), "exp_avg": start["m"][k].clone(), "exp_avg_sq": start["v"][k].clone()}
                                       for j, k in enumerate(params)}, "param_groups": opt.state_dict()["param_groups"]})
        for x, y in ((batch.xs[i], batch.ys[i]), (batch.xq[i], batch.yq[i])):
            for _ in range(2):
                opt.zero_grad()
                weighted_mse(functional_call(model, params, (x,)), y, torch.ones_like(y)).backward()
                opt.step()
        for j, k in enumerate(params):
            expected[k] += (theta[k] - params[k].detach()) / 3
            moments[k] += opt.state_dict()["state"][j]["exp_avg"] / 3
    for k in theta:  # torch's Adam adds eps after the bias correction, ours before: equal to ~1e-8 (the steps are ~1e-2)
        torch.testing.assert_close(ours[k], expected[k], rtol=0, atol=1e-7)
        torch.testing.assert_close(step.inner_state["m"][k], moments[k], rtol=0, atol=1e-7)
    assert step.inner_state["t"] == 8


def test_anil_equals_meta_sgd_with_zero_step_sizes_outside_the_last_layer():
    """ANIL adapts only the last layer; Meta-SGD with step size 0 elsewhere is the same function of θ."""
    model = _mlp(14)
    batch = _batch(3, 10, 8, (6,), seed=15)
    theta = _params(model)
    head = last_layer(model)
    assert head == ("4.weight", "4.bias")
    anil, _ = _grads(ANIL(model, InnerSGD(0.3), 3), theta, batch)
    meta_sgd = MetaSGD(model, InnerSGD(0.3), 3)
    meta = meta_sgd.init_meta(theta)
    meta["lrs"] = {k: v * (k in head) for k, v in meta["lrs"].items()}
    reference = meta_sgd.meta_gradient(meta, {}, batch).grads["params"]
    for k in theta:
        torch.testing.assert_close(anil[k], reference[k], rtol=0, atol=1e-12)
    assert float(anil["0.weight"].abs().max()) > 1e-4  # the body learns through the head's adaptation
    plain, _ = _grads(MAML(model, InnerSGD(0.3), 3), theta, batch)
    assert not torch.allclose(plain["0.weight"], anil["0.weight"])


def test_batched_tasks_equal_tasks_one_at_a_time():
    """Stacking tasks changes nothing: the batch's meta-gradient is the mean of single-task ones."""
    model = _mlp(16)
    batch = _batch(3, 10, 8, (6,), seed=17)
    theta = _params(model)
    for algorithm in (MAML(model, InnerAdam(0.01), 3), ANIL(model, InnerSGD(0.2), 2)):
        whole, _ = _grads(algorithm, theta, batch)
        single = [_grads(algorithm, theta, batch.select(slice(i, i + 1)))[0] for i in range(3)]
        for k in theta:
            torch.testing.assert_close(whole[k], sum(s[k] for s in single) / 3, rtol=0, atol=1e-12)


def test_stacked_matmul_forward_gives_the_same_meta_gradient_as_higher():
    """The demo's ScoreHead (standardiser + Linear/ReLU/Dropout MLP + sigmoid) runs as batched matmuls
    over raters, not under vmap; its second-order meta-gradient still equals `higher`'s."""
    from piaa.meta.core import stacked_forward  # noqa: PLC0415
    from piaa.meta.model import ScoreHead  # noqa: PLC0415

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        model = ScoreHead(6, (16, 8), dropout=0.0).to(DT)
    model.standardize.mean.add_(0.3)
    assert stacked_forward(model) is not None
    batch = _batch(3, 12, 9, (6,), seed=21)
    buffers = {k: v for k, v in model.named_buffers()}
    algorithm = MAML(model, InnerSGD(0.5), steps=3)
    ours = algorithm.meta_gradient(algorithm.init_meta(_params(model)), buffers, batch).grads["params"]
    ref = _higher_meta_grad(model, torch.optim.SGD(model.parameters(), lr=0.5), batch, steps=3, first_order=False)
    for k in ref:
        torch.testing.assert_close(ours[k], ref[k], rtol=0, atol=1e-10)
    assert max(float(ref[k].abs().max()) for k in ref) > 1e-3
