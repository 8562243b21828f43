"""Progress for long work, on stderr so piped stdout stays clean.

On a terminal: a live bar (rich). Elsewhere (CI logs, `nohup`, a pipe): a plain line every
`PIAA_PROGRESS_EVERY` seconds (default 30), so a long job in a log file is visibly alive without
flooding it. Disabled: silent.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Callable, Iterator, TextIO

DEFAULT_EVERY_S = 30.0


def _every() -> float:
    try:
        return max(0.0, float(os.environ.get("PIAA_PROGRESS_EVERY", DEFAULT_EVERY_S)))
    except ValueError:
        return DEFAULT_EVERY_S


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else f"{seconds // 60}:{seconds % 60:02d}"


class LineProgress:
    """`advance(n)` that prints 'label: done/total (pct), elapsed, about ... left' at most every `every` s."""

    def __init__(self, label: str, total: int | None, every: float, stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic):
        self.label, self.total, self.every, self.clock = label, total, every, clock
        self.stream = stream
        self.done = 0
        self.start = self.last = clock()

    def line(self) -> str:
        elapsed = self.clock() - self.start
        if self.total:
            pct = 100.0 * self.done / self.total
            left = elapsed * (self.total - self.done) / self.done if self.done else None
            eta = f", about {_clock(left)} left" if left is not None else ""
            return f"{self.label}: {self.done:,}/{self.total:,} ({pct:.0f}%), {_clock(elapsed)} elapsed{eta}"
        return f"{self.label}: {self.done:,} done, {_clock(elapsed)} elapsed"

    def __call__(self, n: int = 1) -> None:
        self.done += n
        now = self.clock()
        if now - self.last >= self.every:
            self.last = now
            stream = self.stream or sys.stderr
            print(self.line(), file=stream, flush=True)


@contextlib.contextmanager
def progress_bar(label: str, total: int | None, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """Yield `advance(n)`: a live bar on a terminal, periodic plain lines elsewhere, nothing if disabled."""
    if not enabled:
        yield lambda n=1: None
        return
    if not sys.stderr.isatty():
        yield LineProgress(label, total, _every())
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n=1: bar.advance(task, n)
