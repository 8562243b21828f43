"""`piaa profiles list|show|delete`, and storing a new user's profile (`piaa adapt --ratings`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from piaa.commands.output import UsageFailure, key_value_table, note, out

app = typer.Typer(no_args_is_help=True, help="Stored user profiles: list, show, delete.")
RUN_HELP = "Run directory (default: the latest run)."
STORE_HELP = "Profile store file (default <run>/profiles.sqlite)."


def open_store(run: Optional[Path], store: Optional[Path], *, need_model: bool):
    """(model or None, store): listing and deleting need no model, so they skip loading the run."""
    from piaa.profiles import DEFAULT_NAME, ProfileStore
    from piaa.runs import latest_run

    if need_model:
        from piaa.personalize import load

        model = load(run)
        return model, ProfileStore(store, model=model) if store else model.profiles
    if store is not None:
        return None, ProfileStore(store)
    run_dir = run if run is not None else latest_run()
    return None, ProfileStore(Path(run_dir) / DEFAULT_NAME)


def adapt_new_user(user: str, ratings: Path, *, run, save: bool, big_five, seed: int, store) -> None:
    """`piaa adapt --ratings FILE`: adapt a new user from their own CSV, and with --save store it."""
    from piaa.personalize import adapt_from_csv
    from piaa.tasks.format import parse_big_five

    traits = None if big_five is None else parse_big_five(big_five, error=lambda message: UsageFailure(f"--big-five: {message}")).tolist()
    model, profiles = open_store(run, store, need_model=True)
    if save:
        profiles.model_id()  # a foreign, newer or damaged store is refused before anything is printed
    profile = adapt_from_csv(model, ratings, user=user, big_five=traits, seed=seed)
    out.print(f"user {profile.user}: adapted {model.method_name} ({model.model_id}) from {profile.n_ratings} ratings")
    out.print(f"profile: {len(profile.state_bytes()):,} bytes: {profile.holds()}")
    if not save:
        out.print("not stored (add --save to keep this profile)")
        return
    replaced = profile.user in profiles
    profiles.save(profile)
    verb = "replaced" if replaced else "saved"
    out.print(f"{verb} profile of {profile.user} in {profiles.path} ({profile.stored_bytes} bytes)")
    if store is None:
        out.print(f"  (profiles belong to this run: after training a new run, reach them with --run {model.path})", soft_wrap=True)


@app.command("list")
def profiles_list(
    run: Optional[Path] = typer.Option(None, "--run", help=RUN_HELP),
    store: Optional[Path] = typer.Option(None, "--store", help=STORE_HELP),
) -> None:
    """The stored users: ratings, size, when adapted."""
    _, profiles = open_store(run, store, need_model=False)
    rows = profiles.list()
    out.print(f"{len(rows)} profile(s) in {profiles.path}", soft_wrap=True)
    table = Table()
    widest = max((len(str(u)) for u in rows["user"]), default=4)
    table.add_column("user", no_wrap=True, min_width=min(widest, 80))  # ids are shown whole, never wrapped
    for col in ("method", "ratings", "bytes", "updated"):
        table.add_column(col, justify="right" if col in ("ratings", "bytes") else "left")
    for row in rows.itertuples():
        table.add_row(str(row.user), str(row.method), str(row.n_ratings), str(row.bytes), str(row.updated))
    out.print(table)
    if store is None and len(rows) == 0:
        from piaa.profiles import stores_beside

        others = stores_beside(profiles.path.parent, exclude=profiles.path)
        if others:
            where = ", ".join(f"{path.parent.name} ({count})" for path, count in others[:5])
            note(f"profiles are kept per run, and this run has none; other runs hold some: {where}. List them with --run RUN")


@app.command("show")
def profiles_show(
    user: str = typer.Argument(..., help="User id."),
    run: Optional[Path] = typer.Option(None, "--run", help=RUN_HELP),
    store: Optional[Path] = typer.Option(None, "--store", help=STORE_HELP),
) -> None:
    """One profile: model, ratings, timestamps, size."""
    _, profiles = open_store(run, store, need_model=False)
    info = profiles.info(user)
    rated = info.pop("ratings")
    rows = [(key, str(info[key])) for key in ("method", "model_id", "n_ratings", "seed", "big_five", "bytes", "created", "updated", "piaa_version")]
    images = rated.get("images") or [f"row {i}" for i in range(len(rated["scores"]))]
    shown = ", ".join(f"{im}={s:g}" for im, s in list(zip(images, rated["scores"]))[:20])
    rows.append(("ratings", shown + (" …" if len(images) > 20 else "")))
    out.print(key_value_table(rows, title=f"profile {info['user']}"))


@app.command("delete")
def profiles_delete(
    user: str = typer.Argument(..., help="User id."),
    run: Optional[Path] = typer.Option(None, "--run", help=RUN_HELP),
    store: Optional[Path] = typer.Option(None, "--store", help=STORE_HELP),
) -> None:
    """Remove one user's profile."""
    _, profiles = open_store(run, store, need_model=False)
    profiles.delete(user)
    out.print(f"deleted profile of {user} from {profiles.path}")
