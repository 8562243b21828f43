"""Scoring a million cached feature vectors for one stored user, every method, beside the hardware bound.

    python benchmarks/scoring.py [--methods giaa,ridge] [--n 1000000] [--repeats 3]

For each method: a quickly trained run on the demo (scoring cost depends on the architecture, not
on how long it trained), one user adapted from 10 ratings and stored, reloaded from the store, then
`profile.predict` on N cached 256-dim float32 feature rows (best and median of 3). Beside it, in the
same run: the memory bound (summing the N x 256 array once, which any scorer must read) and the
matmul bound (one N x 256 @ 256 x 1 product, the cheapest possible linear scorer). Target (issue 11):
<= 0.5 s for every method. Methods with a user-independent trunk (`Method.shared_representation`)
are also timed as `piaa score --features` runs them once the trunk's outputs are cached: the trunk
once per file (reported), then per user only `UserModel.predict_from_shared` (best of `--repeats`,
at least 3). Writes its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write_section  # noqa: E402

NEEDS = (
    "Scoring 1,000,000 rows in 0.5 s through a network of F thousand matrix FLOPs per row takes 2 x F GFLOP/s "
    "(164 kFLOP/row: 328 GFLOP/s), more than two CPU cores deliver. So methods whose user model is a small per-user "
    "part on a user-independent trunk score from the trunk's outputs, computed once per feature file and run and "
    "cached in `<run>/shared/` (keyed by the run's model id and the file's sha256; `piaa score --features` does this): "
    "the trunk column is that one-off cost, the per-user column what every further user costs. Methods that adapt the "
    "whole network (maml, fomaml, reptile, meta-sgd, finetune, blg-piaa) have no shared trunk: for them the matmul "
    "bound above is the floor (anil adapts only the last layer, so its trunk is shared). Where best / bound is below "
    "1x, the dense-product rate measured once at the start (under the load of the moment) understated what the "
    "method's larger products reach later in the run: read the bound as an estimate on a shared machine."
)
# Short training: only the architecture matters for scoring speed.
QUICK = {"epochs": "2", "pretrain_epochs": "1", "meta_steps": "4", "val_every": "2", "checkpoint_every": "2", "network_epochs": "2"}


def timed(fn, repeat: int = 3) -> tuple[float, float]:
    walls = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - start)
    return min(walls), statistics.median(walls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="")
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--full-n", type=int, default=100_000,
        help="time the full predict and the trunk on this many rows and scale to --n (both are linear in rows); "
        "the per-user part from the cached trunk is always timed on all --n rows",
    )
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    import torch

    import piaa
    from piaa.personalize import CHUNK, _finite_rows, _LazyRows
    from piaa.shared_cache import compute_shared
    from piaa.registry import list_methods, method_class
    from piaa.workflows import meta_train

    names = [m.strip() for m in args.methods.split(",") if m.strip()] or list(list_methods())
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        first = None
        rows = []
        for name in names:
            fields = {f.name for f in dataclasses.fields(method_class(name).Config)}
            overrides = [f"{k}={v}" for k, v in QUICK.items() if k in fields]
            model = piaa.load(meta_train(name, None, out=Path(tmp) / name, overrides=overrides))
            data = model.dataset
            if first is None:
                pick = rng.integers(0, len(data.images), size=args.n)
                cached = np.asarray(data.features[np.sort(pick)], dtype=np.float32)
                cached += rng.normal(0, 0.01, size=cached.shape).astype(np.float32)
                w = torch.from_numpy(rng.normal(size=(cached.shape[1], 1)).astype(np.float32))
                xt = torch.from_numpy(cached)
                memory = timed(lambda: cached.sum(axis=0))
                matmul = timed(lambda: xt @ w)
                square = torch.from_numpy(rng.normal(size=(cached.shape[1], cached.shape[1])).astype(np.float32))
                block = xt[:32768].contiguous()
                gemm_s, _ = timed(lambda: block @ square)
                gemm_rate = 2 * block.shape[0] * square.shape[0] * square.shape[1] / gemm_s  # FLOP/s of a dense product
                first = (memory, matmul, gemm_rate)
            rater = data.rater(data.users_in("test")[0])
            profile = model.adapt(np.asarray(data.features[rater.image_index[:10]]), rater.scores[:10], user="u")
            store = piaa.ProfileStore(Path(tmp) / f"{name}.sqlite", model=model)
            store.save(profile)
            profile = piaa.ProfileStore(store.path, model=model).load("u")
            from torch.utils.flop_counter import FlopCounterMode

            with FlopCounterMode(display=False) as counter:
                profile.predict(cached[:1000])
            flops_per_row = counter.get_total_flops() / 1000
            bound = max(flops_per_row * args.n / first[2], first[1][0])
            sample = cached[: min(args.full_n, args.n)]
            scale = args.n / len(sample)
            best, median = (t * scale for t in timed(lambda: profile.predict(sample), args.repeats))
            start = time.perf_counter()
            shared = compute_shared(model.method, sample, CHUNK, _finite_rows)
            trunk = (time.perf_counter() - start) * scale
            if shared is not None and len(sample) < args.n:  # trunk outputs for all rows: the sample's, repeated
                shared = np.resize(shared, (args.n, shared.shape[1]))
            per_user = shared_bound = None
            if shared is not None:
                reads_x = []

                class Watched(_LazyRows):
                    def __getitem__(self, rows):
                        reads_x.append(1)
                        return super().__getitem__(rows)

                np.testing.assert_allclose(profile._predict(cached[:5000], shared[:5000]), profile.predict(cached[:5000]), rtol=0, atol=1e-6)
                per_user = timed(lambda: profile.user_model.predict_from_shared(shared, Watched(cached)), max(3, args.repeats))
                # the per-user part must at least read the trunk outputs (and the features, if it uses them)
                shared_bound = shared.nbytes / (cached.nbytes / first[0][0]) + (first[1][0] if reads_x else 0.0)
            rows.append((name, best, median, flops_per_row, bound, trunk if shared is not None else None, per_user, shared_bound, None if shared is None else shared.shape[1]))
            extra = f"; trunk once {trunk:.3f} s, per user from cache best {per_user[0]:.3f} s" if shared is not None else "; no shared trunk"
            print(f"{name}: score {args.n:,} best {best:.3f} s, median {median:.3f} s; {flops_per_row / 1e3:.0f} kFLOP/row, bound {bound:.3f} s{extra}", flush=True)
            del shared
    (mem_best, _), (mm_best, _), gemm_rate = first
    gb = cached.nbytes / 1e9
    print(f"memory bound: read {gb:.2f} GB in {mem_best:.3f} s ({gb / mem_best:.1f} GB/s); matmul bound (N x 256 @ 256 x 1): {mm_best:.3f} s")
    if args.no_write:
        return
    n = f"{args.n:,}"
    lines = [
        f"{n} cached feature vectors (256-dim float32, {gb:.2f} GB in memory), one stored user adapted from 10 ratings, "
        f"`profile.predict` best / median of {args.repeats}; torch on {torch.get_num_threads()} threads. Target: <= 0.5 s for every method."
        + (f" Full predict and trunk timed on the first {args.full_n:,} rows and scaled to {n} (both are linear in rows; ≈ below);"
           f" the per-user part from the cached trunk is timed on all {n} rows (best of {max(3, args.repeats)})." if args.full_n < args.n else ""),
        "",
        f"Bounds measured in the same run: reading the array once (numpy sum) **{mem_best:.3f} s** ({gb / mem_best:.1f} GB/s); "
        f"the cheapest linear scorer (one {n} x 256 @ 256 x 1 matmul) **{mm_best:.3f} s**.",
        "",
        f"Per method, the matmul bound is its matrix-product FLOPs per row (counted by torch's FlopCounterMode) times {n}, "
        f"at the dense-product rate measured in the same run ({gemm_rate / 1e9:.1f} GFLOP/s for 32,768 x 256 @ 256 x 256), "
        "and never below the linear-scorer bound: no implementation of that method can score faster on this machine.",
        "",
        "Methods evaluated in numpy (learned-prior, task-vector, and parts of others) show 0 counted FLOPs; their bound is then the linear scorer's.",
        "",
        f"| method | full predict {n}: best (s) | median (s) | matrix FLOPs per row | matmul bound (s) | best / bound | trunk once (s), width | **per user from cached trunk: best (s)** | its read bound (s) | meets 0.5 s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, best, median, flops, bound, trunk, per_user, shared_bound, width in rows:
        if per_user is None:
            cached_cols = "no shared trunk | n/a | n/a"
            fastest = best
        else:
            cached_cols = f"{'≈' if args.full_n < args.n else ''}{trunk:.3f}, {width} | **{per_user[0]:.3f}** | {shared_bound:.3f}"
            fastest = per_user[0]
        approx = "≈" if args.full_n < args.n else ""
        lines.append(f"| {name} | {approx}{best:.3f} | {approx}{median:.3f} | {flops:,.0f} | {bound:.3f} | {best / bound:.1f}x | {cached_cols} | {'yes' if fastest <= 0.5 else 'no'} |")
    lines += ["", NEEDS, "", f"Reproduce: `python benchmarks/scoring.py --repeats {args.repeats} --full-n {args.full_n}`."]
    write_section("scoring", "Scoring a million cached feature vectors (issue 11)", "\n".join(lines))


if __name__ == "__main__":
    main()
