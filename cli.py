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


def _print_personality_report(personality: Optional[dict]) -> None:
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


def _report(result, json_file: Optional[Path], csv_file: Optional[Path] = None) -> None:
    for shots, users in sorted(result.skipped.items()):
        if users:
            err.print(f"[yellow]note:[/] {len(users)} rater(s) skipped at {shots} shots (fewer than {shots + 10} images)")
    for shots, users in sorted(result.no_big_five.items()):
        if users:
            err.print(
                f"[yellow]note:[/] {len(users)} rater(s) skipped at {shots} shots: no Big-Five known, and "
                f"{result.meta.get('method')} predicts from Big-Five alone at 0 shots (users.csv, or `piaa adapt --big-five`)"
            )
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
    from piaa.distributed import env_rank

    if env_rank() != 0:  # under torchrun, rank 0 reports
        return
    run = load_run(run_path)
    out.print(f"[bold]{run.info['method']}[/] trained on {run.data_ref} (seed {seed})")
    out.print_json(json.dumps(run.info["config"]))
    _print_personality_report(run.info.get("extra_state", {}).get("personality"))
    for note in getattr(run.method, "notes", lambda: [])():
        err.print(f"[yellow]warning:[/] {note}", soft_wrap=True)
    out.print(f"run saved to [bold]{run_path}[/]")


@app.command()
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
        _adapt_new_user(user, ratings, run=run, save=save, big_five=big_five, seed=seed, store=store)
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
        model = create_method(method, set_)
        dataset, ref = resolve_data(data, pixels=model.uses_images)
        model.fit(dataset.without("test"), seed=seed, progress=sys.stderr.isatty())
        title = f"{method} on {dataset.name}"
    else:
        loaded = load_run(run)
        dataset = resolve_data(data, pixels=loaded.method.uses_images)[0] if data is not None else loaded.load_data()
        model = loaded.method
        title = f"{loaded.info['method']} ({loaded.path.name}) on {dataset.name}"
    result = run_protocol(model, dataset, shots=shot_list, repeats=repeats, seed=seed, progress=sys.stderr.isatty())
    for note in getattr(model, "notes", lambda: [])():
        err.print(f"[yellow]note:[/] {note}", soft_wrap=True)
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

# -- native importers and image features (issue 5) ------------------------------------------------
import_app = typer.Typer(no_args_is_help=True, help="Import a published dataset into the rater-dataset format.")
data_app.add_typer(import_app, name="import")
features_app = typer.Typer(no_args_is_help=True, help="Image features: extract a feature store, list backbones.")
app.add_typer(features_app, name="features")

_FEATURES_HELP = "Feature store written by `piaa features extract` (required unless --dry-run)."
_DROP_HELP = "Drop ratings of images without features and report the count (default: refuse)."
_DRY_HELP = "Parse and check only; print what would be imported, write nothing."


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def _finish_import(parsed, features: Optional[Path], out_dir: Optional[Path], dry_run: bool, drop_missing: bool, overwrite: bool, writer=None, needs_features: bool = True) -> None:
    """Print the parse notes, then write (or, with --dry-run, only summarise) the import."""
    from piaa.tasks.importers import write_import

    for note in parsed.notes:
        colour = "red" if note.startswith("WARNING") else "yellow"
        err.print(f"[{colour}]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
    table = Table(show_header=False)
    for key, value in parsed.summary():
        table.add_row(key, value)
    if dry_run:
        out.print(f"{parsed.name}: checked (dry run: nothing written)", soft_wrap=True)
        out.print(table)
        return
    if (needs_features and features is None) or out_dir is None:
        raise UsageFailure("give --features STORE and --out DIR (or --dry-run to check the files only)")
    report = (writer or write_import)(parsed, features, out_dir, drop_missing=drop_missing, overwrite=overwrite)
    for note in report.notes[len(parsed.notes):]:
        err.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
    raters = ", ".join(f"{n} {s}" for s, n in report.raters.items() if n)
    what = f"{report.ratings:,} ratings, {raters} raters" if raters else "score distributions, no raters"
    out.print(f"{parsed.name}: {report.images:,} images, {what} -> [bold]{escape(str(report.path))}[/]", soft_wrap=True)


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
    overwrite: bool = typer.Option(False, "--overwrite"),
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
    overwrite: bool = typer.Option(False, "--overwrite"),
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
    overwrite: bool = typer.Option(False, "--overwrite"),
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
    overwrite: bool = typer.Option(False, "--overwrite"),
) -> None:
    """AVA: per-image score distributions (1..10) for generic aesthetics heads."""
    from piaa.tasks.importers import parse_ava, write_ava

    _finish_import(parse_ava(ava_txt), features, out_dir, dry_run, drop_missing, overwrite, writer=write_ava)


