"""Thread limits for many small linear-algebra calls (one rater at a time).

Per-rater work is tiny (tens to hundreds of rows); spreading it over threads costs more than it
saves, and on a busy machine oversubscribed BLAS threads are many times slower. The protocol runs
its episodes under `single_threaded()`; training keeps torch's default.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from threadpoolctl import threadpool_limits


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(before)
