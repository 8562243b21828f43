"""End-to-end training on images: a tiny generated image dataset (32x32 JPEGs rendered from the
simulator's features), a randomly initialised small CNN, meta-train -> evaluate -> adapt on CPU."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from piaa.e2e.backbones import SmallCNN, build_backbone
from piaa.e2e.model import GroupLR, build_image_model
from piaa.errors import ConfigError, DataError
from piaa.meta.inner import InnerSGD
from piaa.registry import create_method
from piaa.seeding import torch_seeded
from piaa.tasks.format import read_dataset
from piaa.tasks.images import ImageTransform, PixelArray
from piaa.tasks.simulate import DemoSpec, write_demo
from piaa.tasks.simulate_images import render_images

SPEC = DemoSpec(n_train_raters=10, n_test_raters=3, n_personality_raters=2, raters_per_image=3, train_ratings=(30, 40),
                test_ratings=(40, 50), likes_per_personality_rater=5, feature_dim=16, latent_dim=6)
QUICK = ["backbone=small-cnn", "device=cpu", "hidden=8", "pretrain_epochs=2", "meta_steps=4", "meta_batch=2", "val_every=2",
         "support_shots=10", "query_size=10", "val_shots=10", "val_repeats=1", "adapt_steps=2", "adapt_lr_grid=0.001"]


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    path = write_demo(tmp_path_factory.mktemp("img") / "data", seed=2, spec=SPEC)
    render_images(path, size=32, seed=2)
    (path / "features.npy").unlink()  # images only: nothing may quietly fall back to features
    return path


def test_pixel_rows_are_the_transformed_image_files(image_dir):
    data = read_dataset(image_dir, pixels=True)
    assert data.features.shape == (len(data.images), 3 * 32 * 32)
    rows = data.features[[4, 0, 4]]
    with Image.open(image_dir / "images" / data.images[0]) as im:
        expected = ImageTransform(size=32)(im).reshape(-1)
    np.testing.assert_array_equal(rows[1], expected)
    np.testing.assert_array_equal(rows[0], rows[2])
    np.testing.assert_array_equal(data.features[0], expected)  # a single row, as numpy would give it
    assert abs(float(expected.mean())) < 3  # normalised, not raw 0..255


def test_feature_path_stays_the_default(image_dir):
    assert create_method("blg-piaa").uses_images is False
    with pytest.raises(DataError, match="features.npy.*images only"):
        read_dataset(image_dir)


def test_missing_image_file_names_the_images_csv_line(image_dir, tmp_path):
    copy = shutil.copytree(image_dir, tmp_path / "d")
    victim = sorted((copy / "images").iterdir())[3]
    victim.unlink()
    with pytest.raises(DataError, match=rf"images.csv line 5, field 'image'.*{victim.name}.*does not exist"):
        read_dataset(copy, pixels=True)


def test_pixel_array_decodes_the_same_rows_through_dataloader_workers(image_dir):
    names = sorted(p.name for p in (image_dir / "images").iterdir())[:40]
    inline = PixelArray(image_dir / "images", names, ImageTransform(size=32), cache_mb=0)
    workers = PixelArray(image_dir / "images", names, ImageTransform(size=32), workers=1, batch_size=8, cache_mb=0)
    np.testing.assert_array_equal(inline[np.arange(40)], workers[np.arange(40)])


def test_backbone_steps_at_its_own_rate_inside_the_inner_loop():
    names = ["backbone.w", "body.w"]
    opt = GroupLR(InnerSGD(lr=1e-3), names, backbone_scale=0.1)
    params = {k: torch.zeros(2) for k in names}
    grads = {k: torch.ones(2) for k in names}
    new, _ = opt.step(params, grads, opt.init(params))
    torch.testing.assert_close(new["body.w"], torch.full((2,), -1e-3))
    torch.testing.assert_close(new["backbone.w"], torch.full((2,), -1e-4))  # BLG-PIAA: backbone 1e-4, head 1e-3


def test_backbone_weights_load_from_a_local_file_only(tmp_path):
    with torch_seeded(1, "x"):
        source = SmallCNN()
    file = tmp_path / "cnn.safetensors"
    save_file(source.state_dict(), str(file))
    built = build_backbone("small-cnn", str(file))
    assert all(torch.equal(built.module.state_dict()[k], v) for k, v in source.state_dict().items())
    assert "starts from" in built.note
    assert "random initialisation" in build_backbone("small-cnn").note
    with pytest.raises(ConfigError, match="does not exist"):
        build_backbone("small-cnn", str(tmp_path / "nope.pth"))
    with pytest.raises(ConfigError, match="unknown trainable backbone 'resnet19'; did you mean 'resnet18'"):
        build_backbone("resnet19")


def test_meta_train_evaluate_adapt_with_image_paths_end_to_end(image_dir, cli, tmp_path):
    sets = [a for item in QUICK for a in ("--set", item)]
    trained = cli("meta-train", "--method", "blg-piaa", "--data", str(image_dir), "--out", str(tmp_path / "run"), "--no-progress", *sets)
    assert trained.code == 0, trained.err
    assert "backbone small-cnn" in trained.err and "random" in trained.err  # said out loud

    # the backbone was trained with the head: its weights moved away from the seeded random init
    weights = load_file(str(tmp_path / "run" / "weights.safetensors"))
    with torch_seeded(0, "init"):
        init, _ = build_image_model("small-cnn", "", (8,), 0.1)
    moved = {k: float((weights[f"meta/params/{k}"] - v).abs().max()) for k, v in init.state_dict().items()}
    assert max(v for k, v in moved.items() if k.startswith("backbone.")) > 1e-4
    assert max(v for k, v in moved.items() if k.startswith("body.")) > 1e-4

    evaluated = cli("evaluate", "--run", str(tmp_path / "run"), "--shots", "10", "--repeats", "2", "--json", str(tmp_path / "eval.json"))
    assert evaluated.code == 0, evaluated.err
    summary = json.loads((tmp_path / "eval.json").read_text())["summary"]
    assert summary[0]["shots"] == 10 and summary[0]["n_users"] == SPEC.n_test_raters
    assert np.isfinite(summary[0]["srocc_mean"]) and -1 <= summary[0]["srocc_mean"] <= 1

    # a new user rates image files by path (outside the dataset's image ids)
    data = read_dataset(image_dir, pixels=True)
    rater = data.raters("test")[0]
    lines = ["image,score"] + [f"{image_dir / 'images' / data.images[i]},{s:g}" for i, s in zip(rater.image_index[:10], rater.scores[:10])]
    (tmp_path / "mine.csv").write_text("\n".join(lines) + "\n")
    adapted = cli("adapt", "--run", str(tmp_path / "run"), "--user", "newcomer", "--ratings", str(tmp_path / "mine.csv"), "--save")
    assert adapted.code == 0, adapted.err
    assert "adapted blg-piaa" in adapted.out and "10 ratings" in adapted.out

    from piaa.personalize import load

    model = load(tmp_path / "run")
    # the profile holds what differs from the prior: after 10 ratings every weight of backbone and head
    # moved, so it is the whole model's size (said by `piaa adapt`); with no ratings it is empty
    stored = model.profiles.load("newcomer")
    n_weights = sum(v.numel() for v in model.method.meta["params"].values())
    assert stored.support is None and sum(v.numel() for v in stored.user_model.state_dict().values()) == n_weights
    assert f"profile: {stored.stored_bytes:,} bytes: {n_weights:,} per-user numbers" in adapted.out
    assert 4 * n_weights < stored.stored_bytes < 4 * n_weights + 8192
    assert model.method.adapt(np.zeros((0, data.feature_dim), np.float32), np.zeros(0)).state_dict() == {}
    paths = [str(image_dir / "images" / data.images[i]) for i in rater.image_index[10:20]]
    by_path = model.score(paths, user="newcomer")
    by_id = model.score([data.images[i] for i in rater.image_index[10:20]], user="newcomer")
    np.testing.assert_allclose(by_path, by_id, rtol=0, atol=1e-5)  # a file and its dataset id score the same
    lo, hi = data.score_range
    assert ((by_path >= lo) & (by_path <= hi)).all() and np.ptp(by_path) > 0


def test_device_choice_is_checked_in_one_line(image_dir):
    from piaa.e2e.device import resolve_device
    from piaa.workflows import meta_train

    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert resolve_device("auto").type == "cpu"
        with pytest.raises(ConfigError, match="no usable CUDA device"):
            resolve_device("cuda")
    with pytest.raises(ConfigError, match="device must be one of auto, cpu, cuda"):
        resolve_device("tpu")
    with pytest.raises(ConfigError, match="--device: ridge trains on features"):
        meta_train("ridge", image_dir, device="cpu")


def test_simulate_images_size_must_be_a_multiple_of_8(cli, tmp_path):
    result = cli("data", "simulate", "--out", str(tmp_path / "d"), "--images", "12")
    assert result.code == 2 and "--images expects 0 or a multiple of 8, got 12" in result.err
    assert not (tmp_path / "d").exists()


def test_finetune_trains_its_prior_end_to_end_and_tunes_the_backbone_per_rater(image_dir, tmp_path):
    from piaa.protocol import evaluate
    from piaa.runs import load_run, save_run

    data = read_dataset(image_dir, pixels=True)
    method = create_method("finetune", backbone="small-cnn", device="cpu", hidden=(8,), epochs=2, batch_size=32,
                           step_grid=(5,), practice_shots=(10,), practice_raters=2)
    with torch_seeded(0, "giaa-init"):
        init = {k: v.clone() for k, v in method._build(0).state_dict().items()}
    method.fit(data.without("test"), seed=0)
    trained = method.model.state_dict()
    assert any(not torch.equal(trained[k], init[k]) for k in init if k.startswith("body.backbone."))
    assert "random initialisation" in method.notes()[0]
    rater = data.raters("test")[0]
    x = np.asarray(data.features[rater.image_index])
    user = method.adapt(x[:10], rater.scores[:10], seed=0)
    prior = dict(method.model.body.named_parameters())
    assert any(not torch.equal(v, prior[k]) for k, v in user.params.items() if k.startswith("backbone."))
    result = evaluate(method, data, shots=[10], repeats=1, seed=0)
    assert result.summary["n_users"].iloc[0] == SPEC.n_test_raters and np.isfinite(result.summary["srocc_mean"].iloc[0])
    run = load_run(save_run(method, data_ref=str(image_dir), seed=0, out=tmp_path / "run"))
    np.testing.assert_allclose(run.method.adapt(x[:10], rater.scores[:10], seed=0).predict(x[10:]), user.predict(x[10:]), rtol=0, atol=1e-5)


PA_QUICK = ["backbone=small-cnn", "device=cpu", "trunk=16", "epochs=3", "batch_size=32"]


def test_pa_iaa_trains_on_images_and_personalises_new_users_by_path_and_from_big_five(image_dir, cli, tmp_path, monkeypatch):
    import piaa.personality.method as pa_method
    from piaa.personalize import load
    from piaa.personality.data import score_bins
    from piaa.tasks.format import BIG_FIVE

    started: dict[str, torch.Tensor] = {}  # the network's weights when the joint training begins
    train = pa_method.train_multitask

    def recording(net, *args, **kwargs):
        started.update({k: v.detach().clone() for k, v in net.state_dict().items()})
        return train(net, *args, **kwargs)

    monkeypatch.setattr(pa_method, "train_multitask", recording)
    sets = [a for item in PA_QUICK for a in ("--set", item)]
    trained = cli("meta-train", "--method", "pa-iaa", "--data", str(image_dir), "--out", str(tmp_path / "run"), "--no-progress", *sets)
    assert trained.code == 0, trained.err
    assert "backbone small-cnn" in trained.err and "random" in trained.err  # said out loud
    data = read_dataset(image_dir, pixels=True)

    # backbone, trunk and both heads trained jointly: all moved away from the seeded initialisation
    weights = load_file(str(tmp_path / "run" / "weights.safetensors"))
    fresh = create_method("pa-iaa", backbone="small-cnn", trunk=(16,))
    with torch_seeded(0, "pa-iaa", "init"):
        init = fresh._build(0, score_bins(data.score_range)).state_dict()
    assert started and all(torch.equal(started[k], v) for k, v in init.items())  # `init` is where training started
    moved = {k: float((weights[f"net.{k}"] - v).abs().max()) for k, v in init.items() if k != "bins"}
    for part in ("backbone.", "trunk.", "aesthetics.", "personality."):
        assert max(v for k, v in moved.items() if k.startswith(part)) > 1e-4, part

    # the protocol on images, with no ratings (Big-Five alone) and with 10
    evaluated = cli("evaluate", "--run", str(tmp_path / "run"), "--shots", "0", "--shots", "10", "--repeats", "2", "--json", str(tmp_path / "eval.json"))
    assert evaluated.code == 0, evaluated.err
    summary = {row["shots"]: row for row in json.loads((tmp_path / "eval.json").read_text())["summary"]}
    assert set(summary) == {0, 10}
    for row in summary.values():
        assert row["n_users"] == SPEC.n_test_raters and np.isfinite(row["srocc_mean"]) and -1 <= row["srocc_mean"] <= 1

    # a new user rates image files by path and gives their Big-Five
    rater = data.raters("test")[0]
    lines = ["image,score"] + [f"{image_dir / 'images' / data.images[i]},{s:g}" for i, s in zip(rater.image_index[:10], rater.scores[:10])]
    (tmp_path / "mine.csv").write_text("\n".join(lines) + "\n")
    adapted = cli("adapt", "--run", str(tmp_path / "run"), "--user", "newcomer", "--ratings", str(tmp_path / "mine.csv"),
                  "--big-five", "0.5,-0.2,0.1,0.3,-0.4", "--save")
    assert adapted.code == 0, adapted.err
    assert "adapted pa-iaa" in adapted.out and "10 ratings" in adapted.out
    assert "bytes: 13 per-user numbers" in adapted.out  # offset, design centre and θ: no network weights

    model = load(tmp_path / "run")
    assert "newcomer" in model.profiles
    stored = model.profiles.load("newcomer")
    assert stored.big_five == pytest.approx([0.5, -0.2, 0.1, 0.3, -0.4])
    assert set(stored.user_model.state_dict()) == {"offset", "x_center", "theta"}  # the taste, not the network
    ids = [data.images[i] for i in rater.image_index[10:20]]
    by_path = model.score([str(image_dir / "images" / name) for name in ids], user="newcomer")
    by_id = model.score(ids, user="newcomer")
    np.testing.assert_allclose(by_path, by_id, rtol=0, atol=1e-5)  # a file and its dataset id score the same
    lo, hi = data.score_range
    assert ((by_path >= lo) & (by_path <= hi)).all() and np.ptp(by_path) > 0  # the score depends on the image

    # zero-shot from Big-Five: the taste weights are the link's prediction for these traits, and
    # two personalities score the same images differently
    method = model.method
    b5 = data.users.set_index("user").loc[rater.user, list(BIG_FIVE)].to_numpy(np.float64)
    zero = method.adapt(np.zeros((0, data.feature_dim), np.float32), np.zeros(0), big_five=b5)
    np.testing.assert_allclose(zero.fitted.theta[1:], method.link.weights(b5[None])[0], rtol=1e-6)
    other = method.adapt(np.zeros((0, data.feature_dim), np.float32), np.zeros(0), big_five=-b5)
    x = np.asarray(data.features[rater.image_index[:20]])
    assert np.abs(zero.predict(x) - other.predict(x)).max() > 1e-6
