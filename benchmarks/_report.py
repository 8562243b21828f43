"""Benchmarks write their figures into one section each of docs/benchmarks.md.

Each script owns the text between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`, so scripts can
be re-run independently without clobbering each other's numbers.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
HEADER = "# Benchmarks\n\nFigures written by the scripts in `benchmarks/` (re-run them to refresh a section).\n"


def machine() -> str:
    import torch

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}, "
        f"{_dt.date.today().isoformat()}, load average {load:.1f} when written"
    )


def write_section(name: str, title: str, body: str, doc: Path = DOC) -> None:
    text = doc.read_text(encoding="utf-8") if doc.exists() else HEADER
    block = f"<!-- bench:{name} -->\n## {title}\n\n_{machine()}_\n\n{body.strip()}\n<!-- /bench:{name} -->"
    pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text, encoding="utf-8")
