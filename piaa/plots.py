"""PNG figures of a benchmark (matplotlib, Agg backend, imported only when a figure is drawn)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from piaa.atomic import write_bytes

if TYPE_CHECKING:
    from piaa.benchmark import BenchmarkResult

MARKERS = "osD^vP*Xh<>p"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    buf = io.BytesIO()
    # No timestamp in the metadata, so the same results give the same bytes.
    fig.savefig(buf, format="png", dpi=130, bbox_inches="tight", metadata={"Software": None})
    write_bytes(path, buf.getvalue())


def plot_srocc_vs_shots(result: "BenchmarkResult", path: str | Path) -> None:
    """Mean SROCC over raters against shot setting, one line per method, with standard-error bars."""
    plt = _pyplot()
    s = result.summary
    shots = list(result.meta["shots"])
    pos = np.arange(len(shots))  # equally spaced: 0, 10 and 100 shots read as settings, not a scale
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    methods = [m for m in result.methods if m not in result.fit_failures]
    # tab10 while it suffices; past ten methods, tab20 so that no two lines share a colour
    cmap = plt.get_cmap("tab10" if len(methods) <= 10 else "tab20")
    offsets = np.linspace(-0.12, 0.12, len(methods)) if len(methods) > 1 else [0.0]
    for i, method in enumerate(methods):
        rows = s[s["method"] == method].set_index("shots").reindex(shots)
        mean = rows["srocc_mean"].to_numpy(dtype=float)
        sem = rows["srocc_std"].to_numpy(dtype=float) / np.sqrt(np.maximum(rows["n_users"].to_numpy(dtype=float), 1))
        ax.errorbar(pos + offsets[i], mean, yerr=sem, marker=MARKERS[i % len(MARKERS)], color=cmap(i % cmap.N), capsize=3,
                    linewidth=1.6, markersize=6, label=method)
    ax.set_xticks(pos, [f"{k}" for k in shots])
    ax.set_xlabel("rated images of the rater (shots)")
    ax.set_ylabel("SROCC (mean over test raters)")
    ax.set_title(f"{result.meta['dataset']}: SROCC against shots\n(bars: ±1 standard error over raters; for paired differences see the Wilcoxon tests)", fontsize=10)
    ax.grid(True, axis="y", alpha=0.35)
    if methods:
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, title="method")
    else:
        ax.text(0.5, 0.5, "no method produced results (see failures.csv)", ha="center", va="center", transform=ax.transAxes)
    _save(fig, Path(path))
    plt.close(fig)


def plot_per_rater(result: "BenchmarkResult", a: str, b: str, path: str | Path) -> None:
    """Per-rater SROCC of method `a` against method `b`, one panel per shot setting with any rater."""
    plt = _pyplot()
    shots = [k for k in result.meta["shots"] if len(result.paired(a, b, k))]
    if not shots:
        shots = list(result.meta["shots"])[-1:]
    fig, axes = plt.subplots(1, len(shots), figsize=(4.4 * len(shots) + 0.6, 4.9), squeeze=False)
    pairs = {k: result.paired(a, b, k) for k in shots}
    values = np.concatenate([p[c].to_numpy(dtype=float) for p in pairs.values() for c in (a, b)] or [np.array([0.0, 1.0])])
    lo, hi = (float(values.min()), float(values.max())) if len(values) else (0.0, 1.0)
    pad = 0.05 * max(hi - lo, 0.1)
    lo, hi = lo - pad, hi + pad  # one scale for every panel, so the settings can be compared by eye
    for ax, k in zip(axes[0], shots):
        x, y = pairs[k][b].to_numpy(dtype=float), pairs[k][a].to_numpy(dtype=float)
        ax.plot([lo, hi], [lo, hi], color="0.5", linestyle="--", linewidth=1)
        better = y > x + 1e-12
        ax.scatter(x[better], y[better], s=22, color="tab:blue", label=f"{a} better", zorder=3)
        ax.scatter(x[~better], y[~better], s=22, color="tab:orange", label=f"{b} better or tie", zorder=3)
        test = result.paired_test(a, b, k)
        p = "n/a" if np.isnan(test["p_value"]) else f"{test['p_value']:.2g}"
        diff = "" if np.isnan(test["mean_diff"]) else f", mean diff {test['mean_diff']:+.3f}"
        ax.set_title(f"{k} shots: {a} better on {test['wins']}/{test['n_raters']}{diff}\nWilcoxon signed-rank p = {p}", fontsize=9.5)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal")
        ax.set_xlabel(f"SROCC of {b}")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel(f"SROCC of {a}")
    axes[0][-1].legend(loc="lower right", fontsize=8)
    fig.suptitle(f"{result.meta['dataset']}: per-rater SROCC, {a} vs {b} (one point per test rater)", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    _save(fig, Path(path))
    plt.close(fig)
