"""`piaa meta-train`: learn a prior from the training raters and save it as a run."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from piaa.commands.output import out, print_notes


def meta_train(
    data: Optional[str] = typer.Option(None, "--data", help="Rater-dataset directory, or 'demo' (default)."),
    method: Optional[str] = typer.Option(None, "--method", help="Method name (see `piaa methods`; default pa-iaa)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Run directory (default runs/<method>-<time>)."),
    seed: int = typer.Option(0, "--seed"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Override a config field: field=value (repeatable)."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    resume: bool = typer.Option(True, "--resume/--restart", help="Continue an interrupted run with the same method, config, data and seed (default), or start over."),
) -> None:
    """Learn a prior from the training raters and save it as a run."""
    from piaa.runs import load_run
    from piaa.workflows import DEFAULT_METHOD, meta_train as train

    run_path = train(method or DEFAULT_METHOD, data, out=out_dir, seed=seed, overrides=set_, progress=progress and sys.stderr.isatty(), resume=resume)
    run = load_run(run_path)
    out.print(f"[bold]{run.info['method']}[/] trained on {run.data_ref} (seed {seed})")
    out.print_json(json.dumps(run.info["config"]))
    print_personality_report(run.info.get("extra_state", {}).get("personality"))
    print_notes(run.method.notes(), label="warning")
    out.print(f"run saved to [bold]{run_path}[/]")


def print_personality_report(personality: Optional[dict]) -> None:
    """pa-iaa: the personality head's quality on held-out personality raters (from the run's extra state)."""
    if not personality or not personality.get("available"):
        return
    quality = personality.get("quality")
    if not quality:
        out.print("personality head: no held-out personality raters, quality not measured")
        return
    table = Table(title=f"personality head on {personality.get('heldout_raters')} held-out personality raters ({quality['n_likes']} likes)")
    for col in ("trait", "Pearson r", "MAE"):
        table.add_column(col, justify="right")
    for trait, row in quality["traits"].items():
        table.add_row(trait, f"{row['pearson_r']:.3f}", f"{row['mae']:.3f}")
    table.add_row("mean", f"{quality['mean_pearson_r']:.3f}", f"{quality['mean_mae']:.3f}")
    out.print(table)
