"""Native dataset importers: published files → the rater-dataset format (see docs/datasets.md).

Each `parse_*` reads the published files into a `ParsedDataset` (checked, no features yet);
`write_import` (or `merge_personality`, `write_ava`) attaches features from a feature store and
writes the result atomically. `registry.IMPORTERS` finds each importer by its command name. The
names below are imported on first use, so looking up one importer imports only its module.
"""

_EXPORTS = {
    "parse_aadb": "piaa.tasks.importers.aadb",
    "parse_ava": "piaa.tasks.importers.ava",
    "write_ava": "piaa.tasks.importers.ava",
    "ImportReport": "piaa.tasks.importers.common",
    "ParsedDataset": "piaa.tasks.importers.common",
    "write_import": "piaa.tasks.importers.common",
    "parse_flickr_aes": "piaa.tasks.importers.flickr_aes",
    "parse_lapis": "piaa.tasks.importers.lapis",
    "parse_para": "piaa.tasks.importers.para",
    "para_to_big_five": "piaa.tasks.importers.para",
    "big_five_to_para": "piaa.tasks.importers.para",
    "parse_real_cur": "piaa.tasks.importers.real_cur",
    "merge_personality": "piaa.tasks.importers.psychoflickr",
    "parse_psychoflickr": "piaa.tasks.importers.psychoflickr",
    "IMPORTERS": "piaa.tasks.importers.registry",
    "Importer": "piaa.tasks.importers.registry",
    "Option": "piaa.tasks.importers.registry",
    "import_dataset": "piaa.tasks.importers.registry",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'piaa.tasks.importers' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
