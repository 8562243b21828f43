"""The paper-style comparison: several methods, one protocol, the same support draws, one table.

Each method is trained once (seeded) on the training raters and evaluated with `piaa.protocol`,
whose support draws depend only on (seed, user, shots, repeat), so every method sees the same
images. A method that fails to train, or fails on some raters, is reported and the others' results
are kept. Results are tidy tables (one row per method, user, shots, repeat); the summary, the
significance tests and the plots are views of them.
"""

from __future__ import annotations

import math
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from piaa.atomic import staged_directory, write_json, write_text
from piaa.errors import ConfigError
from piaa.protocol import evaluate
from piaa.registry import create_method, method_class
from piaa.tasks.format import RaterDataset
from piaa.tasks.sampling import MIN_QUERY
from piaa.threads import limited_threads

ROW_COLUMNS = ["method", "user", "shots", "repeat", "n_support", "n_query", "srocc", "plcc", "error"]
ALPHA = 0.05  # significance level of the paired tests


@dataclass
class BenchmarkResult:
    rows: pd.DataFrame  # ROW_COLUMNS
    timings: pd.DataFrame  # method, status, fit_seconds, eval_seconds, prior
    fit_failures: dict[str, str] = field(default_factory=dict)  # method → error line
    skipped: dict[int, list[str]] = field(default_factory=dict)  # shots → raters with too few images
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def methods(self) -> list[str]:
        """Methods in the order asked for (including those that failed)."""
        return list(self.meta["methods"])

    @property
    def per_rater(self) -> pd.DataFrame:
        """Mean over repeats per (method, shots, user), ignoring failed episodes."""
        ok = self.rows[self.rows["error"].isna()]
        return ok.groupby(["method", "shots", "user"], sort=True)[["srocc", "plcc"]].mean().reset_index()

    @property
    def summary(self) -> pd.DataFrame:
        """SROCC and PLCC mean ± std over raters for each method and shot setting (std with ddof=0)."""
        per_rater = self.per_rater
        out = []
        for method in self.methods:
            for shots in self.meta["shots"]:
                rater = per_rater[(per_rater["method"] == method) & (per_rater["shots"] == shots)]
                rows = self.rows[(self.rows["method"] == method) & (self.rows["shots"] == shots)]
                sr, pl = rater["srocc"].dropna(), rater["plcc"].dropna()
                out.append({
                    "method": method, "shots": int(shots),
                    "srocc_mean": _mean(sr), "srocc_std": _std(sr), "plcc_mean": _mean(pl), "plcc_std": _std(pl),
                    "n_users": int(len(sr)),
                    "n_failed_users": int(rows.loc[rows["error"].notna(), "user"].nunique()),
                    "status": "fit failed" if method in self.fit_failures else "ok",
                })
        return pd.DataFrame(out)

    def ranking(self, shots: int) -> list[str]:
        """Methods with results at `shots`, best mean SROCC first (ties broken by name)."""
        s = self.summary
        s = s[(s["shots"] == shots) & s["srocc_mean"].notna()]
        order = {m: i for i, m in enumerate(self.methods)}
        # Means equal to 6 decimals are a tie (e.g. methods that all fall back to the prior at 0 shots):
        # the method listed first wins it.
        return [m for _, _, m in sorted(zip(-s["srocc_mean"].round(6), s["method"].map(order), s["method"]))]

    @property
    def significance(self) -> pd.DataFrame:
        """Paired Wilcoxon signed-rank tests over raters: the best method against the runner-up and giaa."""
        out = []
        for shots in self.meta["shots"]:
            ranked = self.ranking(shots)
            if len(ranked) < 2:
                continue
            best = ranked[0]
            rivals = [("runner-up", ranked[1])]
            if "giaa" in ranked and "giaa" not in (best, ranked[1]):
                rivals.append(("giaa", "giaa"))
            for role, other in rivals:
                out.append({"shots": int(shots), "best": best, "versus": role, "other": other, **self.paired_test(best, other, shots)})
        columns = ["shots", "best", "versus", "other", "n_raters", "mean_diff", "wins", "statistic", "p_value", "significant"]
        return pd.DataFrame(out, columns=columns)

    def paired(self, a: str, b: str, shots: int) -> pd.DataFrame:
        """Per-rater SROCC of `a` and `b` on the raters where both are defined."""
        pr = self.per_rater
        pr = pr[pr["shots"] == shots].pivot(index="user", columns="method", values="srocc")
        if a not in pr or b not in pr:
            return pd.DataFrame(columns=[a, b])
        return pr[[a, b]].dropna()

    def paired_test(self, a: str, b: str, shots: int) -> dict[str, Any]:
        from scipy.stats import wilcoxon

        both = self.paired(a, b, shots)
        diff = (both[a] - both[b]).to_numpy() if len(both) else np.zeros(0)
        stat, p = float("nan"), float("nan")
        if len(diff) and np.all(np.abs(diff) < 1e-12):
            stat, p = 0.0, 1.0  # identical rankings on every rater (e.g. a pure shift of the prior)
        elif len(diff) >= 2:
            res = wilcoxon(diff)
            stat, p = float(res.statistic), float(res.pvalue)
        return {
            "n_raters": int(len(diff)),
            "mean_diff": _mean(pd.Series(diff)),
            "wins": int((diff > 1e-12).sum()),
            "statistic": stat,
            "p_value": p,
            "significant": bool(p < ALPHA) if not math.isnan(p) else False,
        }

    def failures(self) -> pd.DataFrame:
        """Every failure: whole-method fit failures and per-episode errors."""
        fit = [{"method": m, "stage": "fit", "user": "", "shots": -1, "repeat": -1, "error": e} for m, e in self.fit_failures.items()]
        ep = self.rows[self.rows["error"].notna()]
        episodes = [{"method": r.method, "stage": "adapt", "user": r.user, "shots": int(r.shots), "repeat": int(r.repeat), "error": r.error} for r in ep.itertuples()]
        return pd.DataFrame(fit + episodes, columns=["method", "stage", "user", "shots", "repeat", "error"])


