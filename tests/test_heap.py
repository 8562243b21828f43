"""piaa.heap: with glibc, freed blocks stay in the process, so reallocating them faults no pages."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from piaa.heap import glibc

ROUNDS = """
import resource, sys
import numpy as np
if sys.argv[1] == "keep":
    from piaa.heap import keep_freed_memory
    assert keep_freed_memory() and keep_freed_memory()  # idempotent
faults = []
for _ in range(3):  # 40 blocks of 512 KiB (20 MiB), touched, then all freed, as a meta-step does
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = [np.ones(1 << 17, dtype=np.float32) for _ in range(40)]
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    del blocks
print(faults[-1])
"""


def _faults_in_third_round(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env["PYTHONPATH"] = os.pathsep.join([os.getcwd(), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", ROUNDS, mode], capture_output=True, text=True, env=env, check=True)
    return int(out.stdout.strip())


@pytest.mark.skipif(glibc() is None, reason="glibc's malloc only")
def test_keep_freed_memory_stops_page_faults_on_reallocation():
    default, kept = _faults_in_third_round("default"), _faults_in_third_round("keep")
    assert default > 2000  # 20 MiB = 5,120 pages given back and faulted in again
    assert kept < 500


def test_keep_freed_memory_defers_to_thresholds_set_in_the_environment():
    script = "from piaa.heap import keep_freed_memory; print(keep_freed_memory())"
    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "131072", "PYTHONPATH": os.getcwd()}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "False"
