"""The `handcrafted` backbone: classic photo-aesthetics measurements with numpy, PIL and scipy only.

No weights, no torch: the image path works anywhere. Every image is decoded at reduced size (JPEG
DCT scaling via `draft`, then a bilinear resize so the long side is at most 256 px), which is both
deterministic and fast. The features, in order, are listed in `FEATURE_NAMES`.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from PIL import Image
from scipy import ndimage

from piaa.features.registry import Backbone, BackboneSpec

WORK_SIDE = 256
MIN_SIDE = 3  # fewer pixels than this on a side leave grid cells empty
HUE_BINS = 12

FEATURE_NAMES: tuple[str, ...] = (
    ("brightness_mean", "brightness_std", "contrast_p95_p5", "dark_fraction", "bright_fraction", "luma_entropy")
    + ("saturation_mean", "saturation_std", "colorfulness")
    + tuple(f"hue_{i * 360 // HUE_BINS:03d}" for i in range(HUE_BINS))
    + ("red_mean", "green_mean", "blue_mean", "red_std", "green_std", "blue_std")
    + ("sharpness_laplacian", "gradient_mean", "edge_density", "centre_sharpness_share")
    + ("rule_of_thirds_energy", "symmetry_left_right", "symmetry_top_bottom")
    + ("log_aspect_ratio", "log_megapixels")
    + tuple(f"grid{r}{c}_brightness" for r in range(3) for c in range(3))
    + tuple(f"grid{r}{c}_saturation" for r in range(3) for c in range(3))
    + tuple(f"grid{r}{c}_edge_share" for r in range(3) for c in range(3))
)

_EPS = 1e-6


def _grid_means(a: np.ndarray) -> np.ndarray:
    h, w = a.shape
    rows = np.array_split(np.arange(h), 3)
    cols = np.array_split(np.arange(w), 3)
    return np.array([a[r[0] : r[-1] + 1, c[0] : c[-1] + 1].mean() for r in rows for c in cols], dtype=np.float64)


def _symmetry(a: np.ndarray, axis: int) -> float:
    """1 = mirror-symmetric, 0 = as different from its mirror image as from a flat image."""
    diff = np.abs(a - np.flip(a, axis=axis)).mean()
    spread = 2 * np.abs(a - a.mean()).mean() + _EPS
    return float(np.clip(1 - diff / spread, -1, 1))


def handcrafted_features(image: Image.Image) -> np.ndarray:
    """All `FEATURE_NAMES` for one image, float32."""
    orig_w, orig_h = image.size
    if image.format == "JPEG" and max(orig_w, orig_h) > WORK_SIDE:
        # Decode at 1/2, 1/4 or 1/8 scale (never below the working size): much faster than full size.
        scale = WORK_SIDE / max(orig_w, orig_h)
        image.draft("RGB", (math.ceil(orig_w * scale), math.ceil(orig_h * scale)))
    image = image.convert("RGB")
    if max(image.size) > WORK_SIDE:
        scale = WORK_SIDE / max(image.size)
        size = (max(1, round(image.size[0] * scale)), max(1, round(image.size[1] * scale)))
        image = image.resize(size, Image.BILINEAR)
    if min(image.size) < MIN_SIDE:
        # A sliver (1x1, 1x1000, 10000x3 after the resize): stretch the short side so the 3x3 grid,
        # the thirds windows and the Sobel filters have pixels to work on. Aspect ratio and size
        # features still come from the original size.
        image = image.resize((max(MIN_SIDE, image.size[0]), max(MIN_SIDE, image.size[1])), Image.NEAREST)
    rgb = np.asarray(image, dtype=np.float32) / 255.0
    hsv = np.asarray(image.convert("HSV"), dtype=np.float32) / 255.0
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    hue, sat = hsv[..., 0], hsv[..., 1]

    hist = np.bincount(np.minimum((luma * 32).astype(np.intp), 31).ravel(), minlength=32)
    p = hist / max(1, hist.sum())
    entropy = float(-(p[p > 0] * np.log2(p[p > 0])).sum() / 5.0)  # / log2(32): in [0, 1]
    p5, p95 = np.percentile(luma, [5, 95])

    rg = r - g
    yb = 0.5 * (r + g) - b
    colorfulness = np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())

    hue_bin = np.minimum((hue * HUE_BINS).astype(np.intp), HUE_BINS - 1).ravel()
    hue_hist = np.bincount(hue_bin, weights=sat.ravel(), minlength=HUE_BINS)
    hue_hist = hue_hist / (hue_hist.sum() + _EPS)

    gx = ndimage.sobel(luma, axis=1)
    gy = ndimage.sobel(luma, axis=0)
    grad = np.hypot(gx, gy)
    energy = grad**2
    total = energy.sum() + _EPS
    lap = ndimage.laplace(luma)
    edge_density = float((grad > 0.5).mean())

    h, w = luma.shape
    centre = energy[h // 3 : h - h // 3, w // 3 : w - w // 3].sum() / total
    # Rule of thirds: gradient energy near the four thirds intersections, relative to the share of
    # the image those windows cover (1 = no preference, > 1 = detail placed on the thirds points).
    wh, ww = max(1, h // 12), max(1, w // 12)
    thirds = 0.0
    area = 0
    for ty in (h // 3, 2 * h // 3):
        for tx in (w // 3, 2 * w // 3):
            win = energy[max(0, ty - wh) : ty + wh, max(0, tx - ww) : tx + ww]
            thirds += win.sum()
            area += win.size
    thirds_ratio = (thirds / total) / (area / energy.size)

    grid_energy = _grid_means(energy)
    values = np.concatenate(
        [
            [luma.mean(), luma.std(), p95 - p5, (luma < 0.1).mean(), (luma > 0.9).mean(), entropy],
            [sat.mean(), sat.std(), colorfulness],
            hue_hist,
            [r.mean(), g.mean(), b.mean(), r.std(), g.std(), b.std()],
            [lap.var() * 100, grad.mean(), edge_density, centre],
            [np.log1p(thirds_ratio), _symmetry(luma, 1), _symmetry(luma, 0)],
            [np.log(orig_w / orig_h), np.log(orig_w * orig_h / 1e6)],
            _grid_means(luma),
            _grid_means(sat),
            grid_energy / (grid_energy.sum() + _EPS),
        ]
    )
    return values.astype(np.float32)


class Handcrafted(Backbone):
    name = "handcrafted"
    dim = len(FEATURE_NAMES)

    def prepare(self, image: Image.Image) -> np.ndarray:
        return handcrafted_features(image)

    def embed(self, batch: Sequence[Any]) -> np.ndarray:
        return np.stack(batch).astype(np.float32)

    def describe(self) -> dict[str, Any]:
        return {
            "preprocessing": {"decode": f"JPEG draft to >= {WORK_SIDE} px, RGB", "resize": f"bilinear, long side <= {WORK_SIDE} px"},
            "weights": None,
            "feature_names": list(FEATURE_NAMES),
        }


def make_handcrafted(name: str = "handcrafted", *, weights=None, download: bool = False, seed: int = 0) -> Backbone:
    if weights not in (None, "random"):
        from piaa.errors import ConfigError

        raise ConfigError("the handcrafted backbone has no weights; drop --weights")
    return Handcrafted()


SPEC = BackboneSpec("handcrafted", make_handcrafted, f"{len(FEATURE_NAMES)} classic measurements (brightness, colour, sharpness, thirds, symmetry); no weights")
