"""Reproducibility without global state: every entry point takes a seed and derives its own RNGs."""

from __future__ import annotations

import contextlib
import zlib
from typing import TYPE_CHECKING, Iterator

import numpy as np

if TYPE_CHECKING:
    import torch


def derive_seed(*parts: int | str) -> int:
    """A stable 63-bit seed from any mix of ints and strings (independent of PYTHONHASHSEED)."""
    words: list[int] = []
    for part in parts:
        if isinstance(part, str):
            words.append(zlib.crc32(part.encode("utf-8")))
        else:
            words.append(int(part) & 0xFFFFFFFF)
    return int(np.random.SeedSequence(words).generate_state(2, dtype=np.uint32).view(np.uint64)[0] >> 1)


def numpy_rng(*parts: int | str) -> np.random.Generator:
    return np.random.default_rng(derive_seed(*parts))


@contextlib.contextmanager
def torch_seeded(*parts: int | str) -> Iterator[torch.Generator]:
    """Run torch code (layer init, dropout) under a derived seed, restoring the global RNG afterwards.

    Layer initialisers and dropout draw from torch's default generator; forking it keeps callers'
    random state untouched while making everything inside deterministic.
    """
    import torch  # here, not at module level: numpy-only users (dataset import) stay torch-free

    seed = derive_seed(*parts)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        yield gen
