"""`piaa score`: a stored user's personalised scores for images or feature rows, best first."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from piaa.commands.output import UsageFailure, check_output_file, out, write_csv
from piaa.commands.profiles import RUN_HELP, STORE_HELP, open_store

SHOWN_ROWS = 1000  # longer rankings go to --csv


def score(
    images: Optional[List[str]] = typer.Argument(None, help="Dataset image ids or image paths."),
    user: str = typer.Option(..., "--user", help="A stored profile's user id."),
    features: Optional[Path] = typer.Option(None, "--features", help="Score the rows of this .npy [n, dim] instead."),
    top: Optional[int] = typer.Option(None, "--top", min=1, help="Show only the best N."),
    run: Optional[Path] = typer.Option(None, "--run", help=RUN_HELP),
    store: Optional[Path] = typer.Option(None, "--store", help=STORE_HELP),
    csv_file: Optional[Path] = typer.Option(None, "--csv", help="Write rank,index,image,score as CSV."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --csv file."),
) -> None:
    """Personalised scores for a stored user, best first."""
    if bool(images) == (features is not None):
        raise UsageFailure("give IMAGES or --features FILE.npy (one of the two)")
    check_output_file(csv_file, "--csv", force)
    inputs = images
    shared = None
    model, profiles = open_store(run, store, need_model=True)
    if features is not None:
        from piaa.personalize import read_feature_rows

        inputs = read_feature_rows(features, model.feature_dim)
    profile = profiles.load(user)
    if features is not None:
        # the method's user-independent trunk, computed once per run and file (<run>/shared/)
        shared = model.shared_for_file(features, inputs)
    ranked = profile.rank(inputs, top=top, shared=shared)
    if "image" not in ranked:
        ranked.insert(2, "image", [f"row {i}" for i in ranked["index"]])
    if csv_file is not None:
        write_csv(csv_file, ranked)
    out.print(f"{profile.user}: {len(ranked)} image(s), best first ({model.method_name}, {profile.n_ratings} ratings)", soft_wrap=True)
    table = Table()
    for col in ("rank", "image", "score"):
        table.add_column(col, justify="right" if col != "image" else "left")
    for row in ranked.head(SHOWN_ROWS).itertuples():
        table.add_row(str(row.rank), str(row.image), f"{row.score:.3f}")
    out.print(table)
    if len(ranked) > SHOWN_ROWS:
        out.print(f"({len(ranked) - SHOWN_ROWS} more rows; use --top or --csv)")
