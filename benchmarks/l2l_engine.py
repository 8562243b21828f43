"""piaa's default meta-gradient engine against `engine=learn2learn`, on the demo's shapes.

    .venv-vision/bin/python benchmarks/l2l_engine.py           # throughput + full demo runs, writes docs/benchmarks.md
    .venv-vision/bin/python benchmarks/l2l_engine.py --quick   # throughput only, fewer repetitions, printed only

Needs learn2learn (`make install-learn2learn`, vision venv). Throughput is raters per second of
meta-gradient computation (inner loop + meta-gradient, no outer update) for the MAML-family presets'
shapes: a meta-batch of 8 demo raters, support padded to 50 images, 50 query images, 5 inner SGD
steps, head 256→128→64→1 in float32; dropout off so both engines compute the same function. Times
are the best of several repetitions. The demo runs meta-train each preset with both engines
(seed 0) and evaluate with `piaa evaluate`'s protocol.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _meta_setup import best_time, demo_meta_batch  # noqa: E402
from _report import write_section  # noqa: E402

from piaa.heap import keep_freed_memory  # noqa: E402
from piaa.meta import MAML, InnerSGD, MetaSGD  # noqa: E402
from piaa.meta.engines import meta_gradient_fn  # noqa: E402
from piaa.meta.learn2learn_engine import build  # noqa: E402,F401  (registers engine=learn2learn)
from piaa.runs import resolve_data  # noqa: E402


def throughput(repeats: int) -> str:
    batch, model, theta, buffers = demo_meta_batch(50, 50)
    n = len(batch)
    lines = [
        f"Meta-gradient throughput, raters/second: piaa's default engine (`batched`; for this head the closed form of "
        f"`piaa.meta.closed_form` for MAML and first-order MAML, autograd through stacked per-rater parameters for "
        f"Meta-SGD) against `engine=learn2learn` (`l2l.algorithms.MAML`/`MetaSGD`, `clone()` + "
        f"`adapt()` rater by rater). Meta-batch of {n} demo raters, support padded to 50 images, 50 query images, "
        f"5 inner SGD steps (lr 0.05), head 256→128→64→1, float32, best of {repeats}. Both engines give the same "
        "gradients to 1e-5 (tests/meta/test_learn2learn_gradients.py).",
        "",
        "| preset | order | default (batched) | learn2learn | default / learn2learn |",
        "|---|---|---:|---:|---:|",
    ]
    for preset, order, algorithm in (("maml", "second", MAML), ("fomaml", "first", MAML), ("meta-sgd", "second", MetaSGD)):
        alg = algorithm(model, InnerSGD(0.05), 5, first_order=order == "first")
        meta = alg.init_meta(theta)
        default, l2l = meta_gradient_fn(alg, "batched"), meta_gradient_fn(alg, "learn2learn")
        rate_default = n / best_time(lambda: default(meta, buffers, batch), repeats)
        rate_l2l = n / best_time(lambda: l2l(meta, buffers, batch), repeats)
        lines.append(f"| {preset} | {order} | {rate_default:.0f} | {rate_l2l:.0f} | {rate_default / rate_l2l:.1f}x |")
        print(lines[-1], flush=True)
    return "\n".join(lines)


def demo_runs(methods: list[str]) -> str:
    from piaa.protocol import evaluate
    from piaa.registry import create_method

    data, _ = resolve_data(None)
    lines = [
        "Full meta-training on the demo with each engine (seed 0, preset defaults otherwise), then `piaa evaluate`'s "
        "protocol (30 test raters × {10, 100} shots × 10 repeats). `val choices` are the adaptation step sizes "
        "chosen per shot count on the validation raters; `best step` is the meta-step model selection kept "
        "(one-SE rule; 0: the pretrained prior); `val SROCC by step` is every validation of the run (early stopping: patience 3).",
        "",
        "| method | engine | meta-train (s) | val SROCC by step | best step | val choices (shots: lr) | SROCC@10 | SROCC@100 |",
        "|---|---|---:|---|---:|---|---:|---:|",
    ]
    for name in methods:
        for engine in ("batched", "learn2learn"):
            method = create_method(name, engine=engine)
            start = time.perf_counter()
            method.fit(data.without("test"), seed=0)
            fit_s = time.perf_counter() - start
            vals = [e for e in method.fit_log if "val_srocc" in e and "step" in e]
            best = next((e["selected_step"] for e in method.fit_log if "selected_step" in e), 0)  # the one-SE rule's choice
            choices = ", ".join(f"{k}: {v:g}" for k, v in sorted(method.adapt_lrs.items()))
            summary = evaluate(method, data, shots=[10, 100], repeats=10, seed=0).summary.set_index("shots")
            trajectory = ", ".join(f"{e['step']}: {e['val_srocc']:.4f}" for e in vals)
            lines.append(f"| {name} | {engine} | {fit_s:.0f} | {trajectory} | {best} | {choices} | {summary.loc[10, 'srocc_mean']:.4f} | {summary.loc[100, 'srocc_mean']:.4f} |")
            print(lines[-1], flush=True)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, no demo runs, docs left alone")
    parser.add_argument("--methods", default="maml,fomaml", help="presets for the demo runs (comma-separated)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as meta-training does (piaa.heap); both engines run under it
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    note = f"torch threads: {torch.get_num_threads()}; 1-minute load average at the start: {load:.1f} (figures from a busy machine are lower bounds; the ratio is measured in one run)."
    body = throughput(3 if args.quick else 7)
    if args.quick:
        return
    body += "\n\n" + demo_runs([m for m in args.methods.split(",") if m])
    write_section("learn2learn", "Default engine vs learn2learn (MAML family)", body + "\n\n" + note)


if __name__ == "__main__":
    main()
