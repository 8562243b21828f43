"""Worker for the multi-process profile-store test (a module so spawned processes can import it)."""

from __future__ import annotations

import numpy as np


def work(worker: int, run: str, store_path: str, tasks: list, probe: list, others: list, barrier, results) -> None:
    """Adapt, save, reload, score and re-adapt each user in `tasks`; read other workers' users too.

    Puts (worker, {user: final scores of `probe`}, n_operations, error or None) on `results`.
    """
    try:
        import piaa
        from piaa.profiles import ProfileError

        model = piaa.load(run)
        store = piaa.ProfileStore(store_path, model=model)
        finals, ops = {}, 0
        barrier.wait(timeout=300)
        for step, (user, images, scores) in enumerate(tasks):
            first = store.save(model.adapt(images[:10], scores[:10], user=user, seed=worker))
            ops += 1
            loaded = store.load(user)
            ops += 1
            assert loaded.n_ratings == 10 and loaded.created == first.created, (user, loaded.n_ratings)
            np.testing.assert_array_equal(loaded.predict(probe), first.predict(probe))
            ops += 1
            if step % 4 == 3:  # delete and adapt again from scratch
                store.delete(user)
                ops += 1
                assert user not in store
                ops += 1
            store.save(model.adapt(images, scores, user=user, seed=worker))  # re-adapt from more ratings
            ops += 1
            again = store.load(user)
            ops += 1
            assert again.n_ratings == len(scores), (user, again.n_ratings)
            finals[user] = again.predict(probe).tolist()
            ops += 1
            for other in others[step % len(others) :: 7]:  # read what the other workers are writing
                if other in store:
                    try:
                        store.load(other).predict(probe[:5])
                    except ProfileError:  # its owner deleted it between the check and the load (planned)
                        continue
                    ops += 2
            store.list()
            ops += 1
        results.put((worker, finals, ops, None))
    except BaseException as exc:  # report to the parent instead of dying silently
        import traceback

        results.put((worker, {}, 0, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
