"""docs/contributing.md is executable: each worked example's file and registration line, run for real."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from piaa.tasks.feature_store import open_store, write_store
from piaa.tasks.format import read_dataset

DOC = Path(__file__).resolve().parents[1] / "docs" / "contributing.md"


def _blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", DOC.read_text(encoding="utf-8"), flags=re.S | re.M)


def _example(tmp_path: Path, monkeypatch, file: str) -> tuple[str, str]:
    """Write the example file (the block headed `# <file>`) as a top-level module in tmp_path and
    return (the registered name, "module:attribute") from its registration line in the doc."""
    blocks = _blocks()
    code = next(b for b in blocks if b.startswith(f"# {file}\n"))
    stem = Path(file).stem
    (tmp_path / f"{stem}.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    line = next(b for b in blocks if f".{stem}:" in b and not b.startswith("# "))
    if line.startswith("BACKBONES.add("):
        name, target = ast.literal_eval(line.strip()[len("BACKBONES.add"):])
    else:
        name, target = ast.literal_eval("{" + line.strip() + "}").popitem()
    module, _, attribute = target.partition(":")
    assert module.rsplit(".", 1)[-1] == stem  # the line points at the file the doc shows
    return name, f"{stem}:{attribute}"


@pytest.fixture
def registered(monkeypatch, tmp_path):
    """Register an example under its documented name for one test, then forget it."""
    added = []

    def add(registry, file: str) -> str:
        name, target = _example(tmp_path, monkeypatch, file)
        registry.add(name, target)
        added.append((registry, name, target.partition(":")[0]))
        return name

    yield add
    for registry, name, module in added:
        registry.remove(name)
        sys.modules.pop(module, None)


def test_the_method_example_trains_evaluates_and_round_trips_a_run(registered, tiny_dir, tmp_path):
    from piaa.protocol import evaluate
    from piaa.registry import METHODS, create_method, list_methods
    from piaa.runs import load_run, save_run

    name = registered(METHODS, "baselines/neighbour_residual.py")
    assert name == "neighbour-residual" and name in list_methods()
    data = read_dataset(tiny_dir)
    method = create_method(name, ["epochs=3", "k=3"]).fit(data.without("test"), seed=0)
    result = evaluate(method, data, shots=[10], repeats=2, seed=0)
    assert result.rows["error"].isna().all() and np.isfinite(result.rows["srocc"]).all()
    assert len(result.rows) == 2 * len(data.users_in("test"))
    run = load_run(save_run(method, data_ref=str(tiny_dir), seed=0, out=tmp_path / "run"))
    assert run.info["method"] == name and run.method.config.k == 3
    x = np.asarray(data.features[:20], dtype=np.float32)
    support = np.asarray(data.features[20:30], dtype=np.float32)
    y = np.linspace(1, 5, 10)
    np.testing.assert_allclose(run.method.adapt(support, y).predict(x), method.adapt(support, y).predict(x), atol=1e-6)


def test_the_backbone_example_extracts_a_feature_store(registered, tmp_path):
    from piaa.features import BACKBONES, list_backbones
    from piaa.features.extract import extract_features

    name = registered(BACKBONES, "piaa/features/mean_colour.py")
    assert name == "mean-colour" and name in list_backbones()
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (80, 60), (255, 0, 0)).save(tmp_path / "imgs" / "red.png")
    Image.new("RGB", (60, 80), (0, 0, 255)).save(tmp_path / "imgs" / "blue.png")
    result = extract_features(tmp_path / "imgs", name, tmp_path / "store", progress=False)
    assert (result.n_images, result.dim) == (2, 6)
    store = open_store(tmp_path / "store")
    red = store.features[list(store.images).index("red.png")]
    np.testing.assert_allclose(red, [1, 0, 0, 0, 0, 0], atol=1e-6)  # a plain red image: mean (1, 0, 0), no spread


def test_the_importer_example_is_a_cli_command(registered, cli, tmp_path):
    from piaa.tasks.importers.registry import IMPORTERS

    name = registered(IMPORTERS, "tasks/importers/long_csv.py")
    assert name == "long-csv" and name in IMPORTERS.names()
    rows = [(f"u{u}", f"im{i}.jpg", 1 + (u * 7 + i) % 5, "test" if u < 2 else "train") for u in range(5) for i in range(30)]
    (tmp_path / "ratings.csv").write_text("user,image,score,split\n" + "".join(f"{u},{im},{s},{sp}\n" for u, im, s, sp in rows))
    write_store(tmp_path / "feats", [f"im{i}.jpg" for i in range(30)], np.eye(30, 4, dtype=np.float32), backbone="test-backbone")
    r = cli("data", "import", name, "--ratings", tmp_path / "ratings.csv", "--dry-run")
    assert r.code == 0 and "long-csv: checked (dry run: nothing written)" in r.out
    r = cli("data", "import", name, "--ratings", tmp_path / "ratings.csv", "--features", tmp_path / "feats", "--out", tmp_path / "data")
    assert r.code == 0, r.err
    data = read_dataset(tmp_path / "data")
    assert len(data.ratings) == 150 and sorted(data.users_in("test")) == ["u0", "u1"] and data.feature_dim == 4
    (tmp_path / "bad.csv").write_text("user,image,score,split\nu0,im0.jpg,9,train\n")
    r = cli("data", "import", name, "--ratings", tmp_path / "bad.csv", "--dry-run")
    assert r.code == 2 and r.err.strip().endswith("line 2, field 'score': expected a number in [1, 5], got '9'")
