"""Feature extraction with the built-in handcrafted backbone: values, corrupt images, resume, errors."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from piaa.errors import ConfigError, DataError
from piaa.features import create_backbone, list_backbones
from piaa.features.extract import extract_features
from piaa.features.handcrafted import FEATURE_NAMES, handcrafted_features
from piaa.tasks.feature_store import open_store

F = {name: i for i, name in enumerate(FEATURE_NAMES)}


def write_jpegs(folder: Path, n: int, size=(160, 120), seed: int = 0, corrupt: int | None = None) -> list[str]:
    """Random-blob JPEGs in two subfolders; image `corrupt` is a truncated JPEG."""
    rng = np.random.default_rng(seed)
    names = []
    for i in range(n):
        sub = folder / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        base = rng.random((size[1] // 8, size[0] // 8, 3)) * 255
        img = Image.fromarray(base.astype(np.uint8)).resize(size, Image.BILINEAR)
        path = sub / f"img{i:03d}.jpg"
        img.save(path, quality=90)
        if i == corrupt:
            path.write_bytes(path.read_bytes()[:200])
        names.append(path.relative_to(folder).as_posix())
    return sorted(names)


def _img(array) -> Image.Image:
    return Image.fromarray(np.asarray(array, dtype=np.uint8))


def test_handcrafted_features_measure_what_they_name():
    black, white = _img(np.zeros((64, 96, 3))), _img(np.full((64, 96, 3), 255))
    assert handcrafted_features(black)[F["brightness_mean"]] == 0
    assert handcrafted_features(white)[F["brightness_mean"]] == pytest.approx(1.0)
    gray = handcrafted_features(_img(np.full((64, 96, 3), 128)))
    assert gray[F["colorfulness"]] == pytest.approx(0, abs=1e-6) and gray[F["saturation_mean"]] == 0
    red = handcrafted_features(_img(np.tile([200, 20, 20], (64, 96, 1))))
    # Hasler-Suesstrunk on a flat colour: 0.3 * |(mean rg, mean yb)|
    rg, yb = (200 - 20) / 255, 0.5 * (200 + 20) / 255 - 20 / 255
    assert red[F["colorfulness"]] == pytest.approx(0.3 * np.hypot(rg, yb), rel=1e-4) and red[F["hue_000"]] == pytest.approx(1.0, abs=1e-3)
    rng = np.random.default_rng(0)
    noise = _img(rng.integers(0, 255, (128, 128, 3)))
    sharp = handcrafted_features(noise)
    blurred = handcrafted_features(noise.filter(ImageFilter.GaussianBlur(3)))
    assert blurred[F["sharpness_laplacian"]] < 0.1 * sharp[F["sharpness_laplacian"]]
    half = rng.integers(0, 255, (64, 32, 3))
    mirror = handcrafted_features(_img(np.concatenate([half, half[:, ::-1]], axis=1)))
    assert mirror[F["symmetry_left_right"]] == pytest.approx(1.0, abs=0.02) and sharp[F["symmetry_left_right"]] < 0.4  # iid noise: 1 - (1/3)/(1/2)
    wide = handcrafted_features(_img(np.zeros((50, 200, 3))))
    assert wide[F["log_aspect_ratio"]] == pytest.approx(np.log(4))
    assert len(sharp) == len(FEATURE_NAMES) == 63 and sharp.dtype == np.float32


def test_extraction_skips_and_lists_the_corrupt_jpeg(tmp_path):
    names = write_jpegs(tmp_path / "imgs", 9, corrupt=4)
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    (tmp_path / "imgs" / "fake.png").write_text("not a png either")
    result = extract_features(tmp_path / "imgs", "handcrafted", tmp_path / "store", batch_size=4, workers=2, progress=False)
    assert (result.n_images, result.n_failed, result.n_computed, result.n_reused) == (8, 2, 8, 0)
    store = open_store(tmp_path / "store")
    assert sorted(store.failed) == ["b/img004.jpg", "fake.png"]
    assert "OSError" in store.failed["b/img004.jpg"]
    assert list(store.images) == [n for n in names if n != "b/img004.jpg"]
    with Image.open(tmp_path / "imgs" / "a" / "img003.jpg") as im:
        direct = handcrafted_features(im)
    np.testing.assert_array_equal(store.features[list(store.images).index("a/img003.jpg")], direct)
    assert store.manifest["backbone"] == "handcrafted" and store.manifest["n_failed"] == 2
    assert store.locate(["img003.jpg", "missing.jpg"]).tolist() == [list(store.images).index("a/img003.jpg"), -1]
    assert not (tmp_path / "store" / ".partial").exists()


class Interrupting:
    """Wraps a backbone; raises KeyboardInterrupt on embed call number `stop_at` (a killed run)."""

    def __init__(self, inner, stop_at=None):
        self.inner, self.stop_at, self.embedded = inner, stop_at, 0
        self.name, self.dim = inner.name, inner.dim
        self.calls = 0

    def prepare(self, image):
        return self.inner.prepare(image)

    def embed(self, batch):
        self.calls += 1
        if self.calls == self.stop_at:
            raise KeyboardInterrupt
        self.embedded += len(batch)
        return self.inner.embed(batch)

    def describe(self):
        return self.inner.describe()


def test_interrupted_extraction_resumes_without_recomputing(tmp_path):
    write_jpegs(tmp_path / "imgs", 23, corrupt=7)
    first = Interrupting(create_backbone("handcrafted"), stop_at=4)
    with pytest.raises(KeyboardInterrupt):
        extract_features(tmp_path / "imgs", first, tmp_path / "store", batch_size=3, shard_size=6, progress=False)
    assert not (tmp_path / "store" / "manifest.json").exists()
    with pytest.raises(DataError, match="unfinished extraction"):
        open_store(tmp_path / "store")
    # Batches 1-3 ran (9 images, one corrupt); shards commit every 6 images, so 6 are safe.
    second = Interrupting(create_backbone("handcrafted"))
    result = extract_features(tmp_path / "imgs", second, tmp_path / "store", batch_size=3, shard_size=6, progress=False)
    assert result.n_reused == 5 and result.n_computed == second.embedded == 17  # 23 - 1 corrupt - 5 reused
    assert result.n_failed == 1 and result.n_images == 22
    fresh = extract_features(tmp_path / "imgs", "handcrafted", tmp_path / "fresh", batch_size=5, progress=False)
    np.testing.assert_array_equal(open_store(tmp_path / "store").features, open_store(fresh.path).features)


@pytest.mark.slow  # > 8 s; CI and `make test` run it, `pytest -m 'not slow'` skips it
def test_killed_cli_run_resumes_where_it_stopped(tmp_path):
    write_jpegs(tmp_path / "imgs", 160, size=(320, 240))
    cmd = [sys.executable, "-m", "piaa.console.cli", "features", "extract", "--images", str(tmp_path / "imgs"), "--backbone", "handcrafted", "--out", str(tmp_path / "store"), "--batch-size", "4", "--shard-size", "8"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    deadline = time.time() + 60
    while time.time() < deadline and len(list((tmp_path / "store" / ".partial").glob("shard-*[0-9].csv"))) < 2:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list((tmp_path / "store" / ".partial").glob("shard-*[0-9].csv")))
    assert done >= 2 and not (tmp_path / "store" / "manifest.json").exists()
    rerun = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    found = re.search(r"computed ([\d,]+), reused ([\d,]+)", rerun.stdout)
    assert found, rerun.stdout
    computed, reused = map(int, found.groups())
    assert reused >= 8 * done and computed + reused == 160 and reused < 160
    assert open_store(tmp_path / "store").features.shape == (160, 63)


def test_resume_with_other_options_refuses_and_finished_store_is_kept(tmp_path):
    write_jpegs(tmp_path / "imgs", 4)
    (tmp_path / "store" / ".partial").mkdir(parents=True)
    (tmp_path / "store" / ".partial" / "state.json").write_text('{"backbone": "resnet18", "dim": 512}')
    with pytest.raises(ConfigError, match="unfinished extraction with a different backbone"):
        extract_features(tmp_path / "imgs", "handcrafted", tmp_path / "store", progress=False)
    extract_features(tmp_path / "imgs", "handcrafted", tmp_path / "done", float16=True, progress=False)
    assert open_store(tmp_path / "done").features.dtype == np.float16
    with pytest.raises(FileExistsError, match="already holds a finished feature store"):
        extract_features(tmp_path / "imgs", "handcrafted", tmp_path / "done", progress=False)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("x")
    with pytest.raises(FileExistsError, match="is not a feature store"):
        extract_features(tmp_path / "imgs", "handcrafted", tmp_path / "mine", progress=False)
    with pytest.raises(DataError, match="holds no image files"):
        extract_features(tmp_path / "mine", "handcrafted", tmp_path / "x", progress=False)


def test_backbone_registry_names_and_typos():
    names = list_backbones()
    assert {"handcrafted", "resnet18", "resnet50", "inception_v3", "clip-vit-b-32"} <= set(names)
    with pytest.raises(ConfigError, match="did you mean 'resnet50'"):
        create_backbone("resnet5O")


def test_missing_vision_extra_is_one_clear_error(tmp_path):
    try:
        import torchvision  # noqa: F401

        pytest.skip("torchvision is installed here; the vision tests cover it")
    except Exception:
        pass
    write_jpegs(tmp_path / "imgs", 2)
    proc = subprocess.run(
        [sys.executable, "-m", "piaa.console.cli", "features", "extract", "--images", str(tmp_path / "imgs"), "--backbone", "resnet18", "--out", str(tmp_path / "s")],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "pip install 'piaa[vision]'" in proc.stderr
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").iterdir())
