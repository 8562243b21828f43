"""torch.distributed meta-training: two gloo processes under torchrun compute what one process does.

Each torchrun launch costs a few seconds of interpreter start-up per process, so the gradients of all
three orders come from one launch, and the end-to-end run from a second.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from distributed_case import CASES, meta_gradient
from piaa import distributed
from piaa.workflows import meta_train

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args: list[str], cwd: Path, nproc: int = 2, timeout: int = 300) -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node nproc ARGS` on loopback only (static rendezvous on a free port)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), *args]
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_shards_cover_every_rater_once_with_sizes_differing_by_at_most_one():
    for n in (2, 5, 8):
        for world in (1, 2, 3):
            parts = [distributed.shard(n, distributed.Group(r, world)) for r in range(world)]
            covered = [i for p in parts for i in range(n)[p]]
            assert covered == list(range(n))
            sizes = [p.stop - p.start for p in parts]
            assert max(sizes) - min(sizes) <= 1


def test_one_process_is_the_plain_function():
    fn = lambda *a: None  # noqa: E731
    assert distributed.sharded(fn, distributed.SINGLE) is fn
    assert distributed.main_computes(fn, distributed.SINGLE) is fn


@pytest.fixture(scope="module")
def two_process_gradients(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("grads")
    torchrun([str(HERE / "distributed_worker.py"), str(out)], cwd=HERE.parent)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_two_process_meta_gradient_equals_one_process_to_1e5(two_process_gradients, name):
    one = meta_gradient(name, distributed.SINGLE)
    two = load_file(str(two_process_gradients / f"{name}.safetensors"))
    assert one.keys() == two.keys()
    assert any(k.startswith("grad.") and v.abs().max() > 1e-3 for k, v in one.items())  # not trivially zero
    for k in one:
        torch.testing.assert_close(two[k].double(), one[k].double(), atol=1e-5, rtol=1e-5, msg=k)
    if CASES[name][3]:  # the carried Adam moments are averaged over all five raters too
        assert any(k.startswith("state.m/") for k in one) and int(one["state.t"]) == 4 + 2 * 3


QUICK_RUN = ["hidden=8", "dropout=0", "pretrain_epochs=2", "meta_steps=6", "meta_batch=4", "val_every=3",
             "checkpoint_every=3", "patience=0", "support_shots=10", "query_size=10", "val_shots=10",
             "val_repeats=1", "adapt_steps=2", "adapt_lr_grid=0.0,0.05"]


@pytest.mark.slow
@pytest.mark.parametrize("extra", [[], ["refit=true"]], ids=["validated", "refit"])
def test_torchrun_meta_train_ends_with_the_weights_of_one_process(tiny_dir, tmp_path, extra):
    """The console entry point under torchrun (second-order MAML, 2 ranks) and one in-process run;
    with `refit`, every rank refits for the meta-step count rank 0 selected."""
    overrides = QUICK_RUN + extra
    sets = [a for item in overrides for a in ("--set", item)]
    done = torchrun(["-m", "piaa", "meta-train", "--method", "maml", "--data", str(tiny_dir), "--out", str(tmp_path / "two"),
                     "--seed", "5", "--no-progress", *sets], cwd=HERE.parent)
    assert done.stdout.count("run saved to") == 1  # rank 0 reports, rank 1 stays quiet
    meta_train("maml", tiny_dir, out=tmp_path / "one", seed=5, overrides=overrides)
    one = load_file(str(tmp_path / "one" / "weights.safetensors"))
    two = load_file(str(tmp_path / "two" / "weights.safetensors"))
    assert one.keys() == two.keys()
    losses = [[e["query_loss"] for e in map(json.loads, (tmp_path / run / "train_log.jsonl").read_text().splitlines()) if "query_loss" in e]
              for run in ("one", "two")]
    assert len(losses[0]) == 6 and losses[0] == pytest.approx(losses[1], abs=1e-5)  # the same six meta-steps
    for k in one:
        torch.testing.assert_close(two[k], one[k], atol=1e-5, rtol=1e-4, msg=k)
    assert not any(p.name.startswith(".two.checkpoints") for p in tmp_path.iterdir())  # rank 0 cleaned up


class Killed(Exception):
    pass


@pytest.mark.slow
def test_torchrun_resumes_a_one_process_checkpoint_and_ends_with_the_uninterrupted_weights(tiny_dir, tmp_path):
    """blg-piaa (carried inner Adam moments): one process stops after meta-step 4, leaving the
    checkpoint of step 3; two processes resume it; the result is the uninterrupted run's."""
    from piaa.meta.checkpoint import load_checkpoint
    from piaa.registry import create_method
    from piaa.runs import resolve_data
    from piaa.workflows import checkpoint_dir_for, data_content_hash

    meta_train("blg-piaa", tiny_dir, out=tmp_path / "one", seed=5, overrides=QUICK_RUN)
    model = create_method("blg-piaa", QUICK_RUN)
    data, ref = resolve_data(tiny_dir)
    checkpoints = checkpoint_dir_for(model.name, model.config.to_dict(), ref, 5, tmp_path / "two", content=data_content_hash(data))

    def stop(step: int) -> None:
        if step == 4:
            raise Killed

    model._on_step = stop
    with pytest.raises(Killed):
        model.fit(data.without("test"), seed=5, checkpoint_dir=checkpoints)
    assert load_checkpoint(checkpoints)[1]["step"] == 3
    sets = [a for item in QUICK_RUN for a in ("--set", item)]
    torchrun(["-m", "piaa", "meta-train", "--method", "blg-piaa", "--data", str(tiny_dir), "--out", str(tmp_path / "two"),
              "--seed", "5", "--no-progress", *sets], cwd=HERE.parent)
    log = [json.loads(line) for line in (tmp_path / "two" / "train_log.jsonl").read_text().splitlines()]
    assert {"resumed_at_step": 3} in log
    one = load_file(str(tmp_path / "one" / "weights.safetensors"))
    two = load_file(str(tmp_path / "two" / "weights.safetensors"))
    for k in one:
        torch.testing.assert_close(two[k], one[k], atol=1e-5, rtol=1e-4, msg=k)


