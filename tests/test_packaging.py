"""The wheel's package list covers every package folder (an explicit list is easy to forget)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_folder_is_listed_in_pyproject():
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(tool["packages"])
    folders = {dotted: ROOT / rel for dotted, rel in tool["package-dir"].items()}
    on_disk = set()
    for dotted, folder in folders.items():
        if dotted == "piaa.console":
            continue  # the repository root itself: only cli.py is taken from it
        for init in folder.rglob("__init__.py"):
            parts = init.parent.relative_to(folder).parts
            on_disk.add(".".join((dotted, *parts)))
    assert on_disk - listed == set(), "add these packages to [tool.setuptools] packages in pyproject.toml"
