"""One `Registry` for everything piaa finds by name: methods, backbones, dataset importers.

An entry is a name and where its object lives, "package.module:attribute"; the module is imported
only when that name is first looked up, so `piaa adapt` with a ridge run never imports the
meta-learners. Three ways in:

- a built-in table line: `METHODS.add("ridge", "piaa.baselines.ridge:Ridge")`;
- a decorator on an object defined in place: `@METHODS.register("mine")` (eager, for scripts/tests);
- another installed package, through an entry point in its pyproject.toml:
  `[project.entry-points."piaa.methods"] mine = "mypkg.mine:MyMethod"` (read on the first miss).

A target may also be a bare "package.module" that registers its objects itself when imported (the
decorator form), or a "module:attribute" holding a dict of variants keyed by name (`add_family`).
A wrong name is a `ConfigError` naming the closest known one.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Generic, Mapping, TypeVar

from piaa.errors import ConfigError, unknown_name

T = TypeVar("T")


def load_target(target: str) -> Any:
    """Import "module:attribute" (dots allowed in the attribute) or a bare module."""
    module_name, _, attribute = target.partition(":")
    value: Any = importlib.import_module(module_name)
    for part in filter(None, attribute.split(".")):
        value = getattr(value, part)
    return value


def lazy_exports(package: str, namespace: dict[str, Any], exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's `__getattr__` and `__dir__` that import each exported name's module on first use
    (`exports`: name → module), so importing the package stays cheap."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__


def _origin(obj: Any) -> tuple[str, str]:
    """Where an object was defined: (module's last component, qualified name). The same definition
    imported again (a reload, one file under two package names) has the same origin."""
    module = getattr(obj, "__module__", "") or ""
    return module.rpartition(".")[2], getattr(obj, "__qualname__", repr(obj))


class Registry(Generic[T]):
    """Names → objects of one kind, imported on first use.

    `kind` names the kind in errors ("unknown method 'rigde'; did you mean 'ridge'?"); `group` is
    the entry-point group other packages register under; `on_load(name, obj)` runs once per name
    when its object is first loaded (methods learn their registered name this way).
    """

    def __init__(self, kind: str, *, group: str | None = None, on_load: Callable[[str, T], None] | None = None):
        self.kind, self.group, self.on_load = kind, group, on_load
        self._targets: dict[str, str] = {}  # name → "module:attr" (or a module registering itself)
        self._loaded: dict[str, T] = {}
        self._families: list[str] = []  # "module:attr" holding {name: object}; names known once loaded
        self._scanned_entry_points = False

    # -- registering -----------------------------------------------------------------------------
    def add(self, name: str, target: str) -> None:
        """Register `name` lazily: "module:attr" is imported when `name` is first looked up."""
        existing = self._targets.get(name)
        if existing is not None and existing != target:
            raise ConfigError(f"{self.kind} name {name!r} is already taken by {existing}")
        self._targets[name] = target

    def add_family(self, target: str) -> None:
        """Register every entry of the dict at "module:attr" (variants of one implementation, e.g.
        the torchvision backbones); the module is imported when a name not otherwise known is looked up."""
        if target not in self._families:
            self._families.append(target)

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register an object defined in place (eager). Registering the same definition
        again is allowed; a different object under a taken name is a ConfigError."""

        def wrap(obj: T) -> T:
            existing = self._loaded.get(name)
            if existing is not None and existing is not obj and _origin(existing) != _origin(obj):
                raise ConfigError(f"{self.kind} name {name!r} is already taken by {existing.__module__}.{_origin(existing)[1]}")
            target = self._targets.get(name)
            module = getattr(obj, "__module__", "")
            if target is not None and target.partition(":")[0] != module and name not in self._loaded:
                raise ConfigError(f"{self.kind} name {name!r} is already taken by {target}")
            self._targets.setdefault(name, f"{module}:{_origin(obj)[1]}")
            self._set(name, obj)
            return obj

        return wrap

    def remove(self, name: str) -> None:
        """Forget `name` (a test's temporary entry, or a plugin replacing one); unknown names are ignored."""
        self._targets.pop(name, None)
        self._loaded.pop(name, None)

    def _set(self, name: str, obj: T) -> None:
        if self.on_load is not None:
            self.on_load(name, obj)
        self._loaded[name] = obj

    # -- looking up ------------------------------------------------------------------------------
    def get(self, name: str) -> T:
        """The object registered as `name`, importing only its module."""
        if name in self._loaded:
            return self._loaded[name]
        if name not in self._targets:
            self._load_families()
            if name not in self._targets and name not in self._loaded:
                self._scan_entry_points()
        if name in self._loaded:
            return self._loaded[name]
        target = self._targets.get(name)
        if target is None:
            raise unknown_name(self.kind, name, self.names())
        value = load_target(target)
        if name in self._loaded:  # a bare module (or the attribute's module) registered it itself
            return self._loaded[name]
        if ":" not in target:
            raise ConfigError(f"{self.kind} {name!r}: importing {target} did not register it")
        if isinstance(value, Mapping):
            value = value[name]
        self._set(name, value)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def names(self) -> list[str]:
        """Every known name, sorted (imports only the family modules and reads entry points)."""
        self._load_families()
        self._scan_entry_points()
        return sorted(set(self._targets) | set(self._loaded))

    def builtin_names(self) -> list[str]:
        """The names registered in this process's tables, without importing anything."""
        return sorted(set(self._targets) | set(self._loaded))

    def items(self) -> dict[str, T]:
        """Every name with its object, sorted by name (imports them all)."""
        return {name: self.get(name) for name in self.names()}

    def name_of(self, obj: Any) -> str | None:
        """The name `obj` is registered under, found without importing anything."""
        for name, value in self._loaded.items():
            if value is obj:
                return name
        wanted = f"{getattr(obj, '__module__', '')}:{getattr(obj, '__qualname__', '')}"
        return next((name for name, target in self._targets.items() if target == wanted), None)

    # -- lazily found entries ----------------------------------------------------------------------
    def _load_families(self) -> None:
        while self._families:
            target = self._families.pop(0)
            for name, obj in load_target(target).items():
                self._targets.setdefault(name, target)
                if name not in self._loaded:
                    self._set(name, obj)

    def _scan_entry_points(self) -> None:
        if self._scanned_entry_points or self.group is None:
            return
        self._scanned_entry_points = True
        from importlib.metadata import entry_points

        for ep in entry_points(group=self.group):
            if ep.name not in self._targets and ep.name not in self._loaded:
                self._targets[ep.name] = ep.value
