"""Backbones by name: `@register_backbone` next to each implementation, did-you-mean on a typo."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from piaa.errors import ConfigError, unknown_name

# Modules that register the built-in backbones; imported on first lookup (they import torch lazily).
_BUILTIN_MODULES = ("piaa.features.handcrafted", "piaa.features.torchvision_backbones", "piaa.features.clip")
_BACKBONES: dict[str, "BackboneSpec"] = {}
_loaded = False


class Backbone(ABC):
    """Turns images into fixed-length vectors.

    `prepare` runs per image (decode + deterministic preprocessing, may run in worker threads);
    `embed` runs per batch of prepared images and returns float32 [batch, dim].
    """

    name: str = ""
    dim: int = 0

    @abstractmethod
    def prepare(self, image: Image.Image) -> Any: ...

    @abstractmethod
    def embed(self, batch: Sequence[Any]) -> np.ndarray: ...

    def describe(self) -> dict[str, Any]:
        """Preprocessing and weights, recorded in the store's manifest.json."""
        return {}


class BackboneSpec:
    def __init__(self, name: str, factory: Callable[..., Backbone], summary: str, needs: str | None, modules: tuple[str, ...]):
        self.name, self.factory, self.summary, self.needs, self.modules = name, factory, summary, needs, modules

    def available(self) -> bool:
        """Whether the modules this backbone imports are installed (not whether they import cleanly)."""
        import importlib.util

        return all(importlib.util.find_spec(m) is not None for m in self.modules)


def register_backbone(name: str, *, summary: str, needs: str | None = None, modules: tuple[str, ...] = ()) -> Callable:
    """Register `factory(weights=..., download=..., seed=...) -> Backbone` under `name`.

    `needs` names the optional extra (e.g. "vision") so `piaa features backbones` can say what to install.
    """

    def wrap(factory: Callable[..., Backbone]) -> Callable[..., Backbone]:
        if name in _BACKBONES and _BACKBONES[name].factory is not factory and _BACKBONES[name].factory.__qualname__ != factory.__qualname__:
            raise ConfigError(f"backbone name {name!r} is already taken")
        _BACKBONES[name] = BackboneSpec(name, factory, summary, needs, modules)
        return factory

    return wrap


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)


def backbone_spec(name: str) -> BackboneSpec:
    _load_builtins()
    try:
        return _BACKBONES[name]
    except KeyError:
        raise unknown_name("backbone", name, _BACKBONES) from None


def list_backbones() -> dict[str, BackboneSpec]:
    _load_builtins()
    return dict(sorted(_BACKBONES.items()))


def create_backbone(name: str, *, weights: str | Path | None = None, download: bool = False, seed: int = 0) -> Backbone:
    """Build a backbone. `weights`: None = the published weights (from the local cache, or fetched
    when `download`), "random" = seeded random initialisation (tests, smoke runs), or a local file."""
    spec = backbone_spec(name)
    return spec.factory(weights=weights, download=download, seed=seed)
