"""Import and feature-extraction speed: a FLICKR-AES-sized label file and handcrafted extraction.

Targets (issue 5): importing a 193k-row FLICKR-AES CSV in under 5 s; handcrafted extraction at
least 50 images/s per core on 512 px JPEGs. Run: `python benchmarks/datasets.py [--images N]`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write_section  # noqa: E402

from piaa.features.extract import extract_features  # noqa: E402
from piaa.tasks.feature_store import write_store  # noqa: E402
from piaa.tasks.format import read_dataset  # noqa: E402
from piaa.tasks.importers import parse_flickr_aes, write_import  # noqa: E402

N_IMAGES, RATERS_PER_IMAGE, N_WORKERS, N_TEST = 38_642, 5, 210, 37  # 193,210 ratings, as FLICKR-AES


def flickr_sized(root: Path, seed: int = 0) -> tuple[Path, list[str]]:
    """A label file in the published format with FLICKR-AES's size: 5 workers per image, 37 light workers."""
    rng = np.random.default_rng(seed)
    workers = [f"A{rng.integers(10**11, 10**12):012X}"[:14] for _ in range(N_WORKERS)]
    total = N_IMAGES * RATERS_PER_IMAGE
    light = rng.integers(110, 166, N_TEST)  # the standard split's test workers have 105..171 ratings
    heavy = rng.multinomial(total - light.sum(), (w := np.minimum(rng.pareto(1.5, N_WORKERS - N_TEST) + 1.0, 10.0)) / w.sum())
    slots = np.repeat(np.arange(N_WORKERS), np.concatenate([light, heavy]))
    # Worker-sorted slots dealt round-robin over images: a worker never rates the same image twice.
    chosen = slots.reshape(RATERS_PER_IMAGE, N_IMAGES).T[rng.permutation(N_IMAGES)]
    images = [f"farm{i % 9 + 1}_{1000 + i % 8000}_{7000000000 + i}_{i:010x}_b.jpg" for i in range(N_IMAGES)]
    scores = rng.integers(1, 6, size=chosen.shape)
    lines = ["worker, imagePair, score"]
    for i, (ws, ss) in enumerate(zip(chosen, scores)):
        lines.extend(f"{workers[w]},{images[i]},{s}" for w, s in zip(ws, ss))
    root.mkdir(parents=True, exist_ok=True)
    (root / "FLICKR-AES_image_labeled_by_each_worker.csv").write_text("\n".join(lines) + "\n")
    return root, images


def bench_import(tmp: Path, dim: int) -> dict:
    root, images = flickr_sized(tmp / "flickr")
    store = write_store(tmp / "store", [f"40K/{im}" for im in images], np.random.default_rng(1).standard_normal((len(images), dim), dtype=np.float32), backbone="bench")
    t0 = time.perf_counter()
    parsed = parse_flickr_aes(root, seed=0)
    t1 = time.perf_counter()
    report = write_import(parsed, store, tmp / "out")
    t2 = time.perf_counter()
    data = read_dataset(tmp / "out")
    t3 = time.perf_counter()
    return {"ratings": report.ratings, "images": report.images, "raters": report.raters, "parse": t1 - t0, "write": t2 - t1, "total": t2 - t0, "read": t3 - t2, "dim": dim, "n_ratings_read": len(data.ratings)}


def photo_like(rng: np.random.Generator, size=(512, 384)) -> Image.Image:
    """A smooth colour field with edges and noise: JPEG-compresses and decodes like a photo."""
    coarse = rng.random((6, 8, 3)) * 255
    img = np.asarray(Image.fromarray(coarse.astype(np.uint8)).resize(size, Image.BICUBIC), dtype=np.float32)
    img += rng.normal(0, 12, img.shape)
    y0, x0 = rng.integers(0, size[1] // 2), rng.integers(0, size[0] // 2)
    img[y0 : y0 + size[1] // 3, x0 : x0 + size[0] // 3] *= 0.5
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def bench_extract(tmp: Path, n: int) -> dict:
    rng = np.random.default_rng(0)
    folder = tmp / "jpegs"
    folder.mkdir()
    for i in range(n):
        photo_like(rng).save(folder / f"{i:05d}.jpg", quality=90)
    t0 = time.perf_counter()
    c0 = time.process_time()
    result = extract_features(folder, "handcrafted", tmp / "hc", batch_size=32, progress=False)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"n": result.n_images, "wall": wall, "cpu": cpu, "per_s_wall": n / wall, "per_s_cpu": n / cpu}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=300, help="JPEGs for the extraction benchmark")
    ap.add_argument("--dim", type=int, default=512, help="feature dimension of the import benchmark's store")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        imp = bench_import(Path(d), args.dim)
    with tempfile.TemporaryDirectory() as d:
        ext = bench_extract(Path(d), args.images)
    print(f"import: {imp['ratings']:,} ratings, {imp['images']:,} images, raters {imp['raters']}: parse {imp['parse']:.2f} s, write {imp['write']:.2f} s, total {imp['total']:.2f} s; read_dataset {imp['read']:.2f} s")
    print(f"handcrafted: {ext['n']} JPEGs 512x384: {ext['per_s_wall']:.0f} images/s wall, {ext['per_s_cpu']:.0f} images/s per CPU-second")
    body = f"""
| measurement | result | target |
| --- | --- | --- |
| `parse_flickr_aes`: {imp['ratings']:,}-row label CSV (published format, derived split) | {imp['parse']:.2f} s | |
| `write_import`: features ({imp['images']:,} x {imp['dim']} float32) + atomic write + read-back check | {imp['write']:.2f} s | |
| import total | **{imp['total']:.2f} s** | < 5 s |
| `read_dataset` of the result ({imp['n_ratings_read']:,} ratings) | {imp['read']:.2f} s | |
| handcrafted extraction, {ext['n']} JPEGs of 512x384, 1 thread | **{ext['per_s_cpu']:.0f} images per CPU-second** ({ext['per_s_wall']:.0f}/s wall) | >= 50 /s per core |

The import includes reading the CSV, the split, matching every image in the feature store, gathering
features, writing and re-validating the dataset. Extraction includes JPEG decoding, which is done at
reduced scale (`draft`) for speed. Timings on a shared machine are noisy; CPU-seconds are the fairer
per-core figure.
"""
    write_section("datasets", "Dataset import and feature extraction", body)


if __name__ == "__main__":
    main()
