"""How much of the demo's truth the learned design φ(x) carries: a diagnostic, never a choice.

The demo knows each image's true generic quality and attributes. This fits `learned-prior` on the
training raters (with each generic column) and reports, on the test raters' images (unseen in
training), the R² of a linear fit of the truth on the design's generic column s alone and on all
its columns. What the design misses here bounds what any head on it can recover.

    python benchmarks/design_truth.py [--no-write]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write_section  # noqa: E402

from piaa.registry import create_method  # noqa: E402
from piaa.tasks.format import read_dataset  # noqa: E402
from piaa.tasks.simulate import DemoSpec, ensure_demo, simulate  # noqa: E402


def r_squared(columns: np.ndarray, target: np.ndarray) -> float:
    x = np.column_stack([np.ones(len(target)), columns])
    coef = np.linalg.lstsq(x, target, rcond=None)[0]
    return float(1 - np.var(target - x @ coef) / np.var(target))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    data = read_dataset(ensure_demo(0))
    truth = simulate(DemoSpec(), 0)["truth"]["structure"]
    where = pd.Index(truth["images"]).get_indexer(data.images)
    test_images = np.unique(np.concatenate([r.image_index for r in data.raters("test")]))
    generic, attributes = truth["generic"][where[test_images]], truth["attributes"][where[test_images]]
    rows = []
    for label, generic_column in (("component networks (`generic=pcs`, default)", "pcs"), ("PA-IAA networks (`generic=pa-iaa`)", "pa-iaa")):
        method = create_method("learned-prior", generic=generic_column).fit(data.without("test"), seed=0)
        phi = method.design(data.features[test_images])
        attribute_r2 = [r_squared(phi, attributes[:, j]) for j in range(attributes.shape[1])]
        rows.append((label, r_squared(phi[:, :1], generic), r_squared(phi, generic), min(attribute_r2), max(attribute_r2)))
        print(f"{label}: generic R² from s {rows[-1][1]:.3f}, from φ {rows[-1][2]:.3f}; attributes from φ {rows[-1][3]:.3f}–{rows[-1][4]:.3f}", flush=True)
    lines = [
        "`python benchmarks/design_truth.py` — R² of a linear fit of the demo's truth on the design, on the "
        f"{len(test_images)} images of its test raters (unseen in training); `learned-prior` fitted on the training raters, seed 0.",
        "",
        "| generic column s from | true generic quality from s | … from all of φ | true attributes from φ (min–max over 6) |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {label} | {a:.3f} | {b:.3f} | {c:.3f}–{d:.3f} |" for label, a, b, c, d in rows]
    if not args.no_write:
        write_section("design-truth", "What the learned design carries of the demo's truth (diagnostic)", "\n".join(lines))


if __name__ == "__main__":
    main()
