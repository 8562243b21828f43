"""PA-IAA on the demo: SROCC of giaa / ridge / pa-iaa at 0, 10 and 100 shots, the personality head's
quality, training time and the time to adapt one rater at 10 shots.

    python benchmarks/pa_iaa.py [--repeats 10] [--seed 0] [--no-write]

Run it from outside the repository root (or with the package installed) so `piaa` is the installed one.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write_section  # noqa: E402

from piaa.protocol import evaluate  # noqa: E402
from piaa.registry import create_method  # noqa: E402
from piaa.runs import resolve_data  # noqa: E402
from piaa.tasks.sampling import draw_support  # noqa: E402

SHOTS = (0, 10, 100)


def fmt(summary, shots: int) -> str:
    row = summary[summary["shots"] == shots]
    if row.empty or not int(row["n_users"].iloc[0]):
        return "skipped (no Big-Five)" if not row.empty and int(row["n_no_big_five"].iloc[0]) else "–"
    return f"{row['srocc_mean'].iloc[0]:.3f} ± {row['srocc_std'].iloc[0]:.3f}"


def adapt_timing(method, data, shots: int = 10, seed: int = 0) -> tuple[float, float]:
    """Median and 95th percentile (ms) of one `adapt` call at `shots` shots, over test raters × repeats."""
    times = []
    for rater in data.raters("test"):
        x_all = np.asarray(data.features[rater.image_index], dtype=np.float32)
        for repeat in range(5):
            support, _ = draw_support(len(rater), shots, seed=seed, user=rater.user, repeat=repeat)
            start = time.perf_counter()
            method.adapt(x_all[support], rater.scores[support], big_five=rater.big_five, seed=repeat)
            times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times)), float(np.percentile(times, 95))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()

    data, _ = resolve_data(None)
    train = data.without("test")
    rows, fit_seconds, fitted = [], {}, {}
    for name in ("giaa", "ridge", "pa-iaa"):
        method = create_method(name)
        start = time.perf_counter()
        method.fit(train, seed=args.seed)
        fit_seconds[name] = time.perf_counter() - start
        fitted[name] = method
        result = evaluate(method, data, shots=SHOTS, repeats=args.repeats, seed=args.seed)
        rows.append((name, result.summary))
        print(name, f"fit {fit_seconds[name]:.1f} s", result.summary.to_string(index=False), sep="\n", flush=True)
    pa = fitted["pa-iaa"]
    no_b5 = evaluate(pa, data, shots=SHOTS, repeats=args.repeats, seed=args.seed, use_big_five=False)
    rows.append(("pa-iaa, Big-Five not used", no_b5.summary))
    median_ms, p95_ms = adapt_timing(pa, data, seed=args.seed)

    meta = data.meta.get("ground_truth", {})
    lines = [
        f"Demo dataset, seed {args.seed}, {args.repeats} repeats, {len(data.users_in('test'))} test raters; "
        "SROCC mean ± std over raters (0 shots: one draw). `piaa evaluate --method NAME --shots 0 --shots 10 --shots 100`.",
        "",
        "| method | 0 shots | 10 shots | 100 shots |",
        "|---|---|---|---|",
    ]
    lines += [f"| {name} | " + " | ".join(fmt(s, k) for k in SHOTS) + " |" for name, s in rows]
    lines += [
        "",
        f"Ground truth on the demo: generic oracle {meta.get('generic_oracle_srocc')}, Big-Five oracle "
        f"{meta.get('big_five_oracle_srocc')}, ceiling {meta.get('ceiling_srocc')}. "
        "At 0 shots pa-iaa uses only the rater's Big-Five (users.csv); giaa and ridge give the generic prior.",
        "",
    ]
    quality = pa.personality.get("quality") or {}
    if quality:
        lines += [
            f"Personality head on {pa.personality['heldout_raters']} held-out personality raters ({quality['n_likes']} likes):",
            "",
            "| trait | Pearson r | MAE |",
            "|---|---|---|",
        ]
        lines += [f"| {t} | {v['pearson_r']:.3f} | {v['mae']:.3f} |" for t, v in quality["traits"].items()]
        lines += [f"| mean | {quality['mean_pearson_r']:.3f} | {quality['mean_mae']:.3f} |", ""]
    lines += [
        "| timing | value | target |",
        "|---|---|---|",
        f"| train pa-iaa on the demo (fit) | {fit_seconds['pa-iaa']:.1f} s | < 120 s on 2 cores |",
        f"| adapt one rater at 10 shots (median / p95) | {median_ms:.1f} / {p95_ms:.1f} ms | < 50 ms |",
        f"| train giaa / ridge (for reference) | {fit_seconds['giaa']:.1f} / {fit_seconds['ridge']:.1f} s | |",
    ]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section("pa_iaa", "PA-IAA (personality-assisted) on the demo", body)


if __name__ == "__main__":
    main()
