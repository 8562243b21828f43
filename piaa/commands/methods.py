"""`piaa methods`: the registered methods and what each does."""

from __future__ import annotations

from rich.table import Table

from piaa.commands.output import out


def methods() -> None:
    """List the registered methods."""
    from piaa.registry import list_methods

    table = Table(title="methods")
    table.add_column("name")
    table.add_column("what it does")
    for name, cls in list_methods().items():
        table.add_row(name, cls.summary)
    out.print(table)
