"""One timed job for benchmarks/e2e.py, run in one process or under torchrun (rank 0 prints JSON).

    _e2e_worker.py meta-train DATA METHOD STEPS [field=value ...]
    _e2e_worker.py pretrain DATA EPOCHS [field=value ...]
    _e2e_worker.py extract IMAGES OUT
"""

from __future__ import annotations

import json
import sys
import time

import torch

from piaa import distributed

torch.set_num_threads(1)
job = sys.argv[1]
with distributed.session() as group:
    if job == "meta-train":
        from piaa.registry import create_method
        from piaa.tasks.format import read_dataset

        data_dir, method, steps, sets = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5:]
        model = create_method(method, sets + [f"meta_steps={steps}"])
        data = read_dataset(data_dir, pixels=True).without("test")
        distributed.barrier(group)
        start = time.perf_counter()
        model.fit(data, seed=0)
        distributed.barrier(group)
        seconds = time.perf_counter() - start
        cfg = model.config
        images = steps * cfg.meta_batch * (max(cfg.support_shots) + cfg.query_size)
        result = {"seconds": seconds, "images": images, "meta_steps": steps}
    elif job == "pretrain":  # blg-piaa's consensus pre-training alone (meta_steps=0)
        from piaa.registry import create_method
        from piaa.tasks.format import read_dataset
        from piaa.tasks.targets import generic_targets

        data_dir, epochs, sets = sys.argv[2], int(sys.argv[3]), sys.argv[4:]
        model = create_method("blg-piaa", sets + [f"pretrain_epochs={epochs}", "meta_steps=0"])
        data = read_dataset(data_dir, pixels=True).without("test")
        distributed.barrier(group)
        start = time.perf_counter()
        model.fit(data, seed=0)
        distributed.barrier(group)
        ran = sum(1 for e in model.fit_log if "pretrain_epoch" in e)
        result = {"seconds": time.perf_counter() - start, "images": ran * len(generic_targets(data).image_index)}
    else:
        from piaa.features.extract import extract_features

        distributed.barrier(group)
        start = time.perf_counter()
        res = extract_features(sys.argv[2], "handcrafted", sys.argv[3], progress=False, shard_size=64)
        distributed.barrier(group)
        result = {"seconds": time.perf_counter() - start, "images": len(list(__import__("pathlib").Path(sys.argv[2]).iterdir()))}
    import resource

    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    if group.is_main:
        print("RESULT " + json.dumps(result), flush=True)
