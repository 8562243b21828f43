"""The structure limit of the demo: the best a method could do knowing how the demo was generated.

The simulator (piaa.tasks.simulate) knows each image's generic quality q and attributes a, and that a
rater's opinion is q + c · a · t_u with taste t_u ~ N(t_b5(u), (1 − share) I), where t_b5 is the part
of taste their Big-Five predicts. The oracle here is the learned-prior model with everything learned
replaced by the truth: design [q, a] instead of learned features, the true prior over tastes instead
of the empirical-Bayes one, the true noise and each rater's true scale instead of estimates. Given k
support ratings it predicts with the exact Gaussian posterior mean of t_u, on the protocol's own
support draws. No method that learns these things from data can expect to beat it (up to the
rounding and clipping of scores, which the Gaussian model ignores); the ceilings of `piaa data
describe` are its limits at 0 shots (the Big-Five oracle) and at infinitely many shots.

    python -m piaa.priors.structure_limit --shots 0 --shots 10 --shots 100 --repeats 10 --seed 0
"""

from __future__ import annotations

import argparse
from typing import Sequence

import numpy as np
import pandas as pd

from piaa.metrics import srocc
from piaa.tasks.sampling import draw_support, eligible

SCORE_STEP = 0.9  # score = round(3 + 0.9 · (bias + scale · (opinion + noise) / sd)) in the simulator


def oracle_predictions(q: np.ndarray, a: np.ndarray, y: np.ndarray, support: np.ndarray, *, unit: float,
                       mean: np.ndarray, var: float, kappa: float, noise_var: float) -> np.ndarray:
    """Posterior-mean opinion q + unit · a · t for every image, given the support's scores."""
    t = mean.copy()
    if len(support):
        xs = kappa * unit * a[support]
        xs = xs - xs.mean(axis=0)
        r = y[support] - y[support].mean() - kappa * (q[support] - q[support].mean())
        gram = var * xs @ xs.T + noise_var * np.eye(len(support))
        t = mean + var * xs.T @ np.linalg.solve(gram, r - xs @ mean)
    return q + unit * a @ t


def structure_limit(shots: Sequence[int] = (0, 10, 100), *, repeats: int = 10, seed: int = 0, demo_seed: int = 0) -> pd.DataFrame:
    """Mean SROCC over the demo's test raters of the oracle, with and without their Big-Five.

    Same draws as the protocol (`draw_support` with the same seed, user and repeat); one row per
    shot setting: shots, limit_big_five, limit_ratings_only, n_users.
    """
    from piaa.tasks.format import read_dataset
    from piaa.tasks.simulate import DemoSpec, ensure_demo, simulate

    data = read_dataset(ensure_demo(demo_seed))
    truth = simulate(DemoSpec(), demo_seed)["truth"]["structure"]
    image_pos = pd.Index(truth["images"]).get_indexer(data.images)
    rater_pos = {u: i for i, u in enumerate(truth["raters"])}
    unit, var = truth["personal_unit"], truth["taste_own_var"]
    rows = []
    for k in sorted({int(s) for s in shots}):
        with_b5, without = [], []
        for rater in data.raters("test"):
            if not eligible(rater, k):
                continue
            u = rater_pos[rater.user]
            images = image_pos[rater.image_index]
            q, a, y = truth["generic"][images], truth["attributes"][images], rater.scores.astype(np.float64)
            kappa = SCORE_STEP * truth["scale"][u] / truth["opinion_sd"]
            noise_var = (SCORE_STEP * truth["scale"][u] * truth["noise"]) ** 2 + 1.0 / 12.0  # plus rounding
            per = {True: [], False: []}
            for repeat in range(1 if k == 0 else repeats):
                support, query = draw_support(len(y), k, seed=seed, user=rater.user, repeat=repeat)
                for known in (True, False):
                    mean = truth["taste_big_five"][u] if known else np.zeros(a.shape[1])
                    pred = oracle_predictions(q, a, y, support, unit=unit, mean=mean, var=var, kappa=kappa, noise_var=noise_var)
                    per[known].append(srocc(pred[query], y[query]))
            with_b5.append(np.mean(per[True]))
            without.append(np.mean(per[False]))
        rows.append({"shots": k, "limit_big_five": float(np.mean(with_b5)), "limit_ratings_only": float(np.mean(without)), "n_users": len(with_b5)})
    return pd.DataFrame(rows)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m piaa.priors.structure_limit", description="The demo's structure limit beside its ceilings.")
    parser.add_argument("--shots", type=int, action="append")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from piaa.tasks.format import read_dataset
    from piaa.tasks.simulate import ensure_demo

    table = structure_limit(args.shots or [0, 10, 100], repeats=args.repeats, seed=args.seed)
    ceilings = read_dataset(ensure_demo(0)).meta.get("ground_truth", {})
    print("| shots | structure limit (Big-Five known) | structure limit (ratings only) | test raters |")
    print("|---:|---:|---:|---:|")
    for row in table.itertuples(index=False):
        print(f"| {row.shots} | {row.limit_big_five:.3f} | {row.limit_ratings_only:.3f} | {row.n_users} |")
    print()
    print("ceilings (all of a rater's images): " + ", ".join(f"{k} {v:.3f}" for k, v in ceilings.items()))


if __name__ == "__main__":
    main()
