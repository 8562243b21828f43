"""Backbones by name (`--backbone NAME`): the interface, the spec each registers, the built-in table."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from piaa.plugins import Registry


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
    """A named backbone: `factory(name, *, weights, download, seed) -> Backbone`, a one-line
    summary, and the optional extra / importable modules it needs (for `piaa features backbones`)."""

    def __init__(self, name: str, factory: Callable[..., Backbone], summary: str, needs: str | None = None, modules: tuple[str, ...] = ()):
        self.name, self.factory, self.summary, self.needs, self.modules = name, factory, summary, needs, modules

    def available(self) -> bool:
        """Whether the modules this backbone imports are installed (not whether they import cleanly)."""
        import importlib.util

        return all(importlib.util.find_spec(m) is not None for m in self.modules)

    def create(self, *, weights: str | Path | None = None, download: bool = False, seed: int = 0) -> Backbone:
        return self.factory(self.name, weights=weights, download=download, seed=seed)


# The built-in backbones: a module attribute holding a BackboneSpec, or a dict of them (a family of
# variants). Each module is imported on first lookup (they import torch lazily). Another package
# adds backbones through the entry-point group `piaa.backbones`.
BACKBONES: Registry[BackboneSpec] = Registry("backbone", group="piaa.backbones")
BACKBONES.add("handcrafted", "piaa.features.handcrafted:SPEC")
BACKBONES.add_family("piaa.features.torchvision_backbones:SPECS")
BACKBONES.add_family("piaa.features.clip:SPECS")


def register_backbone(name: str, *, summary: str, needs: str | None = None, modules: tuple[str, ...] = ()) -> Callable:
    """Decorator form: register `factory(weights=..., download=..., seed=...) -> Backbone` under `name`.

    `needs` names the optional extra (e.g. "vision") so `piaa features backbones` can say what to install.
    """

    def wrap(factory: Callable[..., Backbone]) -> Callable[..., Backbone]:
        BACKBONES.register(name)(BackboneSpec(name, lambda _name, **kw: factory(**kw), summary, needs, modules))
        return factory

    return wrap


def backbone_spec(name: str) -> BackboneSpec:
    return BACKBONES.get(name)


def list_backbones() -> dict[str, BackboneSpec]:
    return BACKBONES.items()


def create_backbone(name: str, *, weights: str | Path | None = None, download: bool = False, seed: int = 0) -> Backbone:
    """Build a backbone. `weights`: None = the published weights (from the local cache, or fetched
    when `download`), "random" = seeded random initialisation (tests, smoke runs), or a local file."""
    return backbone_spec(name).create(weights=weights, download=download, seed=seed)
