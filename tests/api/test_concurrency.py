"""Several processes adapting, saving, loading and scoring different users in one store at once."""

from __future__ import annotations

import multiprocessing as mp
import queue
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

import piaa

WORKERS = 4
USERS_PER_WORKER = 12


@pytest.mark.slow  # ~30 s alone, longer on a busy machine: four spawned interpreters import torch
def test_concurrent_workers_lose_and_corrupt_nothing(small_world, ridge_model, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))  # spawned workers import store_worker too
    import store_worker
    data = ridge_model.dataset
    raters = data.users_in("test") + data.users_in("train")[:10]
    probe = list(data.images[:60])
    plans = []
    for w in range(WORKERS):
        tasks = []
        for j in range(USERS_PER_WORKER):
            rater = data.rater(raters[(w * USERS_PER_WORKER + j) % len(raters)])
            n = 20 + (j % 3) * 5
            tasks.append((f"w{w}-user{j:02d}", [data.images[i] for i in rater.image_index[:n]], rater.scores[:n].tolist()))
        plans.append(tasks)
    all_users = [t[0] for tasks in plans for t in tasks]
    store_path = tmp_path / "shared.sqlite"

    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(WORKERS), ctx.Queue()
    procs = [
        ctx.Process(target=store_worker.work, args=(w, str(small_world["ridge"]), str(store_path), plans[w], probe, all_users, barrier, results))
        for w in range(WORKERS)
    ]
    for p in procs:
        p.start()
    outcomes, deadline = [], time.monotonic() + 600
    try:
        while len(outcomes) < WORKERS:
            try:
                outcomes.append(results.get(timeout=2))
            except queue.Empty:
                dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                assert not dead, f"a worker died with exit code {dead[0]} before reporting"
                assert time.monotonic() < deadline, "workers did not report within 10 minutes"
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
    errors = [o[3] for o in outcomes if o[3]]
    assert not errors, errors[0]
    total_ops = sum(o[2] for o in outcomes)
    assert total_ops >= 300, total_ops
    print(f"{WORKERS} processes, {total_ops} store operations")

    # Every profile is there, intact, and scores exactly as its worker last saw it and as a fresh
    # adaptation in this process does.
    with sqlite3.connect(store_path) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store = piaa.ProfileStore(store_path, model=ridge_model)
    assert store.users() == sorted(all_users)
    finals = {u: s for o in outcomes for u, s in o[1].items()}
    for w, tasks in enumerate(plans):
        for user, images, scores in tasks:
            profile = store.load(user)
            assert profile.n_ratings == len(scores) and profile.images == images and profile.seed == w
            got = profile.predict(probe)
            np.testing.assert_array_equal(got, finals[user])
            fresh = ridge_model.adapt(images, scores, user=user, seed=w)
            np.testing.assert_array_equal(got, fresh.predict(probe))
