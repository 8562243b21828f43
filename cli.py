"""The `piaa` command line: parse, call the public API, print tables. No logic lives here."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Personalized image aesthetics assessment by meta-learning.")
data_app = typer.Typer(no_args_is_help=True, help="Rater datasets: describe, simulate, import.")
app.add_typer(data_app, name="data")

out = Console()
err = Console(stderr=True)


class UsageFailure(Exception):
    """Raised for bad input in the CLI layer; reported as one line, exit status 2."""


# -- shared output helpers --------------------------------------------------------------------
def _write_json(path: Path, payload: dict) -> None:
    from piaa.atomic import write_json

    write_json(path, payload)


def _summary_table(title: str, summary) -> Table:
    table = Table(title=title)
    for col in ("shots", "SROCC mean ± std", "PLCC mean", "raters", "skipped", "undefined", "failed"):
        table.add_column(col, justify="right")
    for row in summary.to_dict(orient="records"):
        table.add_row(
            str(row["shots"]),
            f"{row['srocc_mean']:.3f} ± {row['srocc_std']:.3f}" if row["n_users"] else "n/a",
            f"{row['plcc_mean']:.3f}" if row["n_users"] else "n/a",
            str(row["n_users"]), str(row["n_skipped"]), str(row["n_undefined"]), str(row["n_failed"]),
        )
    return table


def _report(result, json_file: Optional[Path], csv_file: Optional[Path] = None) -> None:
    for shots, users in sorted(result.skipped.items()):
        if users:
            err.print(f"[yellow]note:[/] {len(users)} rater(s) skipped at {shots} shots (fewer than {shots + 10} images)")
    failures = result.failures()
    if len(failures):
        first = failures.iloc[0]
        err.print(f"[red]warning:[/] {len(failures)} episode(s) failed; first: user {first.user}, {first.shots} shots: {first.error}")
    if json_file is not None:
        _write_json(json_file, result.to_json())
    if csv_file is not None:
        from piaa.atomic import write_text

        write_text(csv_file, result.rows.to_csv(index=False))


# -- commands -----------------------------------------------------------------------------------
@app.command("meta-train")
def meta_train(
    data: Optional[str] = typer.Option(None, "--data", help="Rater-dataset directory, or 'demo' (default)."),
    method: str = typer.Option("ridge", "--method", help="Method name (see `piaa methods`)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Run directory (default runs/<method>-<time>)."),
    seed: int = typer.Option(0, "--seed"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Override a config field: field=value (repeatable)."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    resume: bool = typer.Option(True, "--resume/--restart", help="Continue an interrupted run with the same method, config, data and seed (default), or start over."),
) -> None:
    """Learn a prior from the training raters and save it as a run."""
    from piaa.runs import load_run
    from piaa.workflows import meta_train as train

    run_path = train(method, data, out=out_dir, seed=seed, overrides=set_, progress=progress and sys.stderr.isatty(), resume=resume)
    run = load_run(run_path)
    out.print(f"[bold]{run.info['method']}[/] trained on {run.data_ref} (seed {seed})")
    out.print_json(json.dumps(run.info["config"]))
    out.print(f"run saved to [bold]{run_path}[/]")


@app.command()
def adapt(
    user: str = typer.Option(..., "--user", help="Rater id as in users.csv."),
    shots: int = typer.Option(10, "--shots", help="Rated images to adapt from."),
    run: Optional[Path] = typer.Option(None, "--run", help="Run directory (default: the latest run)."),
    repeats: int = typer.Option(10, "--repeats"),
    seed: int = typer.Option(0, "--seed"),
    json_file: Optional[Path] = typer.Option(None, "--json", help="Write rows and summary as JSON."),
) -> None:
    """Adapt to one rater from SHOTS of their images and report SROCC on the rest."""
    from piaa.workflows import adapt_user

    result = adapt_user(str(run) if run else None, user, shots, repeats=repeats, seed=seed)
    row = result.summary.iloc[0]
    per_repeat = result.rows["srocc"]
    out.print(
        f"user {user}: SROCC {row['srocc_mean']:.3f} ± {per_repeat.std(ddof=0):.3f} over {len(per_repeat)} draws "
        f"of {shots} shots (PLCC {row['plcc_mean']:.3f}, {int(result.rows['n_query'].iloc[0])} query images)"
    )
    _report(result, json_file)


@app.command()
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
    from piaa.protocol import evaluate as run_protocol
    from piaa.registry import create_method
    from piaa.runs import load_run, resolve_data

    shot_list = shots or [10, 100]
    if method is not None:
        if run is not None:
            raise UsageFailure("give either --run or --method, not both")
        dataset, ref = resolve_data(data)
        model = create_method(method, set_)
        model.fit(dataset.without("test"), seed=seed, progress=sys.stderr.isatty())
        title = f"{method} on {dataset.name}"
    else:
        loaded = load_run(run)
        dataset = resolve_data(data)[0] if data is not None else loaded.load_data()
        model = loaded.method
        title = f"{loaded.info['method']} ({loaded.path.name}) on {dataset.name}"
    result = run_protocol(model, dataset, shots=shot_list, repeats=repeats, seed=seed, progress=sys.stderr.isatty())
    out.print(_summary_table(title, result.summary))
    _report(result, json_file, csv_file)


@app.command("methods")
def methods() -> None:
    """List the registered methods."""
    from piaa.registry import list_methods

    table = Table(title="methods")
    table.add_column("name")
    table.add_column("what it does")
    for name, cls in list_methods().items():
        table.add_row(name, cls.summary)
    out.print(table)


@data_app.command("describe")
def data_describe(path: Path = typer.Argument(..., help="Rater-dataset directory.")) -> None:
    """Summarise a rater dataset: raters, images, ratings, scores, features, Big-Five, likes."""
    from piaa.tasks.describe import describe
    from piaa.tasks.format import read_dataset

    info = describe(read_dataset(path))
    table = Table(title=f"{info['name']} ({path})", show_header=False)
    table.add_column("what")
    table.add_column("value")
    for key, value in info["rows"]:
        table.add_row(key, value)
    out.print(table)


@data_app.command("simulate")
def data_simulate(
    out_dir: Path = typer.Option(..., "--out", help="Directory to create."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Write the simulated demo dataset (the embedded demo is seed 0)."""
    from piaa.tasks.simulate import write_demo

    path = write_demo(out_dir, seed=seed)
    out.print(f"demo dataset written to [bold]{path}[/]")


def main() -> None:
    """Entry point: user errors become one line on stderr and exit status 2."""
    from piaa.errors import PiaaError

    try:
        app(standalone_mode=False)
    except (PiaaError, UsageFailure, FileExistsError) as exc:
        err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except FileNotFoundError as exc:
        err.print(f"error: {exc.filename or exc}: no such file or directory", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(1)
    except __import__("click").ClickException as exc:
        exc.show()
        sys.exit(2)


if __name__ == "__main__":
    main()
