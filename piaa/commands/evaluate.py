"""`piaa adapt`, `piaa evaluate`, `piaa benchmark`: the few-shot protocol, on one rater or all of them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from piaa.commands.output import UsageFailure, err, out, print_notes, report_evaluation, summary_table


def adapt(
    user: str = typer.Option(..., "--user", help="Rater id as in users.csv (or, with --ratings, any new user id)."),
    shots: Optional[int] = typer.Option(None, "--shots", help="Rated images to adapt from (default 10)."),
    run: Optional[Path] = typer.Option(None, "--run", help="Run directory (default: the latest run)."),
    repeats: int = typer.Option(10, "--repeats"),
    seed: int = typer.Option(0, "--seed"),
    json_file: Optional[Path] = typer.Option(None, "--json", help="Write rows and summary as JSON."),
    ratings: Optional[Path] = typer.Option(None, "--ratings", help="Adapt a new user from this CSV (image,score) instead."),
    save: bool = typer.Option(False, "--save", help="With --ratings: store the profile (replacing this user's old one)."),
    big_five: Optional[str] = typer.Option(
        None, "--big-five", help="The rater's Big-Five as O,C,E,A,N in [-1, 1] (methods that use it, e.g. pa-iaa; overrides users.csv; with --ratings, the new user's)."
    ),
    store: Optional[Path] = typer.Option(None, "--store", help="With --ratings: profile store file (default <run>/profiles.sqlite)."),
) -> None:
    """Adapt to one rater from SHOTS of their images and report SROCC on the rest; or, with
    --ratings, adapt a new user from their own ratings (and --save the profile)."""
    if ratings is not None:
        if shots is not None or json_file is not None:
            raise UsageFailure("--ratings adapts a new user; --shots and --json belong to the protocol mode (--user ID --shots K)")
        from piaa.commands.profiles import adapt_new_user

        adapt_new_user(user, ratings, run=run, save=save, big_five=big_five, seed=seed, store=store)
        return
    if save or store is not None:
        raise UsageFailure("--save and --store need --ratings FILE (a new user's image,score CSV)")
    shots = 10 if shots is None else shots
    from piaa.workflows import adapt_user

    result = adapt_user(str(run) if run else None, user, shots, repeats=repeats, seed=seed, big_five=big_five)
    row = result.summary.iloc[0]
    per_repeat = result.rows["srocc"]
    out.print(
        f"user {user}: SROCC {row['srocc_mean']:.3f} ± {per_repeat.std(ddof=0):.3f} over {len(per_repeat)} draws "
        f"of {shots} shots (PLCC {row['plcc_mean']:.3f}, {int(result.rows['n_query'].iloc[0])} query images)"
    )
    report_evaluation(result, json_file)


def evaluate(
    run: Optional[Path] = typer.Option(None, "--run", help="Run directory (default: the latest run)."),
    data: Optional[str] = typer.Option(None, "--data", help="Evaluate on this dataset (default: the run's)."),
    method: Optional[str] = typer.Option(None, "--method", help="Train this method on --data first instead of loading a run."),
    shots: Optional[List[int]] = typer.Option(None, "--shots", help="Shot settings (repeatable; default 10 and 100)."),
    repeats: int = typer.Option(10, "--repeats"),
    seed: int = typer.Option(0, "--seed"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Config override when --method is given."),
    json_file: Optional[Path] = typer.Option(None, "--json"),
    csv_file: Optional[Path] = typer.Option(None, "--csv", help="Write the per-episode rows as CSV."),
) -> None:
    """Run the few-shot protocol over all test raters and print the summary table."""
    from piaa.workflows import evaluate_job

    model, dataset, result = evaluate_job(
        run=run, method=method, data=data, overrides=set_, shots=shots or [10, 100], repeats=repeats, seed=seed, progress=sys.stderr.isatty()
    )
    title = f"{method} on {dataset.name}" if method is not None else f"{model.name} ({result.meta['run']}) on {dataset.name}"
    print_notes(model.notes())
    out.print(summary_table(title, result.summary))
    report_evaluation(result, json_file, csv_file)


def benchmark(
    data: Optional[str] = typer.Option(None, "--data", help="Rater-dataset directory, or 'demo' (default)."),
    methods: str = typer.Option(..., "--methods", help="Comma-separated method names (see `piaa methods`)."),
    shots: Optional[List[int]] = typer.Option(None, "--shots", help="Shot settings (repeatable; default 0, 10 and 100)."),
    repeats: int = typer.Option(10, "--repeats", help="Support draws per rater and shot setting."),
    seed: int = typer.Option(0, "--seed"),
    out_dir: Path = typer.Option(..., "--out", help="Directory to create for tables and plots (must not be a non-empty directory)."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Config override: field=value (every method with that field) or method.field=value."),
    compare: Optional[str] = typer.Option(None, "--compare", help="Two methods for the per-rater plot, 'a,b' (default: best vs giaa)."),
    threads: int = typer.Option(1, "--threads", help="Torch threads (1 is fastest for per-rater problems)."),
) -> None:
    """Train each method once, evaluate all under the same support draws, write the paper-style table."""
    from piaa.benchmark import run_benchmark, summary_markdown, timings_markdown, write_benchmark
    from piaa.runs import resolve_data

    pair = None
    if compare is not None:
        pair = tuple(m.strip() for m in compare.split(","))
        if len(pair) != 2 or not all(pair):
            raise UsageFailure(f"--compare expects two method names 'a,b', got {compare!r}")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise UsageFailure(f"--out {out_dir} already exists and is not empty (choose another path or remove it)")
    dataset, ref = resolve_data(data)
    result = run_benchmark(
        dataset, methods.split(","), shots=shots if shots else (0, 10, 100), repeats=repeats, seed=seed,
        overrides=set_, threads=threads, progress=sys.stderr.isatty(), data_ref=ref,
    )
    path = write_benchmark(result, out_dir, compare=pair)
    out.print(summary_markdown(result), markup=False, highlight=False, soft_wrap=True)
    out.print(timings_markdown(result), markup=False, highlight=False, soft_wrap=True)
    if result.fit_failures or result.rows["error"].notna().any():
        err.print(f"[red]warning:[/] some methods or raters failed; see {path / 'failures.csv'}")
    out.print(f"tables and plots written to [bold]{path}[/]")
