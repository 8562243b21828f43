"""Meta-training speed: the meta-gradient engine against a lean hand-written batched (bmm) MAML on
the sinusoid shapes of Finn et al. (2017) and against a plain `higher` loop on the demo shapes, with
achieved GFLOP/s beside the machine's measured matmul peak. (What the presets reach on the demo:
benchmarks/meta_presets.py.)

    python benchmarks/meta_train.py --threads 1   # writes its sections of docs/benchmarks.md
                                                  # (run where learn2learn is installed, e.g. the vision
                                                  # env, to fill the learn2learn column)
    python benchmarks/meta_train.py --quick       # fewer repetitions, print only

Throughput is tasks per second of meta-gradient computation (inner loop + meta-gradient, no outer
update) on the same model, batch, inner optimiser, steps and order. Competing implementations are
timed interleaved (A, B, A, B, ...) and each keeps its best CPU time (`time.process_time`: on a
shared machine, wall time mostly measures the scheduler), so load hits both alike and the ratio is
measured in one run. FLOPs are counted by `torch.utils.flop_counter` (matrix products of forward,
backward and double backward) on one call; the matmul peak is timed the same way.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import higher
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _meta_setup import best_time, best_times, demo_meta_batch  # noqa: E402
from _report import write_section  # noqa: E402

from piaa.errors import PiaaError  # noqa: E402
from piaa.heap import keep_freed_memory  # noqa: E402
from piaa.meta import MAML, InnerAdam, InnerSGD, Reptile, weighted_mse  # noqa: E402
from piaa.meta.engines import meta_gradient_fn  # noqa: E402

CLOCK = time.process_time
ROUNDS = 10


def flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


MATMULS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")


def matmul_share(fn, repeats: int = 3) -> float:
    """Share of `fn`'s operator time spent in matrix products (torch.profiler, self times; of the
    fastest of `repeats` profiled calls)."""
    from torch.profiler import profile

    best = (float("inf"), 0.0)
    for _ in range(repeats):
        with profile() as prof:
            fn()
        events = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in events)
        best = min(best, (total, sum(e.self_cpu_time_total for e in events if e.key in MATMULS) / total))
    return best[1]


def matmul_peak(repeats: int, n: int = 1024) -> float:
    """GFLOP/s of a float32 n×n matrix product on this machine and thread count (best of `repeats`)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / best_time(lambda: a @ b, repeats, CLOCK) / 1e9


def bmm_maml(theta: list[torch.Tensor], batch, lr: float) -> list[torch.Tensor]:
    """The lean reference: MAML (one SGD step, second order) for Linear-ReLU-Linear-ReLU-Linear written
    by hand with stacked weights and `baddbmm`, gradients by autograd."""
    n = len(batch)
    leaves = [t.detach().requires_grad_() for t in theta]
    ws = [leaves[i].t().unsqueeze(0).expand(n, -1, -1) for i in (0, 2, 4)]
    bs = [leaves[i].view(1, 1, -1).expand(n, 1, -1) for i in (1, 3, 5)]

    def forward(ws, bs, x):
        h = torch.relu(torch.baddbmm(bs[0], x, ws[0]))
        h = torch.relu(torch.baddbmm(bs[1], h, ws[1]))
        return torch.baddbmm(bs[2], h, ws[2])

    loss = ((forward(ws, bs, batch.xs) - batch.ys) ** 2).mean(dim=(1, 2)).sum()
    g = torch.autograd.grad(loss, ws + bs, create_graph=True)
    fast_w = [w - lr * d for w, d in zip(ws, g[:3])]
    fast_b = [b - lr * d for b, d in zip(bs, g[3:])]
    query = ((forward(fast_w, fast_b, batch.xq) - batch.yq) ** 2).mean(dim=(1, 2)).mean()
    return list(torch.autograd.grad(query, leaves))


