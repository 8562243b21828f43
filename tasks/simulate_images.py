"""Images for a simulated rater dataset, so end-to-end training can be tried and tested without
downloading anything.

Each image is drawn from its own feature vector: a fixed (seeded) random projection of the features
to an 8x8 RGB grid, squashed to [0, 255] and upscaled to `size`² pixels, plus a little pixel
noise. Whatever in the features predicts the ratings is therefore in the pixels too, and a small CNN
can learn it. The images go to `images/` beside the dataset's files, and dataset.json gains
`"images_root": "images"` and `"image_size"`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from piaa.atomic import write_json
from piaa.errors import DataError
from piaa.seeding import numpy_rng

GRID = 8


def render_images(dataset_dir: str | Path, *, size: int = 32, seed: int = 0) -> Path:
    """Write one image file per row of the dataset's features.npy and point dataset.json at them."""
    root = Path(dataset_dir)
    meta_file = root / "dataset.json"
    if not meta_file.is_file():
        raise DataError(str(meta_file), "is missing (expected a rater dataset directory)")
    if size < GRID or size % GRID:
        raise DataError("--image-size", f"expected a multiple of {GRID}, got {size}")
    names = [line.strip() for line in (root / "images.csv").read_text(encoding="utf-8").splitlines()[1:] if line.strip()]
    features = np.load(root / "features.npy", mmap_mode="r", allow_pickle=False)
    rng = numpy_rng(seed, "render-images")
    proj = rng.normal(0, 1 / np.sqrt(features.shape[1]), size=(features.shape[1], GRID * GRID * 3))
    f = np.asarray(features, dtype=np.float64)
    f = (f - f.mean(axis=0)) / np.maximum(f.std(axis=0), 1e-6)
    grids = np.tanh(f @ proj).reshape(len(f), GRID, GRID, 3)
    out = root / "images"
    out.mkdir(exist_ok=True)
    for name, grid in zip(names, grids):
        pixels = np.kron(grid, np.ones((size // GRID, size // GRID, 1))) + rng.normal(0, 0.05, size=(size, size, 3))
        image = Image.fromarray(np.clip(127.5 * (pixels + 1), 0, 255).astype(np.uint8), "RGB")
        target = out / name  # the file is named by its image id; the format follows the suffix
        target.parent.mkdir(parents=True, exist_ok=True)
        image.save(target, quality=95) if target.suffix.lower() in (".jpg", ".jpeg") else image.save(target)
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    meta.update({"images_root": "images", "image_size": size})
    write_json(meta_file, meta)
    return out
