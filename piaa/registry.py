"""Methods by name (`--method NAME`, `piaa methods`): the built-in table and the old helper names.

A new method is one new file with its `Method` subclass plus one line in `_BUILTIN_METHODS`; the
class learns its name from the table. Another package adds methods through the entry-point group
`piaa.methods` (see piaa/plugins.py and docs/contributing.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, TypeVar

from piaa.plugins import Registry

if TYPE_CHECKING:
    from piaa.method import Method

M = TypeVar("M", bound="type[Method]")

# name → "module:Class" (imported on first lookup), or a module that registers its classes itself
# with `@register_method` (the meta-learner presets are made by a function).
_BUILTIN_METHODS = {
    "giaa": "piaa.baselines.giaa:GenericPrior",
    "ridge": "piaa.baselines.ridge:RidgeResidual",
    "finetune": "piaa.baselines.finetune:FineTune",
    "pam": "piaa.baselines.pam:PersonalizedResidual",
    "knn": "piaa.baselines.knn:NearestRated",
    "user-mean": "piaa.baselines.user_mean:UserMean",
    **dict.fromkeys(("blg-piaa", "blg-piaa-tuned", "maml", "fomaml", "reptile", "meta-sgd", "anil"), "piaa.meta.methods"),
    "pa-iaa": "piaa.personality.method:PersonalityAssisted",
    "learned-prior": "piaa.priors.learned_prior:LearnedPrior",
    "task-vector": "piaa.priors.task_vector:TaskVector",
}


def _learn_name(name: str, cls: "type[Method]") -> None:
    cls.name = name


METHODS: "Registry[type[Method]]" = Registry("method", group="piaa.methods", on_load=_learn_name)
for _name, _target in _BUILTIN_METHODS.items():
    METHODS.add(_name, _target)


def register_method(name: str) -> Callable[[M], M]:
    """Class decorator: make a Method available under `name` (CLI `--method NAME`)."""
    return METHODS.register(name)


def method_class(name: str) -> "type[Method]":
    return METHODS.get(name)


def list_methods() -> "dict[str, type[Method]]":
    return METHODS.items()


def create_method(name: str, overrides: list[str] | None = None, **fields) -> "Method":
    """Build a method by name; `overrides` are `field=value` strings, `fields` typed values."""
    cls = method_class(name)
    cfg = cls.Config.with_overrides(None, overrides)
    if fields:
        cfg = cls.Config.from_dict({**cfg.to_dict(), **fields})
    return cls(cfg)
