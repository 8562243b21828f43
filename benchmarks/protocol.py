"""Foundation speed: the full protocol for `ridge` on the demo, and a cold `piaa adapt`.

Targets (issue 2): full protocol (all test raters x {10, 100} x 10 repeats) under 5 s on 2 cores;
`piaa adapt --user 42 --shots 10` under 3 s wall time from a cold start.
Run: python benchmarks/protocol.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write_section  # noqa: E402

from piaa.protocol import evaluate  # noqa: E402
from piaa.registry import create_method  # noqa: E402
from piaa.runs import resolve_data  # noqa: E402


def best_of(n: int, fn) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    data, _ = resolve_data("demo")
    rows = []
    for name in ("giaa", "ridge"):
        method = create_method(name)
        fit = best_of(1, lambda: method.fit(data.without("test"), seed=0))
        result = {}
        proto = best_of(3, lambda: result.setdefault("r", evaluate(method, data, shots=[10, 100], repeats=10, seed=0)))
        s = result["r"].summary.set_index("shots")
        rows.append((name, fit, proto, s.loc[10, "srocc_mean"], s.loc[100, "srocc_mean"]))
        print(f"{name}: fit {fit:.2f} s, protocol {proto:.2f} s, SROCC@10 {s.loc[10, 'srocc_mean']:.3f}, @100 {s.loc[100, 'srocc_mean']:.3f}")

    piaa = shutil.which("piaa") or str(Path(sys.executable).with_name("piaa"))
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PIAA_RUNS": str(Path(tmp) / "runs")}
        subprocess.run([piaa, "meta-train", "--no-progress"], env=env, check=True, capture_output=True)
        cold = best_of(3, lambda: subprocess.run([piaa, "adapt", "--user", "42", "--shots", "10"], env=env, check=True, capture_output=True))
        imp = best_of(3, lambda: subprocess.run([sys.executable, "-c", "import piaa.workflows"], env=env, check=True, capture_output=True, cwd=tmp))
    print(f"piaa adapt --user 42 --shots 10 (cold process): {cold:.2f} s (of which importing piaa: {imp:.2f} s)")

    table = "| method | fit on demo | full protocol (30 raters x {10,100} x 10) | SROCC@10 | SROCC@100 |\n|---|---|---|---|---|\n"
    table += "".join(f"| {n} | {f:.2f} s | {p:.2f} s | {a:.3f} | {b:.3f} |\n" for n, f, p, a, b in rows)
    body = (
        table
        + f"\n`piaa adapt --user 42 --shots 10`, cold process, best of 3: **{cold:.2f} s** "
        f"(importing piaa and torch: {imp:.2f} s). Targets: protocol < 5 s, cold adapt < 3 s.\n\n"
        "Reproduce: `python benchmarks/protocol.py`."
    )
    write_section("protocol", "Protocol and cold start (issue 2)", body)


if __name__ == "__main__":
    main()
