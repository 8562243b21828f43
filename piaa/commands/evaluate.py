"""`piaa adapt`, `piaa evaluate`, `piaa benchmark`: the few-shot protocol, on one rater or all of them."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from piaa.commands.output import UsageFailure, check_output_dir, check_output_file, note, out, print_notes, report_evaluation, summary_table, warn


def adapt(
    user: str = typer.Option(..., "--user", help="Rater id as in users.csv (or, with --ratings, any new user id)."),
    shots: Optional[int] = typer.Option(None, "--shots", min=0, help="Rated images to adapt from (default 10)."),
    run: Optional[Path] = typer.Option(None, "--run", help="Run directory (default: the latest run)."),
    repeats: int = typer.Option(10, "--repeats", min=1, help="Support draws to average over."),
    seed: int = typer.Option(0, "--seed"),
    json_file: Optional[Path] = typer.Option(None, "--json", help="Write rows and summary as JSON."),
    ratings: Optional[Path] = typer.Option(None, "--ratings", help="Adapt a new user from this CSV (image,score) instead."),
    save: bool = typer.Option(False, "--save", help="With --ratings: store the profile (replacing this user's old one)."),
    big_five: Optional[str] = typer.Option(
        None, "--big-five", help="The rater's Big-Five as O,C,E,A,N in [-1, 1] (methods that use it, e.g. pa-iaa; overrides users.csv; with --ratings, the new user's)."
    ),
    store: Optional[Path] = typer.Option(None, "--store", help="With --ratings: profile store file (default <run>/profiles.sqlite)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --json file."),
    threads: int = typer.Option(1, "--threads", min=1, help="Torch/BLAS threads (default 1)."),
) -> None:
    """Adapt to one rater from SHOTS of their images and report SROCC on the rest; or, with
    --ratings, adapt a new user from their own ratings (and --save the profile)."""
    from piaa.threads import job_threads

    if ratings is not None:
        if shots is not None or json_file is not None:
            raise UsageFailure("--ratings adapts a new user; --shots and --json belong to the protocol mode (--user ID --shots K)")
        from piaa.commands.profiles import adapt_new_user

        with job_threads(threads):
            adapt_new_user(user, ratings, run=run, save=save, big_five=big_five, seed=seed, store=store)
        return
    if save or store is not None:
        raise UsageFailure("--save and --store need --ratings FILE (a new user's image,score CSV)")
    check_output_file(json_file, "--json", force)
    shots = 10 if shots is None else shots
    from piaa.runs import load_run
    from piaa.workflows import adapt_context, adapt_user

    loaded = load_run(run)
    with job_threads(threads):
        result = adapt_user(loaded, user, shots, repeats=repeats, seed=seed, big_five=big_five)
        context = adapt_context(loaded, user)
    row = result.summary.iloc[0]
    per_repeat = result.rows["srocc"]
    out.print(
        f"user {user}: SROCC {row['srocc_mean']:.3f} ± {per_repeat.std(ddof=0):.3f} over {len(per_repeat)} draws "
        f"of {shots} shots (PLCC {row['plcc_mean']:.3f}, {int(result.rows['n_query'].iloc[0])} query images)", soft_wrap=True,
    )
    for line in _context_lines(context, shots):
        out.print(line, soft_wrap=True)
    if context["split"] == "train":
        warn(
            f"user {user} is a training rater: run {Path(context['run']).name} learned from their ratings, so this SROCC "
            f"is optimistic; a fair number comes from a test rater (e.g. {', '.join(context['test_raters'])})"
        )
    report_evaluation(result, json_file)


def _context_lines(context: dict, shots: int) -> list[str]:
    """The few lines that make one rater's SROCC readable (see workflows.adapt_context)."""
    where = "the embedded demo" if context["data"] == "demo" else context["data"]
    lines = [f"  answered by {context['method']} from run {context['run']} (trained on {where}); user is a {context['split']} rater"]
    if context["generic_srocc"] is not None:
        lines.append(f"  generic prior (no ratings from this user) on all {context['n_images']} of their images: SROCC {context['generic_srocc']:.3f}")
    truth = context["ceilings"]
    if truth and all(k in truth for k in ("generic_oracle_srocc", "big_five_oracle_srocc", "ceiling_srocc")):
        lines.append(
            f"  demo ceilings (simulation truth, mean over test raters): perfect generic model {truth['generic_oracle_srocc']:.3f}, "
            f"perfect Big-Five personalisation {truth['big_five_oracle_srocc']:.3f}, rating-noise limit {truth['ceiling_srocc']:.3f}"
        )
    return lines