def sinusoid_shapes(repeats: int, peak: float) -> str:
    from piaa.meta.sinusoid import SinusoidTasks, mse, network

    net = network(0)
    theta = {k: v.detach() for k, v in net.named_parameters()}
    batch = SinusoidTasks().draw(25, torch.Generator().manual_seed(0))
    engines = {"closed form (default)": MAML(net, InnerSGD(0.01), 1, loss=mse),
               "autograd (`closed_form=False`)": MAML(net, InnerSGD(0.01), 1, loss=mse, closed_form=False)}
    fns = [(lambda a=a: a.meta_gradient(a.init_meta(theta), {}, batch)) for a in engines.values()]
    ref = lambda: bmm_maml(list(theta.values()), batch, 0.01)
    expected = ref()
    for fn in fns:  # same numbers
        assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(fn().grads["params"].values(), expected))
    rounds = [best_times(fns + [ref], repeats, CLOCK) for _ in range(ROUNDS)]  # (engines..., ref) per round
    t_ref = min(r[-1] for r in rounds)
    lines = [
        f"Sinusoid shapes (Finn et al. 2017): meta-batch of 25 tasks, 10 support + 10 query points, MLP 1→40→40→1, "
        f"one inner SGD step, second order, float32; {ROUNDS} rounds, each the best CPU time of {repeats} interleaved calls; "
        "times are the best over all rounds, engine / bmm the median of the rounds' ratios (range beside it). "
        "`bmm` = MAML for exactly this network written by hand with stacked weights and `baddbmm`, gradients by "
        "autograd (benchmarks/meta_train.py::bmm_maml). The engine takes its closed form for this plain ReLU MLP "
        "with a squared-error loss (`piaa.meta.closed_form`); the autograd row is the same engine forced onto "
        "its batched functional core.",
        "",
        "| implementation | CPU ms per meta-batch | tasks/s | matmul GFLOP/s | engine / bmm |",
        "|---|---:|---:|---:|---:|",
    ]
    for i, (name, fn) in enumerate(zip(engines, fns)):
        ratios = sorted(r[-1] / r[i] for r in rounds)
        t = min(r[i] for r in rounds)
        lines.append(f"| piaa.meta engine (`MAML`), {name} | {t * 1e3:.2f} | {25 / t:.0f} | {flops(fn) / t / 1e9:.2f} | "
                     f"{statistics.median(ratios):.2f}x ({ratios[0]:.2f}–{ratios[-1]:.2f}) |")
    f = flops(ref)
    lines += [
        f"| hand-written bmm MAML | {t_ref * 1e3:.2f} | {25 / t_ref:.0f} | {f / t_ref / 1e9:.2f} | 1.00x |",
        "",
        f"Matrix-product peak of this machine (1024×1024 float32 `a @ b`, same thread count): {peak:.1f} GFLOP/s. "
        f"At these shapes a meta-batch is about {f / 1e6:.2f} MFLOP of matrix products, so every implementation is "
        "bound by per-operation overhead, not arithmetic.",
    ]
    print("\n".join(lines[-6:]), flush=True)
    return "\n".join(lines)


def higher_meta_grad(model, torch_opt, batch, steps: int, first_order: bool) -> None:
    """The straightforward reference: one `higher` inner loop per rater, query loss backpropagated."""
    model.zero_grad()
    n = len(batch)
    detach = (lambda gs: [g.detach() for g in gs]) if first_order else None
    for i in range(n):
        with higher.innerloop_ctx(model, torch_opt, copy_initial_weights=False) as (fmodel, diffopt):
            for _ in range(steps):
                diffopt.step(weighted_mse(fmodel(batch.xs[i]), batch.ys[i], batch.ws[i]), grad_callback=detach)
            (weighted_mse(fmodel(batch.xq[i]), batch.yq[i], batch.wq[i]) / n).backward()


def higher_reptile(model, torch_opt, batch, steps: int) -> dict[str, torch.Tensor]:
    """Reference for blg-piaa's order: per rater, `higher` Adam on support then query, θ − θ′ averaged."""
    n = len(batch)
    theta = [p.detach() for p in model.parameters()]
    total = [torch.zeros_like(p) for p in theta]
    for i in range(n):
        with higher.innerloop_ctx(model, torch_opt, copy_initial_weights=True, track_higher_grads=False) as (fmodel, diffopt):
            for x, y, w in (batch.support, batch.query):
                x, y, w = x[i], y[i], w[i]
                for _ in range(steps):
                    diffopt.step(weighted_mse(fmodel(x), y, w))
            for acc, p0, p in zip(total, theta, fmodel.parameters()):
                acc += (p0 - p.detach()) / n
    return dict(zip((k for k, _ in model.named_parameters()), total))


def learn2learn_fn(algorithm):
    """learn2learn's MAML loop (one `clone()`/`adapt()` per rater, `engine=learn2learn`) for this
    algorithm, or None where learn2learn is not installed or cannot run it (Adam, Reptile)."""
    if not isinstance(algorithm, MAML):
        return None
    try:
        import piaa.meta.learn2learn_engine  # noqa: F401, PLC0415  (registers the engine)

        return meta_gradient_fn(algorithm, "learn2learn")
    except (PiaaError, ValueError):
        return None


