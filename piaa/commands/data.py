"""`piaa data describe|simulate|import`: rater datasets, the demo, and native importers."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import List, Optional

import typer
from typer.core import TyperGroup

from piaa.commands.output import UsageFailure, check_output_dir, key_value_table, note, out, warn

app = typer.Typer(no_args_is_help=True, help="Rater datasets: describe, simulate, import.")

_FEATURES_HELP = "Feature store written by `piaa features extract` (required unless --dry-run)."
_DROP_HELP = "Drop ratings of images without features and report the count (default: refuse)."
_DRY_HELP = "Parse and check only; print what would be imported, write nothing."


@app.command("describe")
def data_describe(path: str = typer.Argument(..., help="Rater-dataset directory, or 'demo' (the embedded demo, as --data demo elsewhere).")) -> None:
    """Summarise a rater dataset: raters, images, ratings, scores, features, Big-Five, likes."""
    from piaa.runs import resolve_data
    from piaa.tasks.describe import describe

    dataset, ref = resolve_data(path)
    info = describe(dataset)
    where = "the embedded demo" if ref == "demo" else path
    out.print(key_value_table(info["rows"], title=f"{info['name']} ({where})"))


@app.command("simulate")
def data_simulate(
    out_dir: Path = typer.Option(..., "--out", help="Directory to create."),
    seed: int = typer.Option(0, "--seed"),
    force: bool = typer.Option(False, "--force", help="Replace --out if it already holds files."),
    images: int = typer.Option(0, "--images", help="Also draw SIZExSIZE images from the features (a multiple of 8), for training end to end (--set backbone=small-cnn); 0: none."),
) -> None:
    """Write the simulated demo dataset (the embedded demo is seed 0)."""
    from piaa.tasks.simulate import write_demo

    if images and (images < 8 or images % 8):
        raise UsageFailure(f"--images expects 0 or a multiple of 8, got {images}")
    check_output_dir(out_dir, "--out", force)
    path = write_demo(out_dir, seed=seed, overwrite=force)
    if images:
        from piaa.tasks.simulate_images import render_images

        render_images(path, size=images, seed=seed)
    out.print(f"demo dataset written to {path}" + (f" with {images}x{images} images (images_root: images)" if images else ""))


class ImporterGroup(TyperGroup):
    """`piaa data import`: one command per registered importer, built when asked for, so running
    one importer imports only its module (and `--help` lists them all)."""

    def list_commands(self, ctx) -> list[str]:
        from piaa.tasks.importers.registry import IMPORTERS

        return IMPORTERS.names()

    def get_command(self, ctx, name: str):
        return import_command(name)  # an unknown name: a ConfigError with the closest known name


import_app = typer.Typer(cls=ImporterGroup, no_args_is_help=True, help="Import a published dataset into the rater-dataset format.")
app.add_typer(import_app, name="import")


def import_command(name: str):
    """The click command for importer `name`: its own options, then the shared output options."""
    from piaa.tasks.importers.registry import IMPORTERS

    importer = IMPORTERS.get(name)
    helps = {"features": _FEATURES_HELP, "drop_missing": _DROP_HELP, "dry_run": _DRY_HELP, **importer.help}
    params = [_parameter(o.name, o.flag, o.type, o.default, o.help, required=o.required, multiple=o.multiple) for o in importer.options]
    params += [
        _parameter("features", "--features", Path, None, helps["features"]),
        _parameter("out_dir", "--out", Path, None, helps.get("out")),
        _parameter("drop_missing", "--drop-missing", bool, False, helps["drop_missing"]),
        _parameter("dry_run", "--dry-run", bool, False, helps["dry_run"]),
        _parameter("overwrite", "--overwrite", bool, False, helps.get("overwrite") or "Replace --out if it already holds files.", aliases=("--force",)),
    ]

    def command(**values) -> None:
        values["out"] = values.pop("out_dir")
        run_import(name, values)

    command.__signature__ = inspect.Signature(params)
    command.__doc__ = importer.summary
    single = typer.Typer(add_completion=False)
    single.command(name)(command)
    return typer.main.get_command(single)


def _parameter(name: str, flag: str, kind: type, default, help: Optional[str], *, required: bool = False, multiple: bool = False, aliases: tuple = ()):
    annotation = List[kind] if multiple else (kind if kind is bool or default is not None else Optional[kind])
    option = typer.Option(... if required else default, flag, *aliases, help=help)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)


def run_import(name: str, values: dict) -> None:
    """Parse, print the notes, then write (or, with --dry-run, only summarise) the import."""
    from piaa.tasks.importers.registry import IMPORTERS

    importer = IMPORTERS.get(name)
    parsed = importer.read(values)
    if not values["dry_run"]:
        importer.check_outputs(values)
    for message in parsed.notes:
        (warn if message.startswith("WARNING") else note)(message, "note")
    table = key_value_table(parsed.summary())
    if values["dry_run"]:
        out.print(f"{parsed.name}: checked (dry run: nothing written)", soft_wrap=True)
        out.print(table)
        return
    report = importer.save(parsed, values)
    for message in report.notes[len(parsed.notes):]:
        note(message)
    raters = ", ".join(f"{n} {s}" for s, n in report.raters.items() if n)
    what = f"{report.ratings:,} ratings, {raters} raters" if raters else "score distributions, no raters"
    out.print(f"{parsed.name}: {report.images:,} images, {what} -> {report.path}", soft_wrap=True)