def evaluate(
    run: Optional[Path] = typer.Option(None, "--run", help="Run directory (default: the latest run)."),
    data: Optional[str] = typer.Option(None, "--data", help="Evaluate on this dataset (default: the run's)."),
    method: Optional[str] = typer.Option(None, "--method", help="Train this method on --data first instead of loading a run."),
    shots: Optional[List[int]] = typer.Option(None, "--shots", min=0, help="Shot settings (repeatable; default 10 and 100)."),
    repeats: int = typer.Option(10, "--repeats", min=1),
    seed: int = typer.Option(0, "--seed"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Config override when --method is given."),
    json_file: Optional[Path] = typer.Option(None, "--json"),
    csv_file: Optional[Path] = typer.Option(None, "--csv", help="Write the per-episode rows as CSV."),
    force: bool = typer.Option(False, "--force", help="Replace existing --json / --csv files."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="A live bar on a terminal, a line every 30 s otherwise."),
    threads: int = typer.Option(1, "--threads", min=1, help="Torch/BLAS threads (default 1)."),
    folds: Optional[int] = typer.Option(None, "--folds", help="k-fold rater cross-validation: every train/test rater is a test rater once; the method is refitted per fold."),
    fold_file: Optional[Path] = typer.Option(
        None, "--fold-file", help="With --folds: the fold assignment (CSV user,fold, or a folder of TestUserIDs_Fold<k>.txt); read if it exists, else written (default ./folds-k<K>-seed<S>.csv)."
    ),
) -> None:
    """Run the few-shot protocol over all test raters and print the summary table."""
    from piaa.threads import job_threads

    check_output_file(json_file, "--json", force)
    check_output_file(csv_file, "--csv", force)
    if folds is not None or fold_file is not None:
        with job_threads(threads):
            _evaluate_folds(run, data, method, shots, repeats, seed, set_, json_file, csv_file, folds, fold_file, progress)
        return
    from piaa.workflows import evaluate_job

    with job_threads(threads):
        model, dataset, result = evaluate_job(
            run=run, method=method, data=data, overrides=set_, shots=shots or [10, 100], repeats=repeats, seed=seed, progress=progress
        )
    title = f"{method} on {dataset.name}" if method is not None else f"{model.name} ({result.meta['run']}) on {dataset.name}"
    print_notes(model.notes())
    out.print(summary_table(title, result.summary))
    report_evaluation(result, json_file, csv_file)


def _evaluate_folds(run, data, method, shots, repeats, seed, set_, json_file, csv_file, folds, fold_file, progress) -> None:
    from rich.table import Table

    from piaa.commands.output import write_csv, write_json
    from piaa.workflows import cross_validation_job

    result, dataset, path, written = cross_validation_job(
        folds=folds, fold_file=fold_file, run=run, method=method, data=data, overrides=set_, shots=shots or [10, 100],
        repeats=repeats, seed=seed, progress=progress,
    )
    note(f"fold assignment {'written to' if written else 'read from'} {path}")
    name = result.meta.get("method")
    table = Table(title=f"{name} on {dataset.name}: per fold")
    for col in ("fold", "shots", "SROCC mean ± std", "PLCC mean", "raters", "skipped"):
        table.add_column(col, justify="right")
    for row in result.per_fold.to_dict(orient="records"):
        table.add_row(
            str(row["fold"]), str(row["shots"]),
            f"{row['srocc_mean']:.3f} ± {row['srocc_std']:.3f}" if row["n_users"] else "n/a",
            f"{row['plcc_mean']:.3f}" if row["n_users"] else "n/a", str(row["n_users"]), str(row["n_skipped"]),
        )
    out.print(table)
    out.print(summary_table(f"{name} on {dataset.name}: mean over {result.meta['n_folds']} folds (± std over folds)", result.summary))
    if json_file is not None:
        write_json(json_file, result.to_json())
    if csv_file is not None:
        write_csv(csv_file, result.rows)


def benchmark(
    data: Optional[str] = typer.Option(None, "--data", help="Rater-dataset directory, or 'demo' (default)."),
    methods: str = typer.Option(..., "--methods", help="Comma-separated method names (see `piaa methods`)."),
    shots: Optional[List[int]] = typer.Option(None, "--shots", min=0, help="Shot settings (repeatable; default 0, 10 and 100)."),
    repeats: int = typer.Option(10, "--repeats", min=1, help="Support draws per rater and shot setting."),
    seed: int = typer.Option(0, "--seed"),
    out_dir: Path = typer.Option(..., "--out", help="Directory to create for tables and plots (must not be a non-empty directory)."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Config override: field=value (every method with that field) or method.field=value."),
    compare: Optional[str] = typer.Option(None, "--compare", help="Two methods for the per-rater plot, 'a,b' (default: best vs giaa)."),
    threads: int = typer.Option(1, "--threads", min=1, help="Torch threads (1 is fastest for per-rater problems)."),
    force: bool = typer.Option(False, "--force", help="Write into --out even if it already holds files."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="A live bar on a terminal, a line every 30 s otherwise."),
) -> None:
    """Train each method once, evaluate all under the same support draws, write the paper-style table."""
    from piaa.benchmark import run_benchmark, summary_markdown, timings_markdown, write_benchmark
    from piaa.runs import resolve_data

    pair = None
    if compare is not None:
        pair = tuple(m.strip() for m in compare.split(","))
        if len(pair) != 2 or not all(pair):
            raise UsageFailure(f"--compare expects two method names 'a,b', got {compare!r}")
    check_output_dir(out_dir, "--out", force)
    dataset, ref = resolve_data(data)
    result = run_benchmark(
        dataset, methods.split(","), shots=shots if shots else (0, 10, 100), repeats=repeats, seed=seed,
        overrides=set_, threads=threads, progress=progress, data_ref=ref,
    )
    path = write_benchmark(result, out_dir, compare=pair, overwrite=force)
    out.print(summary_markdown(result), soft_wrap=True)
    out.print(timings_markdown(result), soft_wrap=True)
    if result.fit_failures or result.rows["error"].notna().any():
        warn(f"some methods or raters failed; see {path / 'failures.csv'}")
    out.print(f"tables and plots written to {path}")
