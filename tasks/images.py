"""Images as a dataset's input rows, for training end to end instead of on cached features.

A rater dataset whose dataset.json names an image folder (`"images_root"`, relative to the dataset
directory or absolute, holding the paths listed in images.csv) can be read with `pixels=True`: its
`features` are then a `PixelArray`, an array-like [n_images, 3·size·size] whose row i is image i
decoded, resized (shorter side), centre-cropped and normalised, flattened. Everything that reads
feature rows (task batches, the protocol, adaptation) reads pixels the same way, and the model
reshapes them back into images. Decoding goes through a torch DataLoader (workers optional) and the
decoded rows are cached up to a memory budget, since meta-training revisits the same images.

Numpy and PIL only at import; torch is imported when images are first decoded.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from piaa.errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_SIZE = 224
# What PIL raises for files that are not images, truncated or corrupt.
_UNREADABLE = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


@dataclass(frozen=True)
class ImageTransform:
    """Shorter side to `resize` (default size·8/7, i.e. 256 for 224), centre crop `size`², [0, 1],
    normalise per channel: CHW float32. Deterministic, so a pixel row is the same on every read."""

    size: int = DEFAULT_SIZE
    resize: int = 0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @property
    def shorter_side(self) -> int:
        return self.resize or round(self.size * 8 / 7)

    def __call__(self, image: Image.Image) -> np.ndarray:
        image = image.convert("RGB")
        w, h = image.size
        scale = self.shorter_side / min(w, h)
        size = (max(self.size, round(w * scale)), max(self.size, round(h * scale)))
        image = image.resize(size, Image.BILINEAR)
        left, top = (size[0] - self.size) // 2, (size[1] - self.size) // 2
        arr = np.asarray(image.crop((left, top, left + self.size, top + self.size)), dtype=np.float32) / 255.0
        arr = (arr - np.asarray(self.mean, dtype=np.float32)) / np.asarray(self.std, dtype=np.float32)
        return np.ascontiguousarray(arr.transpose(2, 0, 1))

    def describe(self) -> dict[str, Any]:
        return {"size": self.size, "resize": self.shorter_side, "mean": list(self.mean), "std": list(self.std)}


def decode(path: Path, transform: ImageTransform) -> np.ndarray:
    """One image file as a flat float32 pixel row; an unreadable file is a DataError naming it."""
    try:
        with Image.open(path) as image:
            return transform(image).reshape(-1)
    except FileNotFoundError:
        raise DataError(str(path), "image file is missing") from None
    except _UNREADABLE as exc:
        raise DataError(str(path), f"cannot be read as an image ({type(exc).__name__})") from None


class _Files:
    """A map-style dataset of image files (a torch DataLoader takes any object with these two methods)."""

    def __init__(self, paths: Sequence[Path], transform: ImageTransform):
        self.paths, self.transform = list(paths), transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:
        return decode(self.paths[i], self.transform)


def _stack(rows: list[np.ndarray]) -> np.ndarray:
    return np.stack(rows)


class PixelArray:
    """Row i = image i of `images` under `root`, transformed and flattened; indexable like an array.

    `workers` DataLoader processes decode (0: in this process); up to `cache_mb` of decoded rows are
    kept (least recently used out first).
    """

    def __init__(self, root: str | Path, images: Sequence[str], transform: ImageTransform = ImageTransform(), *,
                 workers: int = 0, batch_size: int = 64, cache_mb: float = 512.0):
        self.root, self.images, self.transform = Path(root), [str(i) for i in images], transform
        self.workers, self.batch_size = workers, batch_size
        self.shape = (len(self.images), 3 * transform.size * transform.size)
        self.dtype = np.dtype(np.float32)
        self.ndim = 2
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_rows = int(cache_mb * 2**20 // (4 * self.shape[1]))

    def __len__(self) -> int:
        return self.shape[0]

    def path(self, row: int) -> Path:
        return self.root / self.images[row]

    def fingerprint(self) -> str:
        """What the rows depend on without decoding them: the transform and each file's size and
        modification time (a resumed training must see the same images)."""
        parts = [repr(self.transform.describe())]
        for name in self.images:
            st = (self.root / name).stat()
            parts.append(f"{name}:{st.st_size}:{st.st_mtime_ns}")
        return "\n".join(parts)

    def __getitem__(self, index: Any) -> np.ndarray:
        if isinstance(index, tuple):
            rows_index, rest = index[0], index[1:]
            return self[rows_index][(slice(None),) + rest] if rest else self[rows_index]
        if isinstance(index, (int, np.integer)):
            return self._rows(np.array([int(index)]))[0]
        rows = np.arange(len(self))[index]
        return self._rows(np.asarray(rows, dtype=np.int64).reshape(-1)).reshape(*np.shape(rows), self.shape[1])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out.astype(dtype) if dtype is not None else out

    def _rows(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), self.shape[1]), dtype=np.float32)
        missing = sorted({int(r) for r in rows if int(r) not in self._cache})
        decoded = dict(zip(missing, self._decode(missing))) if missing else {}
        for i, r in enumerate(rows):
            r = int(r)
            row = decoded.get(r)
            if row is None:
                row = self._cache[r]
                self._cache.move_to_end(r)
            out[i] = row
        for r, row in decoded.items():
            if self._cache_rows > 0:
                self._cache[r] = row
                while len(self._cache) > self._cache_rows:
                    self._cache.popitem(last=False)
        return out

    def _decode(self, rows: list[int]) -> list[np.ndarray]:
        files = _Files([self.path(r) for r in rows], self.transform)
        if self.workers <= 0 or len(rows) < 2 * self.batch_size:
            return [files[i] for i in range(len(files))]
        from torch.utils.data import DataLoader  # only when decoding in worker processes

        loader = DataLoader(files, batch_size=self.batch_size, num_workers=self.workers, collate_fn=_stack)  # type: ignore[arg-type]
        return [row for batch in loader for row in batch]


def images_root(meta: dict[str, Any], dataset_dir: Path) -> Path | None:
    """The image folder dataset.json names (`images_root`), resolved against the dataset directory."""
    value = meta.get("images_root")
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise DataError("dataset.json", "expected a folder path (relative to the dataset directory, or absolute)", field="images_root")
    root = Path(value).expanduser()
    root = root if root.is_absolute() else dataset_dir / root
    if not root.is_dir():
        raise DataError("dataset.json", f"images_root {value!r} is not a directory ({root})", field="images_root")
    return root


def image_transform(meta: dict[str, Any]) -> ImageTransform:
    """The transform dataset.json asks for (`image_size`, optional `image_resize`)."""
    size, resize = meta.get("image_size", DEFAULT_SIZE), meta.get("image_resize", 0)
    for name, value, low in (("image_size", size, 8), ("image_resize", resize, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise DataError("dataset.json", f"expected an integer >= {low}, got {value!r}", field=name)
    if resize and resize < size:
        raise DataError("dataset.json", f"image_resize {resize} is smaller than image_size {size}", field="image_resize")
    return ImageTransform(size=size, resize=resize)


def pixel_array(meta: dict[str, Any], dataset_dir: Path, images: Sequence[str]) -> PixelArray:
    """The dataset's images as pixel rows; every listed image file must exist (first missing one named)."""
    root = images_root(meta, dataset_dir)
    if root is None:
        raise DataError(str(dataset_dir / "dataset.json"), "has no images_root: training on images needs the folder the images.csv paths are relative to", field="images_root")
    for i, image in enumerate(images):
        if not (root / image).is_file():
            raise DataError("images.csv", f"image file {root / image} does not exist (images_root is {root})", line=i + 2, field="image")
    return PixelArray(root, images, image_transform(meta))
