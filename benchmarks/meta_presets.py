"""Does each meta-learning preset meta-learn? Validation SROCC at meta-step 0 and at the selected step,
test SROCC at 0/10/100 shots, with and without meta-training (`meta_steps=0`: the same preset's
pretrained prior + the same test-time adaptation, step sizes chosen the same way).

    python benchmarks/meta_presets.py                      # all presets; writes docs/benchmarks.md
    python benchmarks/meta_presets.py --presets maml,anil  # some, print only
    python benchmarks/meta_presets.py --set val_split=raters --set refit=true  # other settings, print only

Demo data, seed 0, the `piaa evaluate` protocol (30 test raters x 10 draws). Everything a preset
chooses (selected step, step sizes) is chosen on validation raters; test raters only score.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write_section  # noqa: E402

from piaa.protocol import evaluate  # noqa: E402
from piaa.registry import create_method  # noqa: E402
from piaa.runs import resolve_data  # noqa: E402

PRESETS = ("blg-piaa", "blg-piaa-tuned", "maml", "fomaml", "reptile", "meta-sgd", "anil")


def run(name: str, data, shots=(0, 10, 100), **overrides) -> dict:
    method = create_method(name, **overrides)
    started = time.perf_counter()
    method.fit(data.without("test"), seed=0)
    fit_s = time.perf_counter() - started
    summary = evaluate(method, data, shots=list(shots), repeats=10, seed=0).summary.set_index("shots")
    selection = next(e for e in method.fit_log if "selected_step" in e)
    return {"test": {k: float(summary.loc[k, "srocc_mean"]) for k in shots}, "fit_s": fit_s, **selection}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", default=",".join(PRESETS))
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="config override for every preset (both runs)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data, _ = resolve_data(None)
    lines = [
        "Demo, seed 0, 30 test raters x 10 draws; `val@0` / `val@sel` = mean validation SROCC (10 and 100 shots, "
        "validation raters, rating images that fitting never sees: `val_split=image-disjoint`) at meta-step 0 and at the step model selection kept; `gain` = test@10 minus test@10 "
        "of the same preset with `--set meta_steps=0`.",
        "",
        "`val tuned` = the same at each prior's chosen test-time step sizes (the model-selection check: the "
        "meta-trained prior is kept only if it beats step 0 there by more than one paired SE over validation raters).",
        "",
        "| preset | val@0 | val@sel (step) | val tuned: step 0 / sel | test@0 | test@10 | test@100 | test@0/10/100, meta_steps=0 | gain @10 | gain @100 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in args.presets.split(","):
        cfg = create_method(name).Config.with_overrides(None, args.set).to_dict() if args.set else {}
        changed = {k: v for k, v in cfg.items() if k in {item.split("=", 1)[0].strip() for item in args.set}}
        r = run(name, data, **changed)
        zero = run(name, data, **{**changed, "meta_steps": 0})
        t, z = r["test"], zero["test"]
        tuned = (f"{r['val_srocc_step0_tuned']:.3f} / {r['val_srocc_selected_tuned']:.3f}" if "val_srocc_step0_tuned" in r else "— (step 0 selected)")
        lines.append(f"| `{name}` | {r['val_srocc_step0']:.3f} | {r['val_srocc_selected']:.3f} ({r['selected_step']}) | {tuned} | "
                     f"{t[0]:.3f} | {t[10]:.3f} | {t[100]:.3f} | {z[0]:.3f} / {z[10]:.3f} / {z[100]:.3f} | "
                     f"{t[10] - z[10]:+.3f} | {t[100] - z[100]:+.3f} |")
        print(lines[-1], flush=True)
    if args.presets == ",".join(PRESETS) and not args.set:
        write_section("meta_presets", "Meta-learning presets: does meta-training help?", "\n".join(lines))


if __name__ == "__main__":
    main()