@pytest.mark.slow
def test_torchrun_feature_extraction_shards_images_and_matches_one_process(tmp_path):
    from PIL import Image

    from piaa.features.extract import extract_features

    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(23):  # an odd count: ranks get 12 and 11
        Image.fromarray(rng.integers(0, 255, size=(20 + i, 24, 3), dtype=np.uint8)).save(images / f"im{i:02d}.png")
    done = torchrun(["-m", "piaa", "features", "extract", "--images", str(images), "--backbone", "handcrafted",
                     "--out", str(tmp_path / "two"), "--shard-size", "5", "--no-progress"], cwd=HERE.parent)
    assert done.stdout.count("23 images") == 1, done.stdout  # one report, from rank 0
    extract_features(images, "handcrafted", tmp_path / "one", progress=False)
    one, two = (np.load(tmp_path / run / "features.npy") for run in ("one", "two"))
    assert (tmp_path / "one" / "images.csv").read_text() == (tmp_path / "two" / "images.csv").read_text()
    np.testing.assert_allclose(two, one, rtol=0, atol=1e-6)
    assert not (tmp_path / "two" / ".partial").exists()


@pytest.mark.slow
def test_torchrun_trains_end_to_end_on_images_like_one_process(tmp_path):
    """small-cnn on 16x16 images: the consensus pre-training runs data parallel (each rank decodes
    its share of every batch) and the meta-training sharded; the weights match one process."""
    from piaa.tasks.simulate import DemoSpec, write_demo
    from piaa.tasks.simulate_images import render_images

    spec = DemoSpec(n_train_raters=8, n_test_raters=3, n_personality_raters=2, raters_per_image=3, train_ratings=(24, 30),
                    test_ratings=(30, 34), likes_per_personality_rater=5, feature_dim=16, latent_dim=6)
    data = write_demo(tmp_path / "data", seed=4, spec=spec)
    render_images(data, size=16)
    run = ["backbone=small-cnn", "device=cpu", "dropout=0", "hidden=8", "pretrain_epochs=2", "pretrain_batch=15", "meta_steps=3",
           "meta_batch=3", "val_every=3", "support_shots=8", "query_size=8", "val_shots=10", "val_repeats=1", "adapt_steps=2",
           "adapt_lr_grid=0.001"]
    sets = [a for item in run for a in ("--set", item)]
    torchrun(["-m", "piaa", "meta-train", "--method", "blg-piaa", "--data", str(data), "--out", str(tmp_path / "two"),
              "--no-progress", *sets], cwd=HERE.parent)
    meta_train("blg-piaa", data, out=tmp_path / "one", overrides=run)
    logs = [[json.loads(line) for line in (tmp_path / r / "train_log.jsonl").read_text().splitlines()] for r in ("one", "two")]
    pre = [[e["train_loss"] for e in log if "pretrain_epoch" in e] for log in logs]
    assert len(pre[0]) == 2 and pre[0] == pytest.approx(pre[1], rel=1e-5)  # the same pre-training epochs
    one = load_file(str(tmp_path / "one" / "weights.safetensors"))
    two = load_file(str(tmp_path / "two" / "weights.safetensors"))
    assert any(k.startswith("meta/params/backbone.") for k in one)
    for k in one:
        torch.testing.assert_close(two[k], one[k], atol=1e-5, rtol=1e-4, msg=k)
