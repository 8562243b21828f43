"""docs/api.md is executable: its python blocks run in order, then its console commands."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

from piaa.console import cli

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def blocks(kind: str) -> list[str]:
    return re.findall(rf"^```{kind}\n(.*?)^```", DOC.read_text(encoding="utf-8"), flags=re.S | re.M)


def test_python_examples_run(run_copy, tmp_path, monkeypatch, capsys):
    code = blocks("python")
    assert len(code) >= 5
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "docs_api"}
    for i, block in enumerate(code):
        exec(compile(block, f"{DOC.name} python block {i + 1}", "exec"), namespace)
    out = capsys.readouterr().out
    assert "alice 10 ridge" in out
    assert out.count("error: ") == 4 and "did you mean 'alice'" in out and "got 9" in out and "got (10, 3)" in out
    assert not (run_copy / "profiles.sqlite").exists() or namespace["store"].users() == []


def test_console_examples_run(run_copy, tmp_path, monkeypatch, capsys):
    (csv,) = blocks("csv")
    monkeypatch.chdir(tmp_path)
    Path("my.csv").write_text(csv)
    commands = [line[2:] for block in blocks("console") for line in block.splitlines() if line.startswith("$ ")]
    assert [c.split()[:2] for c in commands] == [["piaa", "adapt"], ["piaa", "score"], ["piaa", "profiles"], ["piaa", "profiles"], ["piaa", "profiles"]]
    outputs = []
    for command in commands:
        monkeypatch.setattr(sys, "argv", shlex.split(command))
        try:
            cli.main()
        except SystemExit as exc:
            assert not exc.code, f"{command!r} exited with {exc.code}: {capsys.readouterr().err}"
        outputs.append(capsys.readouterr().out)
    assert "saved profile of alice" in outputs[0] and "from 5 ratings" in outputs[0]
    assert all(f"demo_0010{i}.jpg" in outputs[1] for i in range(3))
    assert "alice" in outputs[2] and "demo_00000.jpg=4" in outputs[3].replace(" ", "")
    assert "deleted profile of alice" in outputs[4]
