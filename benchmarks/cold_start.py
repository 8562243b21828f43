"""Cold start as a ratio: `piaa adapt --user 42 --shots 10` against `python -c "import torch"`.

    python benchmarks/cold_start.py [--rounds 5]

Both are timed alternately in the same run (so machine load hits both alike), best and median of
`--rounds` each; then `python -X importtime` lists what the adapt command imports beyond torch.
Target (issue 11): ratio <= 1.1. Writes its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def timed(cmd: list[str], env: dict, cwd: str) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def imports_beyond_torch(cmd: list[str], env: dict, cwd: str, top: int = 8) -> list[tuple[str, float]]:
    """Import time of `cmd` spent outside what `import torch` imports, by top-level package (self
    times summed, so nothing is counted twice), largest first."""
    def self_times(args: list[str]) -> dict[str, int]:
        proc = subprocess.run([sys.executable, "-X", "importtime", *args], env=env, cwd=cwd, capture_output=True, text=True)
        out = {}
        for line in proc.stderr.splitlines():
            if line.startswith("import time:") and line.count("|") == 2:
                own, _, name = line[len("import time:"):].split("|")
                if own.strip().isdigit():
                    out[name.strip()] = int(own)
        return out

    torch_modules = self_times(["-c", "import torch"])
    by_package: dict[str, int] = {}
    for name, own in self_times(cmd[1:]).items():
        if name not in torch_modules:
            by_package[name.split(".")[0]] = by_package.get(name.split(".")[0], 0) + own
    return sorted(((k, v / 1e6) for k, v in by_package.items()), key=lambda item: -item[1])[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PIAA_RUNS": str(Path(tmp) / "runs"), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        piaa = [sys.executable, "-m", "piaa"]
        subprocess.run([*piaa, "meta-train", "--no-progress"], env=env, cwd=tmp, check=True, capture_output=True)
        adapt_cmd = [*piaa, "adapt", "--user", "42", "--shots", "10"]
        torch_cmd = [sys.executable, "-c", "import torch"]
        timed(adapt_cmd, env, tmp)  # warm the page cache for both
        timed(torch_cmd, env, tmp)
        adapt, torch = [], []
        for _ in range(args.rounds):
            torch.append(timed(torch_cmd, env, tmp))
            adapt.append(timed(adapt_cmd, env, tmp))
        extra = imports_beyond_torch(adapt_cmd, env, tmp)
    best = min(adapt) / min(torch)
    median = statistics.median(adapt) / statistics.median(torch)
    print(f"import torch: best {min(torch):.2f} s, median {statistics.median(torch):.2f} s")
    print(f"piaa adapt --user 42 --shots 10: best {min(adapt):.2f} s, median {statistics.median(adapt):.2f} s")
    print(f"ratio: best {best:.2f}x, median {median:.2f}x (target <= 1.1x)")
    for name, seconds in extra:
        print(f"  beyond torch: {name} {seconds:.3f} s")
    if args.no_write:
        return
    listing = ", ".join(f"`{name}` {seconds:.2f} s" for name, seconds in extra)
    body = (
        "| measurement | best of {n} | median of {n} |\n|---|---|---|\n".format(n=args.rounds)
        + f"| `python -c \"import torch\"` | {min(torch):.2f} s | {statistics.median(torch):.2f} s |\n"
        + f"| `piaa adapt --user 42 --shots 10` (cold process, pa-iaa run on the demo) | {min(adapt):.2f} s | {statistics.median(adapt):.2f} s |\n"
        + f"| **ratio** (target <= 1.1x) | **{best:.2f}x** | **{median:.2f}x** |\n\n"
        + f"Import time beyond what `import torch` imports, by package (self times from `python -X importtime`): {listing}.\n\n"
        + "The two commands alternate in one run, so machine load affects both alike. Reproduce: `python benchmarks/cold_start.py`."
    )
    write_section("cold-start", "Cold start against importing torch (issue 11)", body)


if __name__ == "__main__":
    main()
