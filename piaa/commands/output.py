"""What every command prints with: the two consoles, usage failures, tables, the evaluation report."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

from rich.console import Console
from rich.table import Table
from rich.text import Text

# Markup and highlighting are off for everything printed: user ids, file names and CSV cells are
# data, so "[bold red]boss[/]" or "[link=...]" prints as typed, never as style or a hyperlink.
# Colour comes only from explicit styles (`note`, `warn`, `bold`), never from parsing a string.
out = Console(markup=False, highlight=False)
err = Console(stderr=True, markup=False, highlight=False)


class UsageFailure(Exception):
    """Raised for bad input in the CLI layer; reported as one line, exit status 2."""


def styled(*parts) -> Text:
    """Text from plain strings and (string, style) pairs; strings are never parsed as markup."""
    return Text.assemble(*parts)


def note(message: str, label: str = "note") -> None:
    err.print(styled((f"{label}:", "yellow"), " ", message), soft_wrap=True)


def warn(message: str, label: str = "warning") -> None:
    err.print(styled((f"{label}:", "red"), " ", message), soft_wrap=True)


def check_output_file(path: Optional[Path], option: str, force: bool) -> None:
    """Refuse, before any work, an output file that would overwrite one (unless --force), that is a
    directory, or whose folder cannot be written: no half-done job ends in a failed write."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise UsageFailure(f"{option} {path} is a directory; give a file path")
    if path.exists() and not force:
        raise UsageFailure(f"{option} {path} already exists (add --force to replace it)")
    _probe_writable(path.parent, path)


def check_output_dir(path: Optional[Path], option: str, force: bool) -> None:
    """The same for an output directory: a file there, or a non-empty directory without --force, is refused."""
    if path is None:
        return
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageFailure(f"{option} {path} is a file; give a directory path")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise UsageFailure(f"{option} {path} already exists and is not empty (add --force to replace it)")
    _probe_writable(path.parent, path)


def _probe_writable(folder: Path, target: Path) -> None:
    import tempfile

    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageFailure(f"{target}: {existing} is a file, not a directory")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(target)) from None


def write_json(path: Path, payload: dict) -> None:
    from piaa.atomic import write_json as atomic_write_json

    atomic_write_json(path, payload)


def write_csv(path: Path, frame) -> None:
    from piaa.atomic import write_text

    write_text(path, frame.to_csv(index=False))


def key_value_table(rows: Iterable[tuple[str, str]], title: Optional[str] = None) -> Table:
    """A two-column table without a header (describe, dry-run summaries, one profile)."""
    table = Table(title=title, show_header=False)
    table.add_column("what")
    table.add_column("value")
    for key, value in rows:
        table.add_row(key, value)
    return table


def summary_table(title: str, summary) -> Table:
    """The protocol's per-shot summary (SROCC mean ± std, PLCC, rater counts)."""
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


def print_notes(notes: Iterable[str], label: str = "note") -> None:
    """A method's own caveats (e.g. a personality head trained on too few raters)."""
    for message in notes:
        note(message, label)


def report_evaluation(result, json_file: Optional[Path], csv_file: Optional[Path] = None) -> None:
    """Skipped raters and failed episodes on stderr, then the --json / --csv files."""
    from piaa.tasks.sampling import MIN_QUERY

    for shots, users in sorted(result.skipped.items()):
        if users:
            note(f"{len(users)} rater(s) skipped at {shots} shots (fewer than {shots + MIN_QUERY} images)")
    for shots, users in sorted(result.no_big_five.items()):
        if users:
            note(
                f"{len(users)} rater(s) skipped at {shots} shots: no Big-Five known, and "
                f"{result.meta.get('method')} predicts from Big-Five alone at 0 shots (users.csv, or `piaa adapt --big-five`)"
            )
    failures = result.failures()
    if len(failures):
        first = failures.iloc[0]
        warn(f"{len(failures)} episode(s) failed; first: user {first.user}, {first.shots} shots: {first.error}")
    if json_file is not None:
        write_json(json_file, result.to_json())
    if csv_file is not None:
        write_csv(csv_file, result.rows)
