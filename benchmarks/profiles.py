"""Personalisation speed and profile size: adapt a new user from 10 ratings, store, reload, score 100k.

    python benchmarks/profiles.py [--methods giaa,ridge] [--epochs 3] [--n-score 100000]

For each method: train a run on the demo (few epochs: speed and size do not depend on how well it
is trained), then time `model.adapt` from 10 ratings (feature rows and dataset image ids), saving,
loading a stored profile in a fresh store object, and scoring/ranking 100,000 cached feature vectors.
Writes its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write_section  # noqa: E402


def timed(fn, repeat: int) -> tuple[float, float, object]:
    """Median wall time and median CPU time (all threads) of `repeat` calls, and the last result.

    CPU time is reported beside wall time because the shared machines these run on are busy."""
    walls, cpus, out = [], [], None
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return float(np.median(walls)), float(np.median(cpus)), out


def bench_method(name: str, epochs: int, n_score: int, root: Path) -> dict:
    import piaa
    from piaa.registry import method_class
    from piaa.workflows import meta_train

    fields = {f.name for f in __import__("dataclasses").fields(method_class(name).Config)}
    overrides = [f"epochs={epochs}"] if "epochs" in fields else []
    t = time.perf_counter()
    run = meta_train(name, None, out=root / name, seed=0, overrides=overrides)
    train_s = time.perf_counter() - t
    t = time.perf_counter()
    model = piaa.load(run)
    load_s = time.perf_counter() - t
    data = model.dataset
    raters = [data.rater(u) for u in data.users_in("test")[:20]]
    store = piaa.ProfileStore(root / f"{name}.sqlite", model=model)

    def adapt_all(k: int, by_id: bool):
        out = []
        for i, r in enumerate(raters):
            rows = r.image_index[:k]
            images = [data.images[j] for j in rows] if by_id else np.array(data.features[rows], dtype=np.float32)
            start = time.perf_counter()
            profile = model.adapt(images, r.scores[:k], user=f"user{i}")
            out.append((time.perf_counter() - start, profile))
        return out

    adapt_all(10, False)  # warm-up
    by_features = adapt_all(10, False)
    by_ids = adapt_all(10, True)
    import torch

    threads = torch.get_num_threads()
    saves = []
    for _, profile in by_features:
        start = time.perf_counter()
        store.save(profile)
        saves.append(time.perf_counter() - start)
    sizes10 = [p.stored_bytes for _, p in by_features]
    sizes100 = [len(p.state_bytes()) for _, p in adapt_all(100, False)]

    rng = np.random.default_rng(0)
    pick = rng.integers(0, len(data.images), size=n_score)
    cached = np.array(data.features[np.sort(pick)], dtype=np.float32)
    cached += rng.normal(0, 0.01, size=cached.shape).astype(np.float32)
    load_profile_s, _, profile = timed(lambda: piaa.ProfileStore(store.path, model=model).load("user0"), 5)
    score_s, score_cpu, scores = timed(lambda: profile.predict(cached), 5)
    rank_s, _, top = timed(lambda: profile.rank(cached, top=10), 5)
    assert np.allclose(top["score"].to_numpy(), np.sort(scores)[::-1][:10])
    return {
        "method": name, "train_s": train_s, "load_s": load_s,
        "adapt_ms": 1000 * np.median([t for t, _ in by_features]), "adapt_min_ms": 1000 * min(t for t, _ in by_features),
        "adapt_p90_ms": 1000 * np.percentile([t for t, _ in by_features], 90),
        "adapt_ids_ms": 1000 * np.median([t for t, _ in by_ids]),
        "threads": threads,
        "save_ms": 1000 * np.median(saves), "load_profile_ms": 1000 * load_profile_s,
        "score_s": score_s, "score_cpu": score_cpu, "rank_s": rank_s, "bytes10": int(np.median(sizes10)), "bytes100": int(np.median(sizes100)),
        "stores_support": profile.support is not None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="", help="comma-separated (default: every registered method)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--n-score", type=int, default=100_000)
    parser.add_argument("--no-write", action="store_true", help="print only, leave docs/benchmarks.md alone")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        from piaa.registry import list_methods

        names = [m for m in args.methods.split(",") if m.strip()] or list(list_methods())
        for name in names:
            row = bench_method(name.strip(), args.epochs, args.n_score, Path(tmp))
            rows.append(row)
            print({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    n = f"{args.n_score:,}"
    lines = [
        f"Demo dataset (256-dim features), 20 test raters, median over raters/repeats. Targets: adapt from 10 ratings "
        f"< 50 ms (plus load time); score {n} cached feature vectors for one stored user < 0.5 s.",
        "",
        f"| method | load run (s) | adapt 10 ratings: median / min / p90 (ms) | adapt 10, image ids (ms) | save (ms) "
        f"| load profile (ms) | score {n}: wall / CPU (s) | rank top-10 of {n} (s) | profile bytes, 10 ratings | 100 ratings |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        support = " (+support set)" if r["stores_support"] else ""
        lines.append(
            f"| {r['method']} | {r['load_s']:.2f} | {r['adapt_ms']:.1f} / {r['adapt_min_ms']:.1f} / {r['adapt_p90_ms']:.1f} "
            f"| {r['adapt_ids_ms']:.1f} | {r['save_ms']:.1f} | {r['load_profile_ms']:.1f} | {r['score_s']:.3f} / {r['score_cpu']:.3f} | {r['rank_s']:.3f} "
            f"| {r['bytes10']}{support} | {r['bytes100']} |"
        )
    lines += [
        "",
        "Profile bytes are the stored safetensors blob (per-user state; the support features too for a method "
        "without `user_model_from_state`). Each row also holds the ratings as JSON (image ids and scores). "
        f"CPU time sums all threads (torch uses {rows[0]['threads']} here), so on an idle machine wall time is about CPU time / threads. "
        "Adapting runs on one torch thread (tiny work); on a busy machine the median includes waiting for a core, "
        "the minimum shows the cost itself. "
        "Save includes an fsync (SQLite WAL, synchronous=FULL). 'load run' includes hashing the weights for the model id.",
    ]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section("profiles", "Personalisation: adapt, store, score (benchmarks/profiles.py)", body)


if __name__ == "__main__":
    main()
