"""Shared fixtures: small generated datasets in the rater format, and an in-process CLI runner."""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from piaa.tasks.simulate import write_demo
from tests_helpers import TINY

# Subprocesses (`python -m piaa.console.cli ...`) import the checkout under test, like this session.
_ROOT = Path(__file__).resolve().parent.parent
os.environ["PYTHONPATH"] = os.pathsep.join([str(_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    """A tiny dataset; tests must copy it (`tiny_copy`) before changing anything in it."""
    return write_demo(tmp_path_factory.mktemp("data") / "tiny", seed=3, spec=TINY)


@pytest.fixture
def tiny_copy(tiny_dir, tmp_path) -> Path:
    dest = tmp_path / "tiny"
    shutil.copytree(tiny_dir, dest)
    return dest


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    """The full embedded demo (seed 0), generated once per test session."""
    return write_demo(tmp_path_factory.mktemp("demo") / "demo", seed=0)


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys, monkeypatch, tmp_path):
    """Run `piaa ARGS...` in-process (as the console script does) from a scratch directory."""
    from piaa.console.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("PIAA_RUNS", str(tmp_path / "runs"))

    def run(*args: str) -> CliResult:
        monkeypatch.setattr(sys, "argv", ["piaa", *map(str, args)])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tests train tiny models: one thread is as fast and immune to a busy machine's oversubscription."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True, scope="session")
def _runs_outside_the_tree(tmp_path_factory):
    """Runs written without --out (and the LATEST pointer) go to a scratch folder, never ./runs."""
    import os

    before = os.environ.get("PIAA_RUNS")
    os.environ["PIAA_RUNS"] = str(tmp_path_factory.mktemp("runs"))
    yield
    if before is None:
        os.environ.pop("PIAA_RUNS", None)
    else:
        os.environ["PIAA_RUNS"] = before
