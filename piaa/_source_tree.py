"""Import `piaa.tasks`, `piaa.baselines` and `piaa.console` from a source checkout.

The product keeps `tasks/`, `baselines/` and `cli.py` at the top of the repository, but they are
parts of the `piaa` package. A wheel (`pip install .`) copies them into `piaa/` through
`[tool.setuptools.package-dir]`, so nothing here runs. From a checkout (`pip install -e .` in any
editable mode, or `import piaa` with the repository root on `sys.path`) they sit next to `piaa/`,
not inside it; this finder maps the three dotted names to those folders so every way of running
piaa sees the same package. It only answers for those three names.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from pathlib import Path

#: dotted name → folder relative to the repository root (the same table as pyproject's package-dir)
SUBPACKAGES = {"piaa.tasks": "tasks", "piaa.baselines": "baselines", "piaa.console": "."}


class SourceTreeFinder(importlib.abc.MetaPathFinder):
    """Finds the mapped subpackages in a checkout; their own submodules then import normally."""

    def __init__(self, root: Path):
        self.root = root

    def find_spec(self, fullname, path=None, target=None):
        relative = SUBPACKAGES.get(fullname)
        if relative is None:
            return None
        folder = (self.root / relative).resolve()
        init = folder / "__init__.py"
        if init.is_file():
            return importlib.util.spec_from_file_location(fullname, init, submodule_search_locations=[str(folder)])
        # piaa.console is the repository root itself, which has no __init__.py: a namespace package
        spec = importlib.machinery.ModuleSpec(fullname, None, is_package=True)
        spec.submodule_search_locations = [str(folder)]
        return spec


def install(package_dir: Path) -> None:
    """Add the finder when `package_dir` (the imported piaa/) lies in a checkout, not a wheel."""
    root = package_dir.parent
    in_checkout = not (package_dir / "tasks").is_dir() and (root / "tasks" / "__init__.py").is_file() and (root / "cli.py").is_file()
    if in_checkout and not any(isinstance(f, SourceTreeFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, SourceTreeFinder(root))
