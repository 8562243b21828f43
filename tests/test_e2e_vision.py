"""End to end with torchvision's ResNet-18 (the vision extra). Run with `make test-vision`; skipped elsewhere."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

pytestmark = pytest.mark.vision
torchvision = pytest.importorskip("torchvision", reason="needs the vision extra (torch 2.14.1 + torchvision 0.29.1): make test-vision")

from piaa.e2e.backbones import build_backbone  # noqa: E402
from piaa.registry import create_method  # noqa: E402
from piaa.tasks.format import read_dataset  # noqa: E402
from piaa.tasks.simulate import DemoSpec, write_demo  # noqa: E402
from piaa.tasks.simulate_images import render_images  # noqa: E402


def _tiny_image_dataset(tmp_path):
    """A few raters on 32x32 images drawn from the simulator's features, read as pixel rows."""
    spec = DemoSpec(n_train_raters=6, n_test_raters=3, n_personality_raters=2, raters_per_image=3, train_ratings=(24, 30),
                    test_ratings=(30, 34), likes_per_personality_rater=5, feature_dim=16, latent_dim=6)
    path = write_demo(tmp_path / "data", seed=1, spec=spec)
    render_images(path, size=32)
    return read_dataset(path, pixels=True)


def test_resnet18_loads_a_local_torchvision_state_dict_and_uses_batch_statistics(tmp_path):
    source = torchvision.models.resnet18(weights=None)
    file = tmp_path / "resnet18.safetensors"
    save_file(source.state_dict(), str(file))
    built = build_backbone("resnet18", str(file))
    assert built.dim == 512 and "starts from" in built.note
    torch.testing.assert_close(built.module.state_dict()["conv1.weight"], source.state_dict()["conv1.weight"])
    assert not any(getattr(m, "track_running_stats", False) for m in built.module.modules())  # functional inside inner loops
    out = built.module(torch.randn(3, 3, 32, 32))
    assert out.shape == (3, 512)


def test_inception_v3_loads_a_torchvision_state_dict_with_its_auxiliary_classifier_ignored(tmp_path):
    source = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    file = tmp_path / "inception.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(file))
    built = build_backbone("inception-v3", str(file))
    assert built.dim == 2048 and "starts from" in built.note
    torch.testing.assert_close(built.module.state_dict()["Mixed_7c.branch_pool.conv.weight"], source.state_dict()["Mixed_7c.branch_pool.conv.weight"])
    assert not any(getattr(m, "track_running_stats", False) for m in built.module.modules())
    assert built.module(torch.randn(2, 3, 80, 80)).shape == (2, 2048)


def test_blg_piaa_meta_trains_and_adapts_a_resnet18_on_images(tmp_path):
    data = _tiny_image_dataset(tmp_path)
    model = create_method("blg-piaa", backbone="resnet18", device="cpu", hidden=(8,), pretrain_epochs=1, meta_steps=2,
                          meta_batch=2, val_fraction=0.0, support_shots=(8,), query_size=8, adapt_steps=2, adapt_lr_grid=())
    before = {k: v.clone() for k, v in model.fit(data.without("test"), seed=0).meta["params"].items()}
    rater = data.raters("test")[0]
    x = np.asarray(data.features[rater.image_index])
    user = model.adapt(x[:10], rater.scores[:10], seed=0)
    pred = user.predict(x[10:])
    assert pred.shape == (len(rater) - 10,) and np.isfinite(pred).all()
    moved = [k for k, v in user.params.items() if k.startswith("backbone.") and not torch.equal(v, before[k])]
    assert moved  # test-time adaptation reaches the backbone too


def test_pa_iaa_trains_a_resnet18_under_its_trunk_and_personalises_from_big_five(tmp_path):
    data = _tiny_image_dataset(tmp_path)
    model = create_method("pa-iaa", backbone="resnet18", device="cpu", trunk=(16,), epochs=1, batch_size=32, min_prior_ratings=10)
    model.fit(data.without("test"), seed=0)
    assert model.net.backbone is not None and model.personality_available
    rater = data.raters("test")[0]
    x = np.asarray(data.features[rater.image_index])
    user = model.adapt(x[:10], rater.scores[:10], seed=0)
    pred = user.predict(x[10:])
    assert pred.shape == (len(rater) - 10,) and np.isfinite(pred).all() and np.ptp(pred) > 0
    b5 = np.array([0.5, -0.2, 0.1, 0.3, -0.4])
    np.testing.assert_allclose(model.adapt(x[:0], rater.scores[:0], big_five=b5).fitted.theta[1:], model.link.weights(b5), rtol=1e-6)