@features_app.command("extract")
def features_extract(
    images: Path = typer.Option(..., "--images", help="Folder of images (searched recursively)."),
    backbone: str = typer.Option(..., "--backbone", help="Backbone name (see `piaa features backbones`)."),
    out_dir: Path = typer.Option(..., "--out", help="Feature store to write (re-run with the same --out to resume)."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Local weights file (.pth/.safetensors), or 'random' for a seeded random init."),
    download: bool = typer.Option(False, "--download", help="Allow fetching published weights when not cached locally."),
    batch_size: int = typer.Option(32, "--batch-size"),
    float16: bool = typer.Option(False, "--float16", help="Store features as float16 (half the size)."),
    workers: int = typer.Option(1, "--workers", help="Threads decoding images."),
    shard_size: int = typer.Option(512, "--shard-size", help="Images per committed shard (work lost on a kill is at most one shard)."),
    seed: int = typer.Option(0, "--seed", help="Seed for --weights random."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a finished store at --out."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Turn a folder of images into a feature store: batched, resumable, unreadable images reported."""
    from piaa.features.extract import extract_features

    result = extract_features(
        images, backbone, out_dir, weights=weights, download=download, seed=seed, batch_size=batch_size, float16=float16,
        shard_size=shard_size, workers=workers, progress=progress and sys.stderr.isatty(), overwrite=overwrite,
    )
    from piaa.distributed import env_rank

    if env_rank() != 0:  # under torchrun, rank 0 reports
        return
    out.print(
        f"{result.backbone}: {result.n_images:,} images x {result.dim} features -> [bold]{result.path}[/] "
        f"(computed {result.n_computed:,}, reused {result.n_reused:,} from an earlier run)",
        soft_wrap=True,
    )
    if result.n_failed:
        err.print(f"[yellow]warning:[/] {result.n_failed} unreadable image(s) skipped, listed in {result.path / 'failed.csv'}", highlight=False)


@features_app.command("backbones")
def features_backbones() -> None:
    """List the feature backbones and what they need."""
    from piaa.features import list_backbones

    table = Table(title="backbones")
    table.add_column("name")
    table.add_column("what it computes")
    table.add_column("needs")
    for name, spec in list_backbones().items():
        needs = "nothing" if not spec.needs else f"pip install 'piaa\\[{spec.needs}]'" + (" (installed)" if spec.available() else "")
        table.add_row(name, spec.summary, needs)
    out.print(table)


# -- personalisation: new users, stored profiles, scoring (docs/api.md) ---------------------------
profiles_app = typer.Typer(no_args_is_help=True, help="Stored user profiles: list, show, delete.")
app.add_typer(profiles_app, name="profiles")
_RUN_HELP = "Run directory (default: the latest run)."
_STORE_HELP = "Profile store file (default <run>/profiles.sqlite)."


def _open_store(run: Optional[Path], store: Optional[Path], *, need_model: bool):
    """(model or None, store): listing and deleting need no model, so they skip loading the run."""
    from piaa.profiles import DEFAULT_NAME, ProfileStore
    from piaa.runs import latest_run

    if need_model:
        from piaa.personalize import load

        model = load(run)
        return model, ProfileStore(store, model=model) if store else model.profiles
    run_dir = run if run is not None else latest_run()
    return None, ProfileStore(store or Path(run_dir) / DEFAULT_NAME)


def _parse_big_five(text: Optional[str]):
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise UsageFailure(f"--big-five expects five comma-separated numbers (O,C,E,A,N), got {text!r}") from None


def _adapt_new_user(user: str, ratings: Path, *, run, save: bool, big_five, seed: int, store) -> None:
    from piaa.personalize import adapt_from_csv

    model, profiles = _open_store(run, store, need_model=True)
    profile = adapt_from_csv(model, ratings, user=user, big_five=_parse_big_five(big_five), seed=seed)
    out.print(f"user {profile.user}: adapted {model.method_name} ({model.model_id}) from {profile.n_ratings} ratings")
    if not save:
        out.print("not stored (add --save to keep this profile)")
        return
    replaced = profile.user in profiles
    profiles.save(profile)
    verb = "replaced" if replaced else "saved"
    out.print(f"{verb} profile of {profile.user} in {profiles.path} ({profile.stored_bytes} bytes)")


@app.command("score")
def score(
    images: Optional[List[str]] = typer.Argument(None, help="Dataset image ids or image paths."),
    user: str = typer.Option(..., "--user", help="A stored profile's user id."),
    features: Optional[Path] = typer.Option(None, "--features", help="Score the rows of this .npy [n, dim] instead."),
    top: Optional[int] = typer.Option(None, "--top", help="Show only the best N."),
    run: Optional[Path] = typer.Option(None, "--run", help=_RUN_HELP),
    store: Optional[Path] = typer.Option(None, "--store", help=_STORE_HELP),
    csv_file: Optional[Path] = typer.Option(None, "--csv", help="Write rank,index,image,score as CSV."),
) -> None:
    """Personalised scores for a stored user, best first."""
    if bool(images) == (features is not None):
        raise UsageFailure("give IMAGES or --features FILE.npy (one of the two)")
    inputs = images
    if features is not None:
        import numpy as np

        try:
            inputs = np.load(features, mmap_mode="r", allow_pickle=False)
        except ValueError as exc:
            raise UsageFailure(f"{features}: not a readable .npy array ({exc})") from None
    model, profiles = _open_store(run, store, need_model=True)
    profile = profiles.load(user)
    ranked = profile.rank(inputs, top=top)
    if "image" not in ranked:
        ranked.insert(2, "image", [f"row {i}" for i in ranked["index"]])
    table = Table(title=f"{profile.user}: {len(ranked)} image(s), best first ({model.method_name}, {profile.n_ratings} ratings)")
    for col in ("rank", "image", "score"):
        table.add_column(col, justify="right" if col != "image" else "left")
    for row in ranked.head(1000).itertuples():
        table.add_row(str(row.rank), str(row.image), f"{row.score:.3f}")
    out.print(table)
    if len(ranked) > 1000:
        out.print(f"({len(ranked) - 1000} more rows; use --top or --csv)")
    if csv_file is not None:
        from piaa.atomic import write_text

        write_text(csv_file, ranked.to_csv(index=False))


@profiles_app.command("list")
def profiles_list(
    run: Optional[Path] = typer.Option(None, "--run", help=_RUN_HELP),
    store: Optional[Path] = typer.Option(None, "--store", help=_STORE_HELP),
) -> None:
    """The stored users: ratings, size, when adapted."""
    _, profiles = _open_store(run, store, need_model=False)
    rows = profiles.list()
    table = Table(title=f"{len(rows)} profile(s) in {profiles.path}")
    for col in ("user", "method", "ratings", "bytes", "updated"):
        table.add_column(col, justify="right" if col in ("ratings", "bytes") else "left")
    for row in rows.itertuples():
        table.add_row(str(row.user), str(row.method), str(row.n_ratings), str(row.bytes), str(row.updated))
    out.print(table)


@profiles_app.command("show")
def profiles_show(
    user: str = typer.Argument(..., help="User id."),
    run: Optional[Path] = typer.Option(None, "--run", help=_RUN_HELP),
    store: Optional[Path] = typer.Option(None, "--store", help=_STORE_HELP),
) -> None:
    """One profile: model, ratings, timestamps, size."""
    _, profiles = _open_store(run, store, need_model=False)
    info = profiles.info(user)
    table = Table(title=f"profile {info['user']}", show_header=False)
    table.add_column("what")
    table.add_column("value")
    rated = info.pop("ratings")
    for key in ("method", "model_id", "n_ratings", "seed", "big_five", "bytes", "created", "updated", "piaa_version"):
        table.add_row(key, str(info[key]))
    images = rated.get("images") or [f"row {i}" for i in range(len(rated["scores"]))]
    shown = ", ".join(f"{im}={s:g}" for im, s in list(zip(images, rated["scores"]))[:20])
    table.add_row("ratings", shown + (" …" if len(images) > 20 else ""))
    out.print(table)


@profiles_app.command("delete")
def profiles_delete(
    user: str = typer.Argument(..., help="User id."),
    run: Optional[Path] = typer.Option(None, "--run", help=_RUN_HELP),
    store: Optional[Path] = typer.Option(None, "--store", help=_STORE_HELP),
) -> None:
    """Remove one user's profile."""
    _, profiles = _open_store(run, store, need_model=False)
    profiles.delete(user)
    out.print(f"deleted profile of {user} from {profiles.path}")


# -- benchmark ----------------------------------------------------------------------------------
@app.command()
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


def main() -> None:
    """Entry point: user errors become one line on stderr and exit status 2."""
    from piaa.errors import PiaaError

    try:
        app(standalone_mode=False, prog_name="piaa")
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
    except _click_errors() as exc:
        # usage errors (unknown command or option, bad value, missing argument): one line, exit 2
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        command = exc.ctx.command_path if getattr(exc, "ctx", None) is not None else "piaa"
        err.print(f"error: {message} (see `{command} --help`)", markup=False, highlight=False, soft_wrap=True)
        sys.exit(getattr(exc, "exit_code", 2) or 2)


def _click_errors() -> tuple[type[BaseException], ...]:
    """The usage-error classes of whichever click typer runs on: its own (typer >= 0.26 vendors one)
    or the separate click package (older typer). Both are caught, so neither install shows a traceback."""
    found = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(__import__(module, fromlist=["ClickException"]).ClickException)
        except ImportError:
            continue
    return tuple(found)


if __name__ == "__main__":
    main()
