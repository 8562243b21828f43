"""End-to-end throughput on the CPU, with one and two processes (torchrun, gloo on loopback):

- meta-training on images (blg-piaa and maml with the built-in small-cnn backbone, 32x32 images
  rendered from the simulator: `piaa.tasks.simulate_images`), in rater-images per second:
  meta_batch x (support + query) images per meta-step, over the wall time of `fit` (no consensus
  pre-training, no validation; decoded images are cached after their first use);
- the consensus pre-training on those images (data parallel with two processes), images per second;
- feature extraction (`features extract --backbone handcrafted`) on 96x96 images, images per second.

    python benchmarks/e2e.py            # writes its section of docs/benchmarks.md
    python benchmarks/e2e.py --quick    # fewer steps and images, prints only

There is no GPU on the machine these figures come from, so there are no GPU figures.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from _report import write_section  # noqa: E402

from piaa.tasks.simulate import DemoSpec, write_demo  # noqa: E402
from piaa.tasks.simulate_images import render_images  # noqa: E402

SPEC = DemoSpec(n_train_raters=24, n_test_raters=3, n_personality_raters=2, raters_per_image=3, train_ratings=(40, 60),
                test_ratings=(40, 50), likes_per_personality_rater=5, feature_dim=32, latent_dim=8)
COMMON = ["backbone=small-cnn", "device=cpu", "hidden=32", "pretrain_epochs=0", "val_fraction=0", "adapt_lr_grid=",
          "support_shots=10", "query_size=10", "meta_batch=4", "checkpoint_every=1000"]
METHODS = {"blg-piaa": [], "maml": ["inner_steps=5"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(args: list[str], nproc: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo",
           "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    worker = [str(HERE / "_e2e_worker.py"), *args]
    if nproc == 1:
        cmd = [sys.executable, *worker]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_addr", "127.0.0.1",
               "--master_port", str(free_port()), *worker]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    line = next((l for l in done.stdout.splitlines() if l.startswith("RESULT ")), None)
    if done.returncode != 0 or line is None:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return json.loads(line[len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    steps, n_images, epochs = (4, 64, 1) if args.quick else (12, 256, 3)
    rows_meta, rows_extract = [], []
    with tempfile.TemporaryDirectory() as tmp:
        data = write_demo(Path(tmp) / "data", seed=0, spec=SPEC)
        render_images(data, size=32)
        for method, extra in METHODS.items():
            rates, rss = {}, {}
            for nproc in (1, 2):
                r = run(["meta-train", str(data), method, str(steps), *COMMON, *extra], nproc)
                rates[nproc], rss[nproc] = r["images"] / r["seconds"], r["peak_rss_mb"]
                print(f"{method} meta-training, {nproc} process(es): {rates[nproc]:.0f} rater-images/s ({r['seconds']:.1f} s)", flush=True)
            rows_meta.append((method, rates[1], rates[2], rss[1], rss[2]))
        rates, rss = {}, {}
        for nproc in (1, 2):
            r = run(["pretrain", str(data), str(epochs), *COMMON], nproc)
            rates[nproc], rss[nproc] = r["images"] / r["seconds"], r["peak_rss_mb"]
            print(f"consensus pre-training, {nproc} process(es): {rates[nproc]:.0f} images/s ({r['seconds']:.1f} s)", flush=True)
        rows_pretrain = [("blg-piaa consensus pre-training, small-cnn (images/s)", rates[1], rates[2], rss[1], rss[2])]
        images = Path(tmp) / "images"
        images.mkdir()
        rng = np.random.default_rng(0)
        for i in range(n_images):
            Image.fromarray(rng.integers(0, 255, size=(96, 96, 3), dtype=np.uint8)).save(images / f"im{i:04d}.png")
        rates, rss = {}, {}
        for nproc in (1, 2):
            r = run(["extract", str(images), str(Path(tmp) / f"store{nproc}")], nproc)
            rates[nproc], rss[nproc] = r["images"] / r["seconds"], r["peak_rss_mb"]
            print(f"feature extraction (handcrafted), {nproc} process(es): {rates[nproc]:.0f} images/s", flush=True)
        rows_extract.append(("handcrafted, 96x96 PNG", rates[1], rates[2], rss[1], rss[2]))
    body = [
        "`python benchmarks/e2e.py`. CPU only (no GPU on this machine, so no GPU figures); one thread per process;",
        "two processes are `torchrun --nproc_per_node 2` with gloo on 127.0.0.1. Meta-training: small-cnn on 32x32",
        f"images, meta-batch 4 raters x (10 support + 10 query), {steps} meta-steps, no pre-training or validation;",
        "rater-images/s = meta-steps x 4 x 20 / wall seconds of `fit`. Consensus pre-training: "
        f"{epochs} epochs over the train images (batch 32, data parallel with 2 processes), images/s = epochs x images / wall seconds. Extraction: "
        f"{n_images} images, wall seconds of `extract_features`.",
        "",
        "Peak memory is the resident set of rank 0 (each process holds the model and its share of a meta-batch).",
        "",
        "| job | 1 process | 2 processes | 2 vs 1 | peak RSS, 1 / 2 processes (MB) |",
        "|---|---|---|---|---|",
    ]
    for name, one, two, m1, m2 in rows_meta:
        body.append(f"| meta-train {name} (rater-images/s) | {one:.0f} | {two:.0f} | {two / one:.2f}x | {m1:.0f} / {m2:.0f} |")
    for name, one, two, m1, m2 in rows_pretrain:
        body.append(f"| {name} | {one:.0f} | {two:.0f} | {two / one:.2f}x | {m1:.0f} / {m2:.0f} |")
    for name, one, two, m1, m2 in rows_extract:
        body.append(f"| features extract {name} (images/s) | {one:.0f} | {two:.0f} | {two / one:.2f}x | {m1:.0f} / {m2:.0f} |")
    body += ["", "The 2 cores were shared with other jobs while this ran (see the load average above): "
             "the 2-process column measures this machine at that moment, not two free cores."]
    text = "\n".join(body)
    print(text)
    if not args.quick:
        write_section("e2e", "End to end on images and with torch.distributed (benchmarks/e2e.py)", text)


if __name__ == "__main__":
    main()
