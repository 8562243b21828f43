"""`piaa adapt` on a learned-prior run (the default method) loads and adapts without importing
torch, the largest part of a cold start, and prints what the torch path prints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from piaa.workflows import meta_train

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys
sys.argv = ["piaa", "adapt", "--user", sys.argv[1], "--shots", "10", "--run", sys.argv[2]]
from piaa.console.cli import main
try:
    main()
finally:
    print("torch imported:", "torch" in sys.modules)
"""


def test_adapt_on_a_learned_prior_run_imports_no_torch_and_scores_like_the_torch_load(tiny_dir, tmp_path):
    run = meta_train("learned-prior", str(tiny_dir), out=tmp_path / "run", seed=0, overrides=["network_epochs=3", "validation_repeats=1"])
    from piaa.runs import load_run

    user = load_run(run).load_data().users_in("test")[0]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, user, str(run)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == "torch imported: False"
    # The same run loaded with torch tensors (as before) gives the same SROCC line.
    from piaa.workflows import adapt_user

    result = adapt_user(load_run(run), user, 10)
    assert f"SROCC {result.summary.iloc[0]['srocc_mean']:.3f}" in lines[0]
