"""Cold start as a ratio: `piaa adapt --user 42 --shots 10` against `python -c "import torch"`.

    python benchmarks/cold_start.py [--rounds 5]

Both are timed alternately in the same run (so machine load hits both alike), best and median of
`--rounds` each, in wall time and in CPU time (user + system of the child process, which a busy
machine inflates far less); then `python -X importtime` lists what the adapt command imports beyond
torch, and whether it imports torch at all. The run is the default method's (`piaa meta-train`).
Target (issue 11): ratio <= 1.1. Writes its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def timed(cmd: list[str], env: dict, cwd: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=cwd, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def imports_beyond_torch(cmd: list[str], env: dict, cwd: str, top: int = 8) -> tuple[list[tuple[str, float]], bool]:
    """Import time of `cmd` spent outside what `import torch` imports, by top-level package (self
    times summed, so nothing is counted twice), largest first; and whether `cmd` imports torch."""
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
    imported = self_times(cmd[1:])
    for name, own in imported.items():
        if name not in torch_modules:
            by_package[name.split(".")[0]] = by_package.get(name.split(".")[0], 0) + own
    return sorted(((k, v / 1e6) for k, v in by_package.items()), key=lambda item: -item[1])[:top], "torch" in imported


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PIAA_RUNS": str(Path(tmp) / "runs"), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        piaa = [sys.executable, "-m", "piaa"]
        subprocess.run([*piaa, "meta-train", "--no-progress"], env=env, cwd=tmp, check=True, capture_output=True)
        method = json.loads(next((Path(tmp) / "runs").glob("*/config.json")).read_text())["method"]
        adapt_cmd = [*piaa, "adapt", "--user", "42", "--shots", "10"]
        torch_cmd = [sys.executable, "-c", "import torch"]
        timed(adapt_cmd, env, tmp)  # warm the page cache for both
        timed(torch_cmd, env, tmp)
        adapt, torch = [], []
        for _ in range(args.rounds):
            torch.append(timed(torch_cmd, env, tmp))
            adapt.append(timed(adapt_cmd, env, tmp))
        extra, loads_torch = imports_beyond_torch(adapt_cmd, env, tmp)
    load = os.getloadavg()[0]
    stats = {}
    for kind, i in (("wall", 0), ("CPU", 1)):
        a, t = [x[i] for x in adapt], [x[i] for x in torch]
        stats[kind] = (min(t), statistics.median(t), min(a), statistics.median(a), min(a) / min(t), statistics.median(a) / statistics.median(t))
        print(f"{kind}: import torch best {min(t):.2f} s, median {statistics.median(t):.2f} s; piaa adapt best {min(a):.2f} s, "
              f"median {statistics.median(a):.2f} s; ratio best {stats[kind][4]:.2f}x, median {stats[kind][5]:.2f}x (target <= 1.1x)")
    print(f"adapt ({method} run) imports torch: {loads_torch}; 1-minute load average at the end: {load:.1f}")
    for name, seconds in extra:
        print(f"  beyond torch: {name} {seconds:.3f} s")
    if args.no_write:
        return
    listing = ", ".join(f"`{name}` {seconds:.2f} s" for name, seconds in extra)
    n = args.rounds
    rows = "".join(
        f"| `python -c \"import torch\"`, {kind} | {st[0]:.2f} s | {st[1]:.2f} s |\n"
        f"| `piaa adapt --user 42 --shots 10` ({method} run on the demo), {kind} | {st[2]:.2f} s | {st[3]:.2f} s |\n"
        f"| **ratio, {kind}** (target <= 1.1x) | **{st[4]:.2f}x** | **{st[5]:.2f}x** |\n"
        for kind, st in stats.items()
    )
    body = (
        f"| measurement (cold processes) | best of {n} | median of {n} |\n|---|---|---|\n" + rows + "\n"
        + f"The adapt command {'imports' if loads_torch else 'does not import'} torch. "
        + f"Import time beyond what `import torch` imports, by package (self times from `python -X importtime`): {listing}.\n\n"
        + f"The two commands alternate in one run, so machine load affects both alike; CPU time (user + system of the process) "
        + f"is the steadier figure on a shared machine (1-minute load average {load:.1f} at the end). Reproduce: `python benchmarks/cold_start.py --rounds {n}`."
    )
    write_section("cold-start", "Cold start against importing torch (issue 11)", body)


if __name__ == "__main__":
    main()
