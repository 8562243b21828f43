"""Errors a user can act on: each renders as one line naming where the problem is."""

from __future__ import annotations


class PiaaError(Exception):
    """Base class for problems the user can fix; the CLI prints them as one line and exits 2."""


class DataError(PiaaError, ValueError):
    """Bad input data. Names the file, the line (1-based, header = line 1), the field and what was expected."""

    def __init__(self, file: str, message: str, *, line: int | None = None, field: str | None = None):
        self.file, self.line, self.field, self.detail = str(file), line, field, message
        where = self.file
        if line is not None:
            where += f" line {line}"
        if field is not None:
            where += f", field '{field}'"
        super().__init__(f"{where}: {message}")


class ConfigError(PiaaError, ValueError):
    """A bad method name, configuration field or value."""


def unknown_name(kind: str, name: str, known) -> ConfigError:
    """The error for a name missing from a registry, with the closest known name as a hint."""
    import difflib

    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"unknown {kind} {name!r}{hint} (known: {', '.join(known)})")


class NotFittedError(PiaaError, RuntimeError):
    """A method used before `fit` (or before a run's state was loaded into it)."""


class RunError(PiaaError):
    """A run directory that is missing, incomplete or from an incompatible version."""
