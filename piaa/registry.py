"""Methods by name. Implementations register themselves with `@register_method`."""

from __future__ import annotations

import importlib
from typing import Callable, TypeVar

from piaa.errors import ConfigError, unknown_name
from piaa.method import Method

M = TypeVar("M", bound=type[Method])
_METHODS: dict[str, type[Method]] = {}
# Where each built-in method is registered. A lookup imports only its method's module, so loading a
# run (`piaa adapt`) does not pay for every method's dependencies; listing imports them all.
_BUILTIN_METHODS = {
    **dict.fromkeys(("giaa", "ridge", "finetune", "pam", "knn", "user-mean"), "piaa.baselines"),
    **dict.fromkeys(("blg-piaa", "maml", "fomaml", "reptile", "meta-sgd", "anil"), "piaa.meta.methods"),
    "pa-iaa": "piaa.personality.method",
}
_BUILTIN_MODULES = tuple(dict.fromkeys(_BUILTIN_METHODS.values()))
_loaded = False


def register_method(name: str) -> Callable[[M], M]:
    """Class decorator: make a Method available under `name` (CLI `--method NAME`)."""

    def wrap(cls: M) -> M:
        existing = _METHODS.get(name)
        if existing is not None and existing is not cls and existing.__qualname__ != cls.__qualname__:
            raise ConfigError(f"method name {name!r} is already taken by {existing.__module__}.{existing.__qualname__}")
        cls.name = name
        _METHODS[name] = cls
        return cls

    return wrap


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)


def method_class(name: str) -> type[Method]:
    if name not in _METHODS and name in _BUILTIN_METHODS:
        importlib.import_module(_BUILTIN_METHODS[name])
    if name not in _METHODS:
        _load_builtins()
    try:
        return _METHODS[name]
    except KeyError:
        raise unknown_name("method", name, _METHODS) from None


def list_methods() -> dict[str, type[Method]]:
    _load_builtins()
    return dict(sorted(_METHODS.items()))


def create_method(name: str, overrides: list[str] | None = None, **fields) -> Method:
    """Build a method by name; `overrides` are `field=value` strings, `fields` typed values."""
    cls = method_class(name)
    cfg = cls.Config.with_overrides(None, overrides)
    if fields:
        cfg = cls.Config.from_dict({**cfg.to_dict(), **fields})
    return cls(cfg)
