"""Baseline benchmark speed: the whole `piaa benchmark` on the demo, and the time each method takes.

Target (issue 6): the closed-form and prior-only baselines (giaa, ridge, knn, user-mean, pam) at
0/10/100 shots x 10 repeats, training included, under 30 s on 2 cores. finetune (gradient steps per
rater) is timed separately.
Run: python benchmarks/baselines.py [--skip-finetune]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write_section  # noqa: E402

from piaa.benchmark import run_benchmark  # noqa: E402
from piaa.runs import resolve_data  # noqa: E402

FAST_METHODS = ["giaa", "ridge", "knn", "user-mean", "pam"]


def timed(data, methods):
    """Wall time, and CPU time of this process: with one thread, CPU time is what the wall time
    would be on an idle machine, so it says more than wall time when other jobs share the cores."""
    start, cpu = time.perf_counter(), time.process_time()
    result = run_benchmark(data, methods, shots=(0, 10, 100), repeats=10, seed=0)
    return result, time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    data, _ = resolve_data("demo")
    result, total, cpu = timed(data, FAST_METHODS)
    frames = [result]
    print(f"closed-form and prior-only baselines ({', '.join(FAST_METHODS)}): {total:.1f} s wall, {cpu:.1f} s CPU")
    ft_line = ""
    if "--skip-finetune" not in sys.argv:
        ft, ft_total, ft_cpu = timed(data, ["finetune"])
        frames.append(ft)
        print(f"finetune alone (its own prior included): {ft_total:.1f} s wall, {ft_cpu:.1f} s CPU")
        ft_line = f"finetune alone, its own prior included: {ft_total:.1f} s wall ({ft_cpu:.1f} s CPU).\n\n"
    lines = ["| method | fit (s) | evaluation, 30 raters x (1 + 10 + 10) episodes (s) | prior | SROCC@10 | SROCC@100 |", "|---|---:|---:|---|---:|---:|"]
    for res in frames:
        s = res.summary.set_index(["method", "shots"])["srocc_mean"]
        for t in res.timings.itertuples():
            lines.append(f"| {t.method} | {t.fit_seconds:.2f} | {t.eval_seconds:.2f} | {t.prior} | {s[(t.method, 10)]:.3f} | {s[(t.method, 100)]:.3f} |")
            print(f"  {t.method:10s} fit {t.fit_seconds:6.2f} s  evaluation {t.eval_seconds:6.2f} s  prior {t.prior}")
    body = (
        f"`piaa benchmark` on the demo, shots 0/10/100, 10 repeats, seed 0, one torch/BLAS thread (the default):\n"
        f"**{total:.1f} s** wall ({cpu:.1f} s CPU) in all for {', '.join(FAST_METHODS)} (training included; target < 30 s).\n"
        f"With one thread, CPU time is about what the wall time is on an idle machine.\n\n"
        + ft_line
        + "\n".join(lines)
        + "\n\n\"shared\": the method reused the generic prior trained by an earlier method of the same run "
        "(same prior configuration and seed), so its fit time is only its own extra work.\n"
        "Per-method times are wall seconds; they were taken on a machine shared with other jobs (re-run to refresh).\n\n"
        "Reproduce: `python benchmarks/baselines.py`."
    )
    write_section("baselines", "Baselines and the benchmark command (issue 6)", body)


if __name__ == "__main__":
    main()
