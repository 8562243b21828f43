"""`piaa meta-train`: learn a prior from the training raters and save it as a run."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from piaa.commands.output import check_output_dir, out, print_notes, styled


def meta_train(
    data: Optional[str] = typer.Option(None, "--data", help="Rater-dataset directory, or 'demo' (default)."),
    method: Optional[str] = typer.Option(None, "--method", help="Method name (see `piaa methods`; default learned-prior)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Run directory (default runs/<method>-<time>)."),
    seed: int = typer.Option(0, "--seed"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Override a config field: field=value (repeatable)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="A live bar on a terminal, a line every 30 s otherwise."),
    resume: bool = typer.Option(True, "--resume/--restart", help="Continue an interrupted run with the same method, config, data and seed (default), or start over."),
    force: bool = typer.Option(False, "--force", help="Replace --out if it already holds files."),
    threads: int = typer.Option(1, "--threads", min=1, help="Torch/BLAS threads (1, the default, is fastest for piaa's small networks, above all on a busy machine)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto|cpu|cuda, for methods trained end to end on images (--set backbone=...); see docs/distributed.md."),
) -> None:
    """Learn a prior from the training raters and save it as a run (under torchrun: split over the processes)."""
    from piaa.runs import load_run
    from piaa.workflows import DEFAULT_METHOD, meta_train as train, training_summary

    check_output_dir(out_dir, "--out", force)
    run_path = train(method or DEFAULT_METHOD, data, out=out_dir, seed=seed, overrides=set_, progress=progress, resume=resume, force=force,
                     threads=threads, device=device)
    from piaa.distributed import env_rank

    if env_rank() != 0:  # under torchrun, rank 0 reports
        return
    run = load_run(run_path)
    info = training_summary(run)
    where = "the embedded demo (simulated raters, see docs/demo.md)" if info["data"] == "demo" else info["data"]
    out.print(styled((info["method"], "bold"), f" trained on {where}, seed {seed}"))
    extra = f" and {info['personality_raters']} personality raters (Big-Five + liked images)" if info["personality_raters"] else ""
    out.print(
        f"  learned from {info['train_raters']} training raters ({info['train_ratings']:,} ratings){extra}; "
        f"the {info['test_raters']} test raters were held out for `piaa adapt` / `piaa evaluate`", soft_wrap=True,
    )
    changed = ", ".join(f"{k}={_show(v)}" for k, v in info["changed_config"].items())
    out.print(f"  config: {'defaults, except ' + changed if changed else 'the method defaults'} (all fields in {run_path / 'config.json'})", soft_wrap=True)
    print_personality_report(run.info.get("extra_state", {}).get("personality"))
    print_notes(getattr(run.method, "notes", lambda: [])(), label="warning")
    out.print(f"run saved to {run_path}")


def _show(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def print_personality_report(personality: Optional[dict]) -> None:
    """pa-iaa: the personality head's quality on held-out personality raters (from the run's extra state)."""
    if not personality or not personality.get("available"):
        return
    quality = personality.get("quality")
    if not quality:
        out.print("personality head: no held-out personality raters, quality not measured")
        return
    raters = (
        f"{personality.get('heldout_raters')} held-out Big-Five train raters (their images rated above their own mean)"
        if personality.get("head_source") == "ratings" else f"{personality.get('heldout_raters')} held-out personality raters"
    )
    out.print(
        f"  personality head (links images to the Big-Five of the raters who like them), checked on "
        f"{raters}: mean Pearson r "
        f"{quality['mean_pearson_r']:.2f} (1 = perfect, 0 = chance), mean absolute error {quality['mean_mae']:.2f} on the [-1, 1] scale",
        soft_wrap=True,
    )
    # Per-trait figures stay in the run's config.json (extra_state.personality.quality.traits).
