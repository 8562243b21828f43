"""The `piaa` command line: the command groups of `piaa/commands/`, assembled into one app.

Each command lives in its own module as a thin shell over a library function; this file only puts
them together and turns user errors into one line and exit status 2 (`main`).
"""

from __future__ import annotations

import sys

import typer

from piaa.commands import data, evaluate, features, methods, profiles, score, train
from piaa.commands.output import UsageFailure, err, out  # noqa: F401  (out: tests set its width)

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Personalized image aesthetics assessment by meta-learning.")
app.add_typer(data.app, name="data")
app.command("meta-train")(train.meta_train)
app.command("adapt")(evaluate.adapt)
app.command("evaluate")(evaluate.evaluate)
app.command("methods")(methods.methods)
app.add_typer(features.app, name="features")
app.add_typer(profiles.app, name="profiles")
app.command("score")(score.score)
app.command("benchmark")(evaluate.benchmark)


def main() -> None:
    """Entry point: user errors become one line on stderr and exit status 2."""
    from piaa.errors import PiaaError

    try:
        app(standalone_mode=False, prog_name="piaa")
    except (PiaaError, UsageFailure, FileExistsError) as exc:
        err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except OSError as exc:  # missing file, read-only or full disk, a directory where a file belongs, ...
        err.print(f"error: {os_error_line(exc)}", markup=False, highlight=False, soft_wrap=True)
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


def os_error_line(exc: OSError) -> str:
    """One line for an operating-system error: the file, what went wrong, what to do."""
    import errno as _errno

    reason = exc.strerror or str(exc) or type(exc).__name__
    reason = reason[:1].lower() + reason[1:]
    hint = {
        _errno.ENOSPC: "the disk is full: free some space and run the command again",
        _errno.EROFS: "choose an output on a writable disk",
        _errno.EACCES: "choose a path you can write to",
        _errno.EISDIR: "give a file path, not a directory",
        _errno.ENOTDIR: "a part of the path is a file, not a directory",
    }.get(exc.errno)
    line = f"{exc.filename}: {reason}" if exc.filename is not None else reason
    return line + (f" ({hint})" if hint else "")


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