def _mean(s: pd.Series) -> float:
    return float(s.mean()) if len(s) else float("nan")


def _std(s: pd.Series) -> float:
    return float(s.std(ddof=0)) if len(s) else float("nan")


def split_overrides(methods: Sequence[str], assignments: Iterable[str] | None) -> dict[str, list[str]]:
    """`field=value` goes to every method whose config has the field; `method.field=value` to one."""
    per: dict[str, list[str]] = {m: [] for m in methods}
    for item in assignments or []:
        if "=" not in item:
            raise ConfigError(f"--set expects field=value or method.field=value, got {item!r}")
        key, value = item.split("=", 1)
        key = key.strip()
        target, _, name = key.partition(".")
        if name and target in per:
            per[target].append(f"{name}={value}")
            continue
        if name:
            raise ConfigError(f"--set {item!r}: {target!r} is not one of the benchmarked methods ({', '.join(methods)})")
        takers = [m for m in methods if key in method_class(m).Config.__dataclass_fields__]
        if not takers:
            raise ConfigError(f"--set {item!r}: no benchmarked method has a config field {key!r}")
        for m in takers:
            per[m].append(f"{key}={value}")
    return per


def run_benchmark(
    data: RaterDataset,
    methods: Sequence[str],
    *,
    shots: Iterable[int] = (0, 10, 100),
    repeats: int = 10,
    seed: int = 0,
    overrides: Iterable[str] | None = None,
    threads: int | None = 1,
    progress: bool = False,
    data_ref: str | None = None,
) -> BenchmarkResult:
    """Fit every method once on `data`'s train raters and evaluate all on its test raters."""
    from piaa.baselines.giaa import shared_priors

    methods = list(dict.fromkeys(m.strip() for m in methods if m.strip()))
    if not methods:
        raise ConfigError("--methods: give at least one method name (see `piaa methods`)")
    shot_list = sorted({int(k) for k in shots})
    if not shot_list or shot_list[0] < 0:
        raise ConfigError(f"--shots: expected one or more counts >= 0, got {shot_list}")
    if repeats < 1:
        raise ConfigError(f"--repeats: expected at least 1, got {repeats}")
    for m in methods:
        method_class(m)  # unknown names are a usage error, before anything is trained
    per_method = split_overrides(methods, overrides)
    configs = {m: create_method(m, per_method[m]) for m in methods}  # bad overrides fail here, up front
    train = data.without("test")
    frames, timing, fit_failures = [], [], {}
    skipped: dict[int, list[str]] = {}
    with limited_threads(threads), shared_priors():
        for name in methods:
            method = configs[name]
            start = time.perf_counter()
            try:
                method.fit(train, seed=seed, progress=progress)
            except Exception as exc:  # one method's failure must not lose the others' results
                fit_failures[name] = _error_line(exc)
                timing.append({"method": name, "status": "fit failed", "fit_seconds": time.perf_counter() - start, "eval_seconds": 0.0, "prior": ""})
                continue
            fit_s = time.perf_counter() - start
            start = time.perf_counter()
            result = evaluate(method, data, shots=shot_list, repeats=repeats, seed=seed, progress=progress)
            eval_s = time.perf_counter() - start
            skipped = {int(k): list(v) for k, v in result.skipped.items()}
            frames.append(result.rows.assign(method=name))
            n_failed = int(result.rows["error"].notna().sum())
            prior = ("shared" if method.prior_shared else "trained") if method.can_share_prior else ""
            timing.append({"method": name, "status": "ok" if not n_failed else f"{n_failed} episode(s) failed", "fit_seconds": fit_s, "eval_seconds": eval_s, "prior": prior})
    rows = pd.concat(frames, ignore_index=True)[ROW_COLUMNS] if frames else pd.DataFrame(columns=ROW_COLUMNS)
    rows["error"] = rows["error"].astype(object)
    meta = {
        "data": data_ref or (str(data.path) if data.path else data.name), "dataset": data.name,
        "methods": methods, "shots": shot_list, "repeats": repeats, "seed": seed,
        "overrides": {m: v for m, v in per_method.items() if v}, "threads": threads,
    }
    return BenchmarkResult(rows=rows, timings=pd.DataFrame(timing), fit_failures=fit_failures, skipped=skipped, meta=meta)


