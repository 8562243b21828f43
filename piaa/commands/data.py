"""`piaa data describe|simulate|import`: rater datasets, the demo, and native importers."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from piaa.commands.output import UsageFailure, check_output_dir, key_value_table, note, out, warn

app = typer.Typer(no_args_is_help=True, help="Rater datasets: describe, simulate, import.")
import_app = typer.Typer(no_args_is_help=True, help="Import a published dataset into the rater-dataset format.")
app.add_typer(import_app, name="import")

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
) -> None:
    """Write the simulated demo dataset (the embedded demo is seed 0)."""
    from piaa.tasks.simulate import write_demo

    check_output_dir(out_dir, "--out", force)
    path = write_demo(out_dir, seed=seed, overwrite=force)
    out.print(f"demo dataset written to {path}")


def _finish_import(parsed, features: Optional[Path], out_dir: Optional[Path], dry_run: bool, drop_missing: bool, overwrite: bool, writer=None, needs_features: bool = True) -> None:
    """Print the parse notes, then write (or, with --dry-run, only summarise) the import."""
    from piaa.tasks.importers import write_import

    for message in parsed.notes:
        (warn if message.startswith("WARNING") else note)(message, "note")
    table = key_value_table(parsed.summary())
    if dry_run:
        out.print(f"{parsed.name}: checked (dry run: nothing written)", soft_wrap=True)
        out.print(table)
        return
    if (needs_features and features is None) or out_dir is None:
        raise UsageFailure("give --features STORE and --out DIR (or --dry-run to check the files only)")
    report = (writer or write_import)(parsed, features, out_dir, drop_missing=drop_missing, overwrite=overwrite)
    for message in report.notes[len(parsed.notes):]:
        note(message)
    raters = ", ".join(f"{n} {s}" for s, n in report.raters.items() if n)
    what = f"{report.ratings:,} ratings, {raters} raters" if raters else "score distributions, no raters"
    out.print(f"{parsed.name}: {report.images:,} images, {what} -> {report.path}", soft_wrap=True)


@import_app.command("flickr-aes")
def import_flickr_aes(
    root: Optional[Path] = typer.Option(None, "--root", help="Folder with FLICKR-AES_image_labeled_by_each_worker.csv (or per-worker <worker>.csv files)."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="The label CSV, or a folder of per-worker CSVs (default: found in --root)."),
    test_workers: Optional[Path] = typer.Option(None, "--test-workers", help="Test-worker list: CSV with header ID, or space-separated with a worker column."),
    split_seed: int = typer.Option(0, "--split-seed", help="Seed of the derived split when no --test-workers is given."),
    features: Optional[Path] = typer.Option(None, "--features", help=_FEATURES_HELP),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Rater-dataset directory to create."),
    drop_missing: bool = typer.Option(False, "--drop-missing", help=_DROP_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", help=_DRY_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", "--force", help="Replace --out if it already holds files."),
) -> None:
    """FLICKR-AES: worker ratings (1..5) of 40K Flickr images; 37 test workers in the standard split."""
    from piaa.tasks.importers import parse_flickr_aes

    parsed = parse_flickr_aes(root, labels=labels, test_workers=test_workers, seed=split_seed)
    _finish_import(parsed, features, out_dir, dry_run, drop_missing, overwrite)


@import_app.command("aadb")
def import_aadb(
    annotations: List[Path] = typer.Option(..., "--annotations", help="Raw MTurk result CSV, long worker,image,score CSV, or a folder of them (repeatable)."),
    test_workers: Optional[Path] = typer.Option(None, "--test-workers", help="Test-worker list: CSV with header ID, or space-separated with a worker column."),
    split_seed: int = typer.Option(0, "--split-seed"),
    features: Optional[Path] = typer.Option(None, "--features", help=_FEATURES_HELP),
    out_dir: Optional[Path] = typer.Option(None, "--out"),
    drop_missing: bool = typer.Option(False, "--drop-missing", help=_DROP_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", help=_DRY_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", "--force", help="Replace --out if it already holds files."),
) -> None:
    """AADB: per-rater overall scores (1..5) from the released MTurk annotations."""
    from piaa.tasks.importers import parse_aadb

    parsed = parse_aadb(annotations, test_workers=test_workers, seed=split_seed)
    _finish_import(parsed, features, out_dir, dry_run, drop_missing, overwrite)


@import_app.command("psychoflickr")
def import_psychoflickr(
    into: Optional[Path] = typer.Option(None, "--into", help="Rating dataset to add the personality raters to (required unless --dry-run)."),
    per_image: Optional[Path] = typer.Option(None, "--per-image", help="Space-separated file: image path, then O C E A N in [-1, 1]."),
    users: Optional[Path] = typer.Option(None, "--users", help="CSV: user and the five Big-Five columns (names or O,C,E,A,N)."),
    likes: Optional[Path] = typer.Option(None, "--likes", help="CSV: user,image (with --users)."),
    user_from: str = typer.Option("auto", "--user-from", help="Per-image form: users are image folders ('folder') or distinct trait vectors ('traits')."),
    user_prefix: str = typer.Option("", "--user-prefix", help="Prefix for personality user ids (to avoid clashes)."),
    features: Optional[Path] = typer.Option(None, "--features", help="Feature store for liked images not already in --into (same backbone)."),
    out_dir: Optional[Path] = typer.Option(None, "--out"),
    drop_missing: bool = typer.Option(False, "--drop-missing", help=_DROP_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", help=_DRY_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", "--force", help="Replace --out if it already holds files."),
) -> None:
    """PsychoFlickr: Big-Five users and their liked images, merged into a rating dataset in one step."""
    from piaa.tasks.importers import merge_personality, parse_psychoflickr

    parsed = parse_psychoflickr(per_image=per_image, users=users, likes=likes, user_from=user_from, user_prefix=user_prefix)
    if not dry_run and (into is None or out_dir is None):
        raise UsageFailure("give --into DATASET and --out DIR: personality raters are merged into a rating dataset (or --dry-run)")

    def merge(parsed, features, out_dir, *, drop_missing, overwrite):
        return merge_personality(parsed, into, out_dir, features=features, drop_missing=drop_missing, overwrite=overwrite)

    _finish_import(parsed, features, out_dir, dry_run, drop_missing, overwrite, writer=merge, needs_features=False)


@import_app.command("ava")
def import_ava(
    ava_txt: Path = typer.Option(..., "--ava-txt", help="AVA.txt: index, image id, 10 vote counts, 2 tags, challenge id per line."),
    features: Optional[Path] = typer.Option(None, "--features", help=_FEATURES_HELP),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Distribution-set directory to create."),
    drop_missing: bool = typer.Option(False, "--drop-missing", help="Drop images without features and report the count."),
    dry_run: bool = typer.Option(False, "--dry-run", help=_DRY_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", "--force", help="Replace --out if it already holds files."),
) -> None:
    """AVA: per-image score distributions (1..10) for generic aesthetics heads."""
    from piaa.tasks.importers import parse_ava, write_ava

    _finish_import(parse_ava(ava_txt), features, out_dir, dry_run, drop_missing, overwrite, writer=write_ava)
