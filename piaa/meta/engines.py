"""Engines: what computes an algorithm's meta-gradient. The built-in `batched` engine is the
algorithm's own `meta_gradient` (the functional core in `piaa.meta.core`); another engine (e.g. one
backed by learn2learn) registers a builder that turns an algorithm into a function of the same
signature, and a wrapper (e.g. a distributed all-reduce) composes with any of them.
"""

from __future__ import annotations

from typing import Callable

from piaa.meta.core import Algorithm, Meta, MetaStep, Params, TaskBatch

MetaGradientFn = Callable[[Meta, Params, TaskBatch, "dict | None"], MetaStep]
_ENGINES: dict[str, Callable[[Algorithm], MetaGradientFn]] = {"batched": lambda algorithm: algorithm.meta_gradient}


def register_engine(name: str, build: Callable[[Algorithm], MetaGradientFn]) -> None:
    """Make `engine=name` available: `build(algorithm)` returns its meta-gradient function."""
    _ENGINES[name] = build


def engine_names() -> tuple[str, ...]:
    return tuple(_ENGINES)


def meta_gradient_fn(algorithm: Algorithm, engine: str = "batched") -> MetaGradientFn:
    if engine not in _ENGINES:
        raise ValueError(f"engine must be one of {', '.join(_ENGINES)}, got {engine!r}")
    return _ENGINES[engine](algorithm)
