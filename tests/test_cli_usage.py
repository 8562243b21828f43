"""Usage errors (unknown command or option, bad or missing value) are one line on stderr and exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

USAGE_ERRORS = [
    (["meta-train", "--seed", "abc"], "--seed"),
    (["frobnicate"], "frobnicate"),
    (["adapt", "--shots", "10"], "--user"),
    (["adapt", "--user", "42", "--shots", "ten"], "--shots"),
    (["data", "describe", "--no-such-option"], "--no-such-option"),
    (["evaluate", "--repeats"], "--repeats"),
]


@pytest.mark.parametrize("args,named", USAGE_ERRORS, ids=[" ".join(a) for a, _ in USAGE_ERRORS])
def test_usage_error_is_one_line_naming_the_culprit_with_exit_2(cli, args, named):
    result = cli(*args)
    assert result.code == 2
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: ") and named in lines[0]
    assert "Traceback" not in result.err and result.out == ""


def test_python_dash_m_piaa_reports_a_usage_error_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "piaa", "meta-train", "--seed", "abc"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "--seed" in proc.stderr and "Traceback" not in proc.stderr
