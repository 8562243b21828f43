"""Dataset importers by name: what each declares, and the built-in table (`piaa data import NAME`).

An importer is one module that parses a published dataset into a `ParsedDataset` and ends with an
`IMPORTER = Importer(...)` naming its options; one line in `_BUILTIN_IMPORTERS` makes it a command,
built from those options (plus the shared --features, --out, --drop-missing, --dry-run, --overwrite).
Another package adds importers through the entry-point group `piaa.importers`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from piaa.errors import ConfigError
from piaa.plugins import Registry

if TYPE_CHECKING:
    from piaa.tasks.importers.common import ImportReport, ParsedDataset

SHARED_OPTIONS = ("features", "out", "drop_missing", "dry_run", "overwrite")


@dataclass(frozen=True)
class Option:
    """One importer-specific option, shown as `--name-with-dashes`; plain data, so the tasks layer
    needs no CLI library. `arg` is the keyword it is passed as (default: `name`)."""

    name: str
    help: str = ""
    type: type = Path
    default: Any = None
    required: bool = False
    multiple: bool = False  # repeatable; the value is a list
    for_write: bool = False  # passed to `write` instead of `parse` (e.g. the dataset merged into)
    arg: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class Importer:
    """`parse(**options) -> ParsedDataset`, then `write(parsed, features, out, *, drop_missing,
    overwrite, **write_options) -> ImportReport` (default: `write_import`, a rater dataset)."""

    summary: str
    parse: Callable[..., "ParsedDataset"]
    options: tuple[Option, ...] = ()
    write: Callable[..., "ImportReport"] | None = None
    needs: tuple[str, ...] = ("features", "out")  # required unless a dry run
    needs_message: str = "give --features STORE and --out DIR (or --dry-run to check the files only)"
    help: Mapping[str, str] = field(default_factory=dict)  # help of the shared options, where it differs

    def _args(self, values: Mapping[str, Any], for_write: bool) -> dict[str, Any]:
        return {o.arg or o.name: values.get(o.name, o.default) for o in self.options if o.for_write == for_write}

    def read(self, values: Mapping[str, Any]) -> "ParsedDataset":
        """Parse the published files named by the option `values` (no features yet, nothing written)."""
        return self.parse(**self._args(values, for_write=False))

    def check_outputs(self, values: Mapping[str, Any]) -> None:
        """A ConfigError unless every output `needs` names is given (shared options included)."""
        if any(values.get(name) is None for name in self.needs):
            raise ConfigError(self.needs_message)

    def save(self, parsed: "ParsedDataset", values: Mapping[str, Any]) -> "ImportReport":
        """Attach features and write the dataset atomically, as the option `values` say."""
        self.check_outputs(values)
        if self.write is None:
            from piaa.tasks.importers.common import write_import as write
        else:
            write = self.write
        return write(
            parsed, values.get("features"), values["out"], drop_missing=bool(values.get("drop_missing")),
            overwrite=bool(values.get("overwrite")), **self._args(values, for_write=True),
        )


# name → "module:IMPORTER"; a module is imported only when its command runs (or help lists them all).
_BUILTIN_IMPORTERS = {
    "flickr-aes": "piaa.tasks.importers.flickr_aes:IMPORTER",
    "aadb": "piaa.tasks.importers.aadb:IMPORTER",
    "psychoflickr": "piaa.tasks.importers.psychoflickr:IMPORTER",
    "ava": "piaa.tasks.importers.ava:IMPORTER",
    "para": "piaa.tasks.importers.para:IMPORTER",
    "real-cur": "piaa.tasks.importers.real_cur:IMPORTER",
    "lapis": "piaa.tasks.importers.lapis:IMPORTER",
}

IMPORTERS: Registry[Importer] = Registry("importer", group="piaa.importers")
for _name, _target in _BUILTIN_IMPORTERS.items():
    IMPORTERS.add(_name, _target)


def import_dataset(name: str, *, dry_run: bool = False, **values: Any) -> "tuple[ParsedDataset, ImportReport | None]":
    """Parse (and unless `dry_run`, write) dataset `name` in one call: the library form of
    `piaa data import NAME`. `values` are the importer's options and the shared ones."""
    importer = IMPORTERS.get(name)
    parsed = importer.read(values)
    return parsed, None if dry_run else importer.save(parsed, values)
