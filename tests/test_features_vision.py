"""torchvision and CLIP backbones (the vision extra). Run with `make test-vision`; skipped elsewhere.

Weights are never downloaded here: random initialisation, or a weights file written by the test.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.vision

torchvision = pytest.importorskip("torchvision", reason="needs the vision extra (torch 2.14.1 + torchvision 0.29.1): make test-vision")
import torch  # noqa: E402

from piaa.errors import ConfigError  # noqa: E402
from piaa.features import create_backbone  # noqa: E402
from piaa.features.extract import extract_features  # noqa: E402
from piaa.tasks.feature_store import open_store  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from test_features import write_jpegs  # noqa: E402


@pytest.fixture(autouse=True)
def no_weight_cache(tmp_path, monkeypatch):
    """An empty torch hub cache: nothing published is found, and nothing may be fetched."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))


def test_random_resnet18_extraction_with_a_corrupt_jpeg(tmp_path):
    write_jpegs(tmp_path / "imgs", 7, size=(200, 150), corrupt=2)
    result = extract_features(tmp_path / "imgs", "resnet18", tmp_path / "store", weights="random", batch_size=4, progress=False)
    assert (result.n_images, result.n_failed, result.dim) == (6, 1, 512)
    store = open_store(tmp_path / "store")
    assert list(store.failed) == ["b/img002.jpg"] and store.features.shape == (6, 512)
    assert store.manifest["weights"] == "random (seed 0)" and store.manifest["preprocessing"]["center_crop"] == 224
    again = extract_features(tmp_path / "imgs", "resnet18", tmp_path / "again", weights="random", batch_size=3, float16=True, progress=False)
    half = open_store(again.path).features
    assert half.dtype == np.float16
    np.testing.assert_allclose(half.astype(np.float32), store.features, rtol=2e-3, atol=2e-3)  # same seed, same numbers


def test_local_weights_file_is_loaded_offline(tmp_path):
    from safetensors.torch import save_file

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        reference = torchvision.models.resnet18(weights=None)
    save_file(reference.state_dict(), str(tmp_path / "r18.safetensors"))
    torch.save(reference.state_dict(), tmp_path / "r18.pth")
    reference.fc = torch.nn.Identity()
    reference.eval()
    backbone = create_backbone("resnet18", weights=tmp_path / "r18.safetensors")
    same = create_backbone("resnet18", weights=tmp_path / "r18.pth")
    rng = np.random.default_rng(0)
    from PIL import Image

    image = Image.fromarray(rng.integers(0, 255, (180, 240, 3), dtype=np.uint8))
    x = backbone.prepare(image)
    with torch.inference_mode():
        expected = reference(torch.from_numpy(x)[None]).numpy()
    np.testing.assert_allclose(backbone.embed([x]), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(same.embed([x]), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="do not fit resnet50"):
        create_backbone("resnet50", weights=tmp_path / "r18.safetensors")


def test_absent_weights_are_one_clear_line(tmp_path):
    with pytest.raises(ConfigError, match=r"no local weights for resnet50: pass --weights FILE \(torchvision's resnet50-.*\.pth"):
        create_backbone("resnet50")
    write_jpegs(tmp_path / "imgs", 2)
    proc = subprocess.run(
        [sys.executable, "-m", "piaa.console.cli", "features", "extract", "--images", str(tmp_path / "imgs"), "--backbone", "resnet50", "--out", str(tmp_path / "s")],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "add --download" in proc.stderr
    with pytest.raises(ConfigError, match="weights file .* does not exist"):
        create_backbone("resnet18", weights=tmp_path / "nope.pth")


def test_inception_v3_uses_its_own_299px_preprocessing(tmp_path):
    write_jpegs(tmp_path / "imgs", 3, size=(400, 300))
    result = extract_features(tmp_path / "imgs", "inception_v3", tmp_path / "store", weights="random", progress=False)
    store = open_store(result.path)
    assert store.features.shape == (3, 2048) and store.manifest["preprocessing"]["center_crop"] == 299
    assert np.isfinite(store.features).all() and np.ptp(store.features, axis=0).max() > 0


def test_clip_random_init_gives_normalised_embeddings(tmp_path):
    pytest.importorskip("open_clip", reason="open_clip is not installed")
    with pytest.raises(ConfigError, match="no local weights for clip-vit-b-32"):
        create_backbone("clip-vit-b-32")
    write_jpegs(tmp_path / "imgs", 3, size=(256, 256), corrupt=1)
    result = extract_features(tmp_path / "imgs", "clip-vit-b-32", tmp_path / "store", weights="random", progress=False)
    store = open_store(result.path)
    assert store.features.shape == (2, 512) and result.n_failed == 1
    np.testing.assert_allclose(np.linalg.norm(store.features, axis=1), 1.0, rtol=1e-5)
