"""Thread limits for small numerical work.

Per-rater work is tiny (tens to hundreds of rows) and piaa's networks are small: spreading them over
threads costs more than it saves, on a busy machine oversubscribed threads are many times slower,
and a fixed thread count keeps floating-point sums in the same order, so the same seed gives the
same numbers on any machine. Training and the protocol therefore run on one thread.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import sys
from typing import Iterator


class _ThreadsOnImport(importlib.abc.MetaPathFinder):
    """Sets torch's thread count right after torch is imported (once); remembers its default."""

    def __init__(self, n: int):
        self.n, self.default = n, None

    def find_spec(self, name, path=None, target=None):
        if name != "torch":
            return None
        sys.meta_path.remove(self)
        spec = next((s for f in sys.meta_path if hasattr(f, "find_spec") and (s := f.find_spec(name, path, target)) is not None), None)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            self.default = module.get_num_threads()
            module.set_num_threads(self.n)

        spec.loader.exec_module = exec_module
        return spec


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with `n` torch intra-op threads, restoring the previous count (None: leave as is). Cheap.

    Torch is not imported for this (a numpy method's `piaa adapt` never loads it): if it is not
    loaded yet, it gets `n` threads the moment the job imports it, and its default back afterwards.
    """
    if "torch" not in sys.modules:
        if not n:
            yield
            return
        hook = _ThreadsOnImport(n)
        sys.meta_path.insert(0, hook)
        try:
            yield
        finally:
            if hook in sys.meta_path:
                sys.meta_path.remove(hook)
            if hook.default is not None:
                sys.modules["torch"].set_num_threads(hook.default)
        return
    import torch

    before = torch.get_num_threads()
    if not n or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def limited_threads(n: int | None = 1) -> Iterator[None]:
    """Limit torch and numpy's BLAS (eigh, matmul) to `n` threads. The BLAS limit costs a few ms to
    set, so use it around whole jobs (a fit, an evaluation), not per call."""
    if not n:
        yield
        return
    from threadpoolctl import threadpool_limits

    with torch_threads(n), threadpool_limits(limits=n):
        yield


def single_threaded() -> contextlib.AbstractContextManager[None]:
    return limited_threads(1)


# The thread count a whole job asked for (`--threads N`, `meta_train(threads=N)`); 1 unless set.
_REQUESTED: list[int] = [1]


def requested_threads() -> int:
    return _REQUESTED[-1]


@contextlib.contextmanager
def job_threads(n: int | None = None) -> Iterator[None]:
    """Run a job on `n` threads (default: what an enclosing `job_threads` asked for, else 1); inner
    training loops that call `job_threads()` then use the same count instead of forcing one."""
    n = requested_threads() if n is None else int(n)
    if n < 1:
        from piaa.errors import ConfigError

        raise ConfigError(f"--threads must be at least 1, got {n}")
    _REQUESTED.append(n)
    try:
        with limited_threads(n):
            yield
    finally:
        _REQUESTED.pop()