def _error_line(exc: BaseException) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" ({last.filename.rsplit('/', 1)[-1]}:{last.lineno})" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"


# -- views ------------------------------------------------------------------------------------------
def _cell(mean: float, std: float) -> str:
    return "–" if math.isnan(mean) else f"{mean:.3f} ± {std:.3f}"


def _strict_best(summary: pd.DataFrame, ranked: list[str], shots: int) -> str | None:
    """The best method if it beats the runner-up at 3 decimals (what the table shows), else None."""
    if len(ranked) < 2:
        return None
    mean = summary[summary["shots"] == shots].set_index("method")["srocc_mean"]
    return ranked[0] if round(mean[ranked[0]], 3) > round(mean[ranked[1]], 3) else None


def summary_markdown(result: BenchmarkResult) -> str:
    """The paper-style table (methods × shot settings, SROCC and PLCC), significance, failures."""
    s = result.summary
    shots = result.meta["shots"]
    lines = [
        f"SROCC and PLCC on {result.meta['dataset']} test raters: mean ± std over raters (each rater "
        f"averaged over {result.meta['repeats']} support draws; seed {result.meta['seed']}).",
        "",
        "| method | " + " | ".join(f"SROCC {k}-shot" for k in shots) + " | " + " | ".join(f"PLCC {k}-shot" for k in shots) + " |",
        "|---|" + "---:|" * (2 * len(shots)),
    ]
    ranking = {k: result.ranking(k) for k in shots}
    for method in result.methods:
        if method in result.fit_failures:
            lines.append(f"| {method} | " + " | ".join(["fit failed"] * (2 * len(shots))) + " |")
            continue
        cells = []
        for metric in ("srocc", "plcc"):
            for k in shots:
                row = s[(s["method"] == method) & (s["shots"] == k)].iloc[0]
                text = _cell(row[f"{metric}_mean"], row[f"{metric}_std"])
                if metric == "srocc" and _strict_best(s, ranking[k], k) == method:
                    text = f"**{text}**"
                cells.append(text)
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    n_users = sorted(set(s.loc[s["n_users"] > 0, "n_users"]))
    lines += ["", f"Raters per cell: {', '.join(map(str, n_users)) or 'none'}. Best SROCC per column in bold."]
    sig = result.significance
    if len(sig):
        lines += ["", "Paired Wilcoxon signed-rank tests over raters (per-rater SROCC, two-sided, α = 0.05):", ""]
        for r in sig.itertuples():
            verdict = "significant" if r.significant else "not significant"
            p = "n/a" if math.isnan(r.p_value) else f"{r.p_value:.2g}"
            lines.append(
                f"- {r.shots} shots: {r.best} vs {r.other} ({r.versus}): mean difference {r.mean_diff:+.3f}, "
                f"better on {r.wins}/{r.n_raters} raters, p = {p} ({verdict})"
            )
    fails = result.failures()
    if len(fails):
        lines += ["", "Failures (results of the other methods and raters are kept):", ""]
        for (method, stage), grp in fails.groupby(["method", "stage"], sort=False):
            first = grp.iloc[0]
            what = "training failed" if stage == "fit" else f"{len(grp)} episode(s) on {grp['user'].nunique()} rater(s) failed"
            lines.append(f"- {method}: {what}; first error: {first.error}")
    skipped = {k: v for k, v in result.skipped.items() if v}
    if skipped:
        lines += [""] + [f"- {len(v)} rater(s) skipped at {k} shots (fewer than {k + MIN_QUERY} images)" for k, v in sorted(skipped.items())]
    return "\n".join(lines) + "\n"


