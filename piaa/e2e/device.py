"""`--device auto|cpu|cuda` and mixed precision, which piaa uses on a GPU only."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from piaa.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """auto: the CUDA device when there is one (under torchrun: this rank's), else the CPU."""
    if name not in DEVICES:
        raise ConfigError(f"device must be one of {', '.join(DEVICES)}, got {name!r}")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("device cuda: this torch has no usable CUDA device (use --device cpu or auto)")
    return torch.device("cuda", torch.cuda.current_device())


def loading_device(name: str) -> torch.device:
    """Where a saved run's model goes: the CPU when it was configured so, else CUDA when there is
    one (a run trained on a GPU still loads on a machine without one)."""
    return resolve_device("cpu" if name == "cpu" else "auto")


@contextlib.contextmanager
def autocast(device: torch.device, enabled: bool) -> Iterator[None]:
    """float16 autocast on CUDA when `enabled`; a no-op on the CPU (float32 there)."""
    if enabled and device.type == "cuda":
        with torch.autocast("cuda", dtype=torch.float16):
            yield
    else:
        yield


def on_device(meta_gradient, device: torch.device):
    """A meta-gradient function `fn(meta, buffers, batch, inner_state)` whose task batch (a dataclass
    of tensors built on the CPU) is moved to `device` first; `fn` itself on the CPU."""
    if device.type == "cpu":
        return meta_gradient
    import dataclasses

    class _OnDevice:
        def __getattr__(self, name):
            return getattr(meta_gradient, name)

        def __call__(self, meta, buffers, batch, inner_state=None):
            moved = {f.name: getattr(batch, f.name).to(device, non_blocking=True) for f in dataclasses.fields(batch)}
            return meta_gradient(meta, buffers, dataclasses.replace(batch, **moved), inner_state)

    return _OnDevice()