def throughput(repeats: int, peak: float) -> str:
    batch, model, theta, buffers = demo_meta_batch(80, 80)
    n = len(batch)
    lines = [
        f"Meta-gradient throughput, raters/second (meta-batch of {n} demo raters, 80 support + 80 query images, "
        f"5 inner steps, head 256→128→64→1, float32; best CPU time of {repeats}, interleaved). `engine` = piaa.meta's "
        "default engine: for this head the closed form of `piaa.meta.closed_form` where it applies (hand-written "
        "reverse pass; an SGD inner loop moves the first layer through Gram products, so it does fewer matrix-product "
        "FLOPs than the references), elsewhere autograd through the batched functional core (`path`). `higher` = one "
        "`higher.innerloop_ctx` per rater, the straightforward loop; `learn2learn` = its MAML `clone()`/`adapt()` per "
        "rater (`engine=learn2learn`; SGD only; – where learn2learn is not installed or cannot run the case). The "
        "engine's results equal autograd's (tests/meta/test_closed_form.py).",
        "",
        "| inner | order | path | engine (raters/s) | higher (raters/s) | learn2learn (raters/s) | engine / higher | "
        "matmul MFLOP per meta-batch, engine / higher | engine GFLOP/s | higher GFLOP/s | engine at peak / higher | "
        "matmul share of time, engine / higher |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    cases = [("sgd", InnerSGD(0.05), torch.optim.SGD, "second"), ("sgd", InnerSGD(0.05), torch.optim.SGD, "first"),
             ("sgd", InnerSGD(0.05), torch.optim.SGD, "reptile"),
             ("adam", InnerAdam(1e-3), torch.optim.Adam, "second"), ("adam", InnerAdam(1e-3), torch.optim.Adam, "first"),
             ("adam", InnerAdam(1e-3), torch.optim.Adam, "reptile")]
    labels = {"second": "second (maml)", "first": "first (fomaml)"}
    for opt_name, inner, ref_opt, order in cases:
        if order == "reptile":
            algorithm = Reptile(model, inner, 5, query_phase=True)
        else:
            algorithm = MAML(model, inner, 5, first_order=order == "first")
        meta = algorithm.init_meta(theta)
        engine = lambda: algorithm.meta_gradient(meta, buffers, batch)
        torch_opt = ref_opt(model.parameters(), lr=inner.lr)
        if order == "reptile":
            reference = lambda: higher_reptile(model, torch_opt, batch, 5)
        else:
            reference = lambda: higher_meta_grad(model, torch_opt, batch, 5, order == "first")
        l2l = learn2learn_fn(algorithm)
        fns = [engine, reference] + ([lambda: l2l(meta, buffers, batch, None)] if l2l else [])
        times = best_times(fns, repeats, CLOCK)
        ours, ref = n / times[0], n / times[1]
        l2l_rate = f"{n / times[2]:.0f}" if l2l else "–"
        f_ours, f_ref = flops(engine) / 1e9, flops(reference) / 1e9
        if order == "reptile":
            label = "reptile, support + query (" + ("blg-piaa" if opt_name == "adam" else "blg-piaa-tuned") + ")"
        else:
            label = labels[order] if opt_name == "sgd" else order
        bound = times[1] / (f_ours / peak)
        lines.append(f"| {opt_name} | {label} | {"autograd" if algorithm.closed_form_plan(meta) is None else "closed form"} | {ours:.0f} | {ref:.0f} | {l2l_rate} | {ours / ref:.1f}x | "
                     f"{f_ours * 1e3:.0f} / {f_ref * 1e3:.0f} | {f_ours / times[0]:.1f} | {f_ref / times[1]:.1f} | {bound:.1f}x | "
                     f"{matmul_share(engine):.0%} / {matmul_share(reference):.0%} |")
        print(lines[-1], flush=True)
    lines += ["", f"Matrix-product peak of this machine (1024×1024 float32, same thread count, best CPU time): {peak:.1f} GFLOP/s. "
              "`engine at peak / higher` bounds engine / higher: the speed-up an engine would have if it ran its own "
              "matrix-product FLOPs at the peak with nothing else to do. The matmul share (torch.profiler self time in "
              "mm/addmm/bmm/baddbmm, fastest of 3 profiled calls) says where the time goes: the rest is element-wise work "
              "(the inner optimiser's update, activations and their derivatives), autograd and Python. Every implementation "
              "runs under the allocator setting piaa's meta-training uses (`piaa.heap.keep_freed_memory`: freed blocks stay "
              "in the process instead of being faulted in again at every meta-step)."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, print only")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    keep_freed_memory()  # as piaa's meta-training does (piaa.heap); every implementation runs under it
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    repeats = 5 if args.quick else 30
    peak = matmul_peak(repeats)
    sinusoid = sinusoid_shapes(repeats * 2, peak)
    demo = throughput(3 if args.quick else 7, peak)
    end = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    threads = (f"torch threads: {torch.get_num_threads()}; 1-minute load average {load:.1f} at the start and {end:.1f} at the end "
               "of the run (2 cores; figures from a busy machine are lower bounds).")
    print(threads)
    if args.quick:
        print(demo)
        return
    write_section("meta_train_sinusoid", "Meta-gradient engine vs a hand-written bmm MAML (sinusoid shapes)", sinusoid + "\n\n" + threads)
    write_section("meta_train", "Meta-training throughput (blg-piaa and the MAML family)", demo + "\n\n" + threads)


if __name__ == "__main__":
    main()