def timings_markdown(result: BenchmarkResult) -> str:
    lines = ["| method | fit (s) | evaluation (s) | prior | status |", "|---|---:|---:|---|---|"]
    for r in result.timings.itertuples():
        lines.append(f"| {r.method} | {r.fit_seconds:.2f} | {r.eval_seconds:.2f} | {r.prior or '–'} | {r.status} |")
    return "\n".join(lines) + "\n"


def default_pair(result: BenchmarkResult) -> tuple[str, str] | None:
    """The best method at the largest shot setting against giaa (or against the runner-up)."""
    for k in sorted(result.meta["shots"], reverse=True):
        ranked = result.ranking(k)
        if len(ranked) >= 2:
            best = ranked[0]
            other = "giaa" if "giaa" in ranked and best != "giaa" else ranked[1]
            return best, other
    return None


def write_benchmark(result: BenchmarkResult, out: str | Path, *, compare: tuple[str, str] | None = None, overwrite: bool = False) -> Path:
    """Write tables, plots and metadata into `out` (staged, then renamed; never over a non-empty dir)."""
    from piaa.plots import plot_per_rater, plot_srocc_vs_shots

    out = Path(out)
    pair = compare or default_pair(result)
    if compare is not None:
        for m in compare:
            if m not in result.methods:
                raise ConfigError(f"--compare: {m!r} is not one of the benchmarked methods ({', '.join(result.methods)})")
    with staged_directory(out, overwrite=overwrite) as tmp:
        write_text(tmp / "results.csv", result.rows.to_csv(index=False))
        write_text(tmp / "summary.csv", result.summary.to_csv(index=False))
        write_text(tmp / "significance.csv", result.significance.to_csv(index=False))
        write_text(tmp / "failures.csv", result.failures().to_csv(index=False))
        write_text(tmp / "timings.csv", result.timings.to_csv(index=False, float_format="%.3f"))
        write_text(tmp / "summary.md", "# Benchmark\n\n" + summary_markdown(result) + "\n## Time per method\n\n" + timings_markdown(result))
        plot_srocc_vs_shots(result, tmp / "srocc_vs_shots.png")
        files = ["results.csv", "summary.csv", "summary.md", "significance.csv", "failures.csv", "timings.csv", "srocc_vs_shots.png"]
        if pair is not None:
            name = f"per_rater_{pair[0]}_vs_{pair[1]}.png"
            plot_per_rater(result, pair[0], pair[1], tmp / name)
            files.append(name)
        write_json(tmp / "benchmark.json", {**result.meta, "skipped": {str(k): v for k, v in sorted(result.skipped.items())},
                                            "fit_failures": result.fit_failures, "compare": list(pair) if pair else None, "files": files})
    return out
