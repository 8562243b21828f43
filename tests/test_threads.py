"""Thread limits do not import torch: a job that never needs torch (a numpy method's `piaa adapt`)
stays torch-free, and one that imports it inside the job still gets the requested count."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import sys
from piaa.threads import job_threads
with job_threads(1):
    pass
print("torch imported by the limit:", "torch" in sys.modules)
with job_threads(3):
    with job_threads(2):
        import torch
        print("torch threads when imported in a job of 2 inside 3:", torch.get_num_threads())
    print("back in the job of 3:", torch.get_num_threads())
after = torch.get_num_threads()
torch.set_num_threads(5)
with job_threads(1):
    print("a job once torch is loaded:", torch.get_num_threads())
print("restored:", torch.get_num_threads())
"""


def test_job_threads_leaves_torch_unimported_and_a_later_import_gets_the_count():
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines == [
        "torch imported by the limit: False",
        "torch threads when imported in a job of 2 inside 3: 2",
        "back in the job of 3: 3",
        "a job once torch is loaded: 1",
        "restored: 5",
    ]
