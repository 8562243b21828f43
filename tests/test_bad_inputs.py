"""Every family of bad input ends in one line on stderr starting with "error:", exit status 2, no
traceback, nothing on stdout, no partial output and nothing the user had overwritten; the same
inputs through the Python API raise a `PiaaError` (or the OS error the CLI reports) naming the file.

Each family is one parametrized table, so the number of cases per family is the table's length.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from piaa.errors import PiaaError
from tests_helpers import FAST


def assert_one_line_error(result, *named: str, notes_before: bool = False) -> str:
    """Exit 2, exactly one non-empty stderr line starting with 'error:' naming `named`, empty stdout.
    With `notes_before`, 'note:' lines an importer printed while parsing may precede it."""
    assert result.code == 2, f"exit {result.code}\nstdout: {result.out}\nstderr: {result.err}"
    lines = [line for line in result.err.splitlines() if line.strip() and not (notes_before and line.startswith("note:"))]
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in result.err
    for name in named:
        assert name in lines[0], f"{name!r} not in {lines[0]!r}"
    assert result.out == "", result.out
    return lines[0]


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under `root` (hidden ones too) with its content hash: 'nothing changed' is checkable."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


# -- shared: one small trained run with a stored profile --------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_dir):
    """A user-mean run on the tiny data, a new user's ratings CSV and that user's stored profile."""
    import piaa
    from piaa.personalize import adapt_from_csv
    from piaa.workflows import meta_train

    root = tmp_path_factory.mktemp("trained")
    run = meta_train("user-mean", tiny_dir, out=root / "run", overrides=FAST)
    images = pd.read_csv(tiny_dir / "images.csv")["image"].tolist()
    ratings = root / "ratings.csv"
    ratings.write_text("image,score\n" + "".join(f"{im},{1 + (i * 7) % 5}\n" for i, im in enumerate(images[:15])))
    model = piaa.load(run)
    model.profiles.save(adapt_from_csv(model, ratings, user="alice"))
    users = pd.read_csv(tiny_dir / "users.csv")
    return {
        "run": run, "ratings": ratings, "images": images,
        "test_user": str(users.loc[users["split"] == "test", "user"].iloc[0]),
        "train_user": str(users.loc[users["split"] == "train", "user"].iloc[0]),
    }


@pytest.fixture
def run_copy(trained, tmp_path):
    dest = tmp_path / "run-copy"
    shutil.copytree(trained["run"], dest)
    return dest


# -- bad .npy files -----------------------------------------------------------------------------------
def _truncated(path: Path) -> None:
    np.save(path, np.ones((40, 32), np.float32))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


NPY_CASES = {
    "zero-byte": lambda p: p.write_bytes(b""),
    "garbage-header": lambda p: p.write_bytes(b"\x93NUMPY\x01\x00\xff\xffnot a header at all" + b"\0" * 64),
    "not-npy-at-all": lambda p: p.write_bytes(b"PK\x03\x04 this is a zip, or anything else"),
    "truncated-data": _truncated,
    "wrong-dtype-int64": lambda p: np.save(p, np.ones((10, 32), np.int64)),
    "wrong-shape-1d": lambda p: np.save(p, np.ones(32, np.float32)),
    "wrong-shape-3d": lambda p: np.save(p, np.ones((2, 4, 4), np.float32)),
    "pickled-objects": lambda p: np.save(p, np.array([{"a": 1}, None], dtype=object), allow_pickle=True),
}


@pytest.mark.parametrize("case", NPY_CASES, ids=list(NPY_CASES))
def test_bad_features_npy_in_a_dataset_is_one_error_line_naming_it(cli, tiny_copy, case):
    from piaa.tasks.format import read_dataset

    NPY_CASES[case](tiny_copy / "features.npy")
    assert_one_line_error(cli("data", "describe", tiny_copy), "features.npy")
    with pytest.raises(PiaaError, match="features.npy"):
        read_dataset(tiny_copy)


@pytest.mark.parametrize("case", NPY_CASES, ids=list(NPY_CASES))
def test_bad_npy_given_to_score_is_one_error_line_naming_it(cli, trained, tmp_path, case):
    bad = tmp_path / "query.npy"
    NPY_CASES[case](bad)
    result = cli("score", "--run", trained["run"], "--user", "alice", "--features", bad, "--csv", tmp_path / "out.csv")
    assert_one_line_error(result, "query.npy")
    assert not (tmp_path / "out.csv").exists()


# -- bad dataset.json -------------------------------------------------------------------------------------
def _json_case(text: str | bytes):
    return lambda p: p.write_bytes(text if isinstance(text, bytes) else text.encode())


DATASET_JSON_CASES = {
    "non-utf8": _json_case(b'{"name": "caf\xe9", "score_range": [1, 5]}'),
    "deeply-nested": _json_case('{"name": "x", "score_range": [1, 5], "deep": ' + "[" * 100_000 + "]" * 100_000 + "}"),
    "not-json": _json_case("name = demo\n"),
    "top-level-list": _json_case("[1, 5]"),
    "score-range-string": _json_case('{"name": "x", "score_range": "1-5"}'),
    "score-range-reversed": _json_case('{"name": "x", "score_range": [5, 1]}'),
    "score-range-bools": _json_case('{"name": "x", "score_range": [false, true]}'),
    "name-a-number": _json_case('{"name": 42, "score_range": [1, 5]}'),
    "backbone-a-list": _json_case('{"name": "x", "score_range": [1, 5], "backbone": ["a"]}'),
    "zero-byte": _json_case(b""),
}


@pytest.mark.parametrize("case", DATASET_JSON_CASES, ids=list(DATASET_JSON_CASES))
def test_bad_dataset_json_is_one_error_line_naming_it(cli, tiny_copy, case):
    from piaa.tasks.format import read_dataset

    DATASET_JSON_CASES[case](tiny_copy / "dataset.json")
    assert_one_line_error(cli("data", "describe", tiny_copy), "dataset.json")
    with pytest.raises(PiaaError, match="dataset.json"):
        read_dataset(tiny_copy)


# -- bad CSV files of a dataset ----------------------------------------------------------------------------
def _header_only(p: Path) -> None:
    p.write_text(p.read_text().splitlines()[0] + "\n")


def _set_cell(column: str, value: str, row: int = 3):
    def apply(p: Path) -> None:
        df = pd.read_csv(p, dtype=str, keep_default_na=False)
        df.loc[row, column] = value
        df.to_csv(p, index=False)

    return apply


def _latin1_cell(p: Path) -> None:
    lines = p.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b",", b"\xe9\xff,", 1) if b"," in lines[2] else lines[2] + b"\xe9\xff"
    p.write_bytes(b"\n".join(lines))


CSV_CASES = {
    "ratings-header-only": ("ratings.csv", _header_only),
    "users-header-only": ("users.csv", _header_only),
    "images-header-only": ("images.csv", _header_only),
    "ratings-zero-byte": ("ratings.csv", lambda p: p.write_bytes(b"")),
    "score-not-a-number": ("ratings.csv", _set_cell("score", "abc")),
    "score-out-of-range": ("ratings.csv", _set_cell("score", "99")),
    "score-nan": ("ratings.csv", _set_cell("score", "nan")),
    "split-unknown": ("users.csv", _set_cell("split", "banana")),
    "image-unknown": ("ratings.csv", _set_cell("image", "no-such-image")),
    "ratings-not-utf8": ("ratings.csv", _latin1_cell),
    "users-not-utf8": ("users.csv", _latin1_cell),
    "images-not-utf8": ("images.csv", _latin1_cell),
    "ratings-missing-column": ("ratings.csv", lambda p: p.write_text("user,image\nu,i\n")),
}


@pytest.mark.parametrize("case", CSV_CASES, ids=list(CSV_CASES))
def test_bad_dataset_csv_is_one_error_line_naming_it(cli, tiny_copy, case):
    from piaa.tasks.format import read_dataset

    name, mutate = CSV_CASES[case]
    mutate(tiny_copy / name)
    assert_one_line_error(cli("data", "describe", tiny_copy), name)
    with pytest.raises(PiaaError, match=name):
        read_dataset(tiny_copy)


USER_CSV_CASES = {
    "header-only": lambda p, images: p.write_text("image,score\n"),
    "zero-byte": lambda p, images: p.write_bytes(b""),
    "score-not-a-number": lambda p, images: p.write_text(f"image,score\n{images[0]},3\n{images[1]},good\n"),
    "score-out-of-range": lambda p, images: p.write_text(f"image,score\n{images[0]},3\n{images[1]},7\n"),
    "not-utf8": lambda p, images: p.write_bytes(f"image,score\n{images[0]},3\n".encode() + b"caf\xe9.jpg,2\n"),
    "missing-column": lambda p, images: p.write_text(f"image,rating\n{images[0]},3\n"),
    "unknown-image": lambda p, images: p.write_text(f"image,score\n{images[0]},3\nnot-in-dataset.jpg,2\n"),
}


@pytest.mark.parametrize("case", USER_CSV_CASES, ids=list(USER_CSV_CASES))
def test_bad_user_ratings_csv_is_one_error_line_naming_it_and_nothing_is_stored(cli, trained, tmp_path, case):
    import piaa
    from piaa.personalize import adapt_from_csv

    bad = tmp_path / "mine.csv"
    USER_CSV_CASES[case](bad, trained["images"])
    store = tmp_path / "store.sqlite"
    result = cli("adapt", "--run", trained["run"], "--user", "bob", "--ratings", bad, "--save", "--store", store)
    assert_one_line_error(result, "mine.csv")
    assert not store.exists()
    with pytest.raises(PiaaError, match="mine.csv"):
        adapt_from_csv(piaa.load(trained["run"]), bad, user="bob")


# -- a feature store with damaged files ---------------------------------------------------------------------
STORE_CASES = {
    "images-csv-zero-byte": ("images.csv", lambda p: p.write_bytes(b"")),
    "images-csv-not-utf8": ("images.csv", lambda p: p.write_bytes(b"image\ncaf\xe9.jpg\n")),
    "manifest-not-utf8": ("manifest.json", lambda p: p.write_bytes(b'{"format": "piaa-features", "x": "\xff"}')),
    "manifest-a-list": ("manifest.json", lambda p: p.write_text("[]")),
    "features-zero-byte": ("features.npy", lambda p: p.write_bytes(b"")),
    "features-missing": ("features.npy", lambda p: p.unlink()),
}


@pytest.mark.parametrize("case", STORE_CASES, ids=list(STORE_CASES))
def test_damaged_feature_store_is_one_error_line_naming_the_file(cli, tmp_path, case):
    from piaa.tasks.feature_store import open_store, write_store
    from test_importers import flickr_fixture

    root, truth = flickr_fixture(tmp_path / "flickr")
    (tmp_path / "test_ids.csv").write_text("ID\n" + "\n".join(sorted(truth["user"].unique())[:3]) + "\n")
    images = sorted(truth["image"].unique())
    store = write_store(tmp_path / "store", images, np.ones((len(images), 4), np.float32), backbone="test")
    name, mutate = STORE_CASES[case]
    mutate(store / name)
    result = cli("data", "import", "flickr-aes", "--root", root, "--test-workers", tmp_path / "test_ids.csv", "--features", store, "--out", tmp_path / "out")
    assert_one_line_error(result, name, notes_before=True)
    assert not (tmp_path / "out").exists()
    with pytest.raises(PiaaError, match=name):
        open_store(store)


# -- damaged run files ----------------------------------------------------------------------------------------
def _edit_config(change):
    def apply(run: Path) -> None:
        info = json.loads((run / "config.json").read_text())
        change(info)
        (run / "config.json").write_text(json.dumps(info))

    return apply


def _wrong_shape_weights(run: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    state = load_file(str(run / "weights.safetensors"))
    key = next(iter(state))
    state[key] = torch.zeros(3, 3)
    save_file(state, str(run / "weights.safetensors"))


RUN_CASES = {
    "config-not-json": ("config.json", lambda r: (r / "config.json").write_text("{oops")),
    "config-not-utf8": ("config.json", lambda r: (r / "config.json").write_bytes(b'{"method": "\xff"}')),
    "config-a-list": ("config.json", lambda r: (r / "config.json").write_text("[]")),
    "config-no-method": ("config.json", _edit_config(lambda i: i.pop("method"))),
    "config-unknown-method": ("config.json", _edit_config(lambda i: i.update(method="no-such-method"))),
    "config-dropout-5": ("config.json", _edit_config(lambda i: i["config"].update(dropout=5))),
    "config-score-range-reversed": ("config.json", _edit_config(lambda i: i["extra_state"].update(score_range=[5, 1]))),
    "config-seed-a-string": ("config.json", _edit_config(lambda i: i.update(seed="zero"))),
    "weights-garbage": ("weights.safetensors", lambda r: (r / "weights.safetensors").write_bytes(b"\x08\0\0\0\0\0\0\0{garbage")),
    "weights-zero-byte": ("weights.safetensors", lambda r: (r / "weights.safetensors").write_bytes(b"")),
    "weights-wrong-shapes": ("weights.safetensors", _wrong_shape_weights),
    "weights-missing": ("weights.safetensors", lambda r: (r / "weights.safetensors").unlink()),
}


@pytest.mark.parametrize("case", RUN_CASES, ids=list(RUN_CASES))
def test_damaged_run_file_is_one_error_line_naming_that_file(cli, trained, run_copy, case):
    from piaa.runs import load_run

    name, damage = RUN_CASES[case]
    damage(run_copy)
    result = cli("adapt", "--run", run_copy, "--user", trained["test_user"], "--shots", "10", "--repeats", "1")
    assert_one_line_error(result, name)
    with pytest.raises(PiaaError, match=name):
        load_run(run_copy)


def test_a_damaged_score_range_is_blamed_on_the_run_not_on_the_users_csv(cli, trained, run_copy):
    RUN_CASES["config-score-range-reversed"][1](run_copy)
    line = assert_one_line_error(cli("adapt", "--run", run_copy, "--user", "bob", "--ratings", trained["ratings"]), "config.json", "score_range")
    assert "ratings.csv" not in line


MAML_FAST = ["meta_steps=4", "pretrain_epochs=1", "val_every=2", "checkpoint_every=2", "hidden=8", "support_shots=10", "query_size=10", "val_shots=10"]
CHECKPOINT_CASES = {
    "not-json": lambda d: (d / "checkpoint.json").write_text("{step: 3"),
    "not-utf8": lambda d: (d / "checkpoint.json").write_bytes(b'{"step": 3, "file": "\xff"}'),
    "a-list": lambda d: (d / "checkpoint.json").write_text("[3]"),
    "missing-fields": lambda d: (d / "checkpoint.json").write_text('{"step": 3}'),
    "names-a-missing-file": lambda d: (d / "checkpoint.json").write_text('{"step": 3, "file": "state-00000003.safetensors", "sha256": "00"}'),
    "names-a-file-outside": lambda d: (d / "checkpoint.json").write_text('{"step": 3, "file": "../../../etc/passwd", "sha256": "00"}'),
    "checksum-mismatch": lambda d: ((d / "state-00000003.safetensors").write_bytes(b"x"), (d / "checkpoint.json").write_text('{"step": 3, "file": "state-00000003.safetensors", "sha256": "00"}')),
}


def _checkpoint_dir(data_dir: Path, out: Path, overrides=MAML_FAST, method="maml", seed=0) -> Path:
    from piaa.registry import create_method
    from piaa.runs import resolve_data
    from piaa.workflows import checkpoint_dir_for, data_content_hash

    model = create_method(method, overrides)
    data, ref = resolve_data(data_dir)
    return checkpoint_dir_for(model.name, model.config.to_dict(), ref, seed, out, content=data_content_hash(data))


@pytest.mark.parametrize("case", CHECKPOINT_CASES, ids=list(CHECKPOINT_CASES))
def test_damaged_checkpoint_json_is_one_error_line_and_no_run_is_written(cli, tiny_dir, tmp_path, case):
    from piaa.workflows import meta_train

    out = tmp_path / "run"
    ckpt = _checkpoint_dir(tiny_dir, out)
    ckpt.mkdir(parents=True)
    CHECKPOINT_CASES[case](ckpt)
    args = ["meta-train", "--method", "maml", "--data", tiny_dir, "--out", out]
    for item in MAML_FAST:
        args += ["--set", item]
    assert_one_line_error(cli(*args), "checkpoint.json")
    assert not out.exists()
    with pytest.raises(PiaaError, match="checkpoint.json"):
        meta_train("maml", tiny_dir, out=out, overrides=MAML_FAST)


# -- resume only on the same data content -----------------------------------------------------------------------
def test_the_checkpoint_key_covers_the_data_content_not_just_names_and_counts(tiny_copy, tmp_path):
    before = _checkpoint_dir(tiny_copy, tmp_path / "run")
    ratings = pd.read_csv(tiny_copy / "ratings.csv")
    ratings.loc[0, "score"] = 1.0 if ratings.loc[0, "score"] != 1.0 else 2.0  # same raters, same count
    ratings.to_csv(tiny_copy / "ratings.csv", index=False)
    assert _checkpoint_dir(tiny_copy, tmp_path / "run") != before
    features = np.load(tiny_copy / "features.npy")
    features[0, 0] += 0.5
    np.save(tiny_copy / "features.npy", features)
    changed = _checkpoint_dir(tiny_copy, tmp_path / "run")
    assert len({before, changed}) == 2


def test_changed_data_trains_afresh_instead_of_resuming_the_old_checkpoint(tiny_copy, tmp_path):
    """A checkpoint left for the old data (damaged here, so reading it would fail loudly) is never
    read once a rating has changed: the run trains from scratch and is saved."""
    from piaa.workflows import meta_train

    out = tmp_path / "run"
    old = _checkpoint_dir(tiny_copy, out)
    old.mkdir(parents=True)
    (old / "checkpoint.json").write_text("{damaged")
    with pytest.raises(PiaaError, match="checkpoint.json"):
        meta_train("maml", tiny_copy, out=out, overrides=MAML_FAST)  # same data: the old checkpoint is read
    ratings = pd.read_csv(tiny_copy / "ratings.csv")
    ratings.loc[0, "score"] = 1.0 if ratings.loc[0, "score"] != 1.0 else 2.0
    ratings.to_csv(tiny_copy / "ratings.csv", index=False)
    path = meta_train("maml", tiny_copy, out=out, overrides=MAML_FAST)
    log = [json.loads(line) for line in (path / "train_log.jsonl").read_text().splitlines()]
    assert not any("resumed_at_step" in entry for entry in log)
    assert (path / "weights.safetensors").is_file()


# -- --out that cannot be written ---------------------------------------------------------------------------------
def _a_file(tmp_path: Path) -> Path:
    f = tmp_path / "taken.txt"
    f.write_text("keep me\n")
    return f


OUT_IS_FILE_CASES = {
    "meta-train --out": lambda t, f: ["meta-train", "--method", "user-mean", "--data", t["data"], "--out", f] + sum((["--set", s] for s in FAST), []),
    "data simulate --out": lambda t, f: ["data", "simulate", "--out", f],
    "features extract --out": lambda t, f: ["features", "extract", "--images", t["images_dir"], "--backbone", "handcrafted", "--out", f],
    "benchmark --out": lambda t, f: ["benchmark", "--methods", "user-mean", "--data", t["data"], "--out", f],
}


@pytest.fixture
def targets(tiny_dir, tmp_path):
    from PIL import Image

    images = tmp_path / "pics"
    images.mkdir()
    Image.new("RGB", (32, 24), (200, 10, 10)).save(images / "a.png")
    return {"data": tiny_dir, "images_dir": images}


@pytest.mark.parametrize("case", OUT_IS_FILE_CASES, ids=list(OUT_IS_FILE_CASES))
def test_out_that_is_a_file_is_one_error_line_and_the_file_is_kept(cli, targets, tmp_path, case):
    taken = _a_file(tmp_path)
    assert_one_line_error(cli(*OUT_IS_FILE_CASES[case](targets, taken)), "taken.txt")
    assert taken.read_text() == "keep me\n"


READ_ONLY_CASES = {
    "data simulate --out": lambda t, d: ["data", "simulate", "--out", d / "new"],
    "adapt --json": lambda t, d: ["adapt", "--run", t["run"], "--user", t["test_user"], "--repeats", "1", "--json", d / "r.json"],
    "score --csv": lambda t, d: ["score", "--run", t["run"], "--user", "alice", t["images"][0], "--csv", d / "r.csv"],
}


def _read_only_dir(tmp_path: Path) -> Path:
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() == 0:  # root ignores permission bits: a read-only mount is the real thing
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro)], capture_output=True).returncode != 0:
            pytest.skip("running as root and cannot mount a read-only tmpfs")
    else:
        ro.chmod(0o555)
    return ro


@pytest.mark.parametrize("case", READ_ONLY_CASES, ids=list(READ_ONLY_CASES))
def test_output_into_a_read_only_directory_is_one_error_line(cli, trained, tmp_path, case):
    ro = _read_only_dir(tmp_path)
    try:
        result = cli(*READ_ONLY_CASES[case](trained, ro))
        assert_one_line_error(result, str(ro))
        assert list(ro.iterdir()) == []
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(ro)], check=False)
        else:
            ro.chmod(0o755)


# -- a directory where a file is expected (and the other way round) -------------------------------------------------
DIR_AS_FILE_CASES = {
    "adapt --ratings DIR": lambda t, d: ["adapt", "--run", t["run"], "--user", "bob", "--ratings", d],
    "score --features DIR": lambda t, d: ["score", "--run", t["run"], "--user", "alice", "--features", d],
    "profiles list --store DIR": lambda t, d: ["profiles", "list", "--store", d],
    "adapt --json DIR": lambda t, d: ["adapt", "--run", t["run"], "--user", t["test_user"], "--repeats", "1", "--json", d],
    "score --csv DIR": lambda t, d: ["score", "--run", t["run"], "--user", "alice", t["images"][0], "--csv", d],
    "data describe FILE": lambda t, d: ["data", "describe", t["ratings"]],
    "adapt --run FILE": lambda t, d: ["adapt", "--run", t["ratings"], "--user", t["test_user"]],
}


@pytest.mark.parametrize("case", DIR_AS_FILE_CASES, ids=list(DIR_AS_FILE_CASES))
def test_a_directory_given_as_a_file_or_a_file_as_a_directory_is_one_error_line(cli, trained, tmp_path, case):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    args = DIR_AS_FILE_CASES[case](trained, folder)
    named = "ratings.csv" if case.endswith("FILE") else "a-folder"
    assert_one_line_error(cli(*args), named)
    assert list(folder.iterdir()) == []


# -- numbers out of range on the command line ---------------------------------------------------------------------------
NUMBER_CASES = {
    "adapt --shots -1": (lambda t: ["adapt", "--run", t["run"], "--user", t["test_user"], "--shots", "-1"], "--shots"),
    "adapt --repeats 0": (lambda t: ["adapt", "--run", t["run"], "--user", t["test_user"], "--repeats", "0"], "--repeats"),
    "evaluate --shots -1": (lambda t: ["evaluate", "--run", t["run"], "--shots", "-1"], "--shots"),
    "evaluate --repeats 0": (lambda t: ["evaluate", "--run", t["run"], "--repeats", "0"], "--repeats"),
    "evaluate --repeats -5": (lambda t: ["evaluate", "--run", t["run"], "--repeats", "-5"], "--repeats"),
    "score --top 0": (lambda t: ["score", "--run", t["run"], "--user", "alice", t["images"][0], "--top", "0"], "--top"),
    "meta-train --threads 0": (lambda t: ["meta-train", "--method", "user-mean", "--threads", "0"], "--threads"),
}


@pytest.mark.parametrize("case", NUMBER_CASES, ids=list(NUMBER_CASES))
def test_out_of_range_numbers_are_one_error_line_naming_the_option(cli, trained, case):
    make, option = NUMBER_CASES[case]
    assert_one_line_error(cli(*make(trained)), option)


@pytest.mark.parametrize("shots,repeats", [(-1, 1), (10, 0)], ids=["shots -1", "repeats 0"])
def test_out_of_range_shots_and_repeats_through_the_api(trained, shots, repeats):
    from piaa.protocol import evaluate
    from piaa.runs import load_run

    run = load_run(trained["run"])
    with pytest.raises(PiaaError, match="shots" if shots < 0 else "repeats"):
        evaluate(run.method, run.load_data(), shots=[shots], repeats=repeats)


# -- --set values out of range --------------------------------------------------------------------------------------------
SET_CASES = {
    "dropout=5": "giaa", "dropout=-0.1": "giaa", "hidden=-3": "giaa", "hidden=0": "giaa",
    "lr=nan": "giaa", "lr=-1": "giaa", "weight_decay=inf": "giaa", "epochs=-1": "giaa",
    "val_fraction=1.5": "giaa", "patience=-1": "giaa", "query_size=0": "maml", "val_shots=0": "maml",
    "trunk=0": "pa-iaa", "neighbours=0": "knn",
}


@pytest.mark.parametrize("assignment", SET_CASES, ids=list(SET_CASES))
def test_set_value_out_of_range_is_one_error_line_naming_the_field(cli, tiny_dir, tmp_path, assignment):
    from piaa.registry import create_method

    field = assignment.split("=")[0]
    method = SET_CASES[assignment]
    assert_one_line_error(cli("meta-train", "--method", method, "--data", tiny_dir, "--out", tmp_path / "run", "--set", assignment), field)
    assert not (tmp_path / "run").exists()
    with pytest.raises(PiaaError, match=field):
        create_method(method, [assignment])


# -- foreign and newer profile stores -------------------------------------------------------------------------------------------
def _foreign_sqlite(path: Path) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE invoices (id INTEGER, total REAL)")
    con.execute("INSERT INTO invoices VALUES (1, 9.5)")
    con.commit()
    con.close()


def _newer_schema(path: Path, trained) -> None:
    import piaa
    from piaa.personalize import adapt_from_csv

    model = piaa.load(trained["run"])
    from piaa.profiles import ProfileStore

    ProfileStore(path, model=model).save(adapt_from_csv(model, trained["ratings"], user="carol"))
    con = sqlite3.connect(path)
    con.execute("UPDATE store_meta SET value = '2' WHERE key = 'schema_version'")
    con.commit()
    con.close()


STORE_FILE_CASES = {
    "foreign-sqlite": (lambda p, t: _foreign_sqlite(p), "not a piaa profile store"),
    "newer-schema": (_newer_schema, "newer piaa"),
    "not-sqlite": (lambda p, t: p.write_bytes(b"just some text, not a database\n" * 10), "not a readable profile store"),
}
STORE_COMMANDS = {
    "profiles list": lambda t, s: ["profiles", "list", "--store", s],
    "profiles show": lambda t, s: ["profiles", "show", "carol", "--store", s],
    "profiles delete": lambda t, s: ["profiles", "delete", "carol", "--store", s],
    "score": lambda t, s: ["score", "--run", t["run"], "--store", s, "--user", "carol", t["images"][0]],
    "adapt --save": lambda t, s: ["adapt", "--run", t["run"], "--store", s, "--user", "dave", "--ratings", t["ratings"], "--save"],
}


@pytest.mark.parametrize("command", STORE_COMMANDS, ids=list(STORE_COMMANDS))
@pytest.mark.parametrize("case", STORE_FILE_CASES, ids=list(STORE_FILE_CASES))
def test_foreign_newer_or_garbage_store_is_refused_and_left_untouched(cli, trained, tmp_path, case, command):
    from piaa.profiles import ProfileStore

    store = tmp_path / "store.sqlite"
    make, says = STORE_FILE_CASES[case]
    make(store, trained)
    before = store.read_bytes()
    assert_one_line_error(cli(*STORE_COMMANDS[command](trained, store)), "store.sqlite", says)
    assert store.read_bytes() == before
    with pytest.raises(PiaaError, match=says):
        ProfileStore(store).list()


# -- user ids with rich markup are data ----------------------------------------------------------------------------------------
MARKUP_IDS = ["[/]", "x[/bold]", "[bold red]boss[/]", "[link=https://example.com]click[/link]", "[red]", "\\[escaped]"]


@pytest.mark.parametrize("user", MARKUP_IDS, ids=MARKUP_IDS)
def test_markup_in_a_user_id_is_stored_and_printed_verbatim(cli, trained, tmp_path, user):
    from piaa.profiles import ProfileStore

    store = tmp_path / "store.sqlite"
    saved = cli("adapt", "--run", trained["run"], "--store", store, "--user", user, "--ratings", trained["ratings"], "--save")
    assert saved.code == 0, saved.err
    assert f"profile of {user} " in saved.out
    assert ProfileStore(store).users() == [user]
    listed = cli("profiles", "list", "--run", trained["run"], "--store", store)
    assert listed.code == 0, listed.err
    assert user in listed.out and "\x1b]8;" not in listed.out  # no terminal hyperlink
    shown = cli("profiles", "show", user, "--store", store)
    assert shown.code == 0 and f"profile {user}" in shown.out
    scored = cli("score", "--run", trained["run"], "--store", store, "--user", user, trained["images"][0])
    assert scored.code == 0 and user in scored.out


def test_one_markup_profile_does_not_break_listing_the_others(cli, trained, tmp_path):
    store = tmp_path / "store.sqlite"
    for user in ["alice", "x[/bold]", "zed"]:
        assert cli("adapt", "--run", trained["run"], "--store", store, "--user", user, "--ratings", trained["ratings"], "--save").code == 0
    listed = cli("profiles", "list", "--store", store)
    assert listed.code == 0, listed.err
    assert all(u in listed.out for u in ["alice", "x[/bold]", "zed"]) and "3 profile(s)" in listed.out


# -- two writers to one --out ---------------------------------------------------------------------------------------------------------
def test_a_second_meta_train_to_an_out_being_written_stops_and_says_so(cli, tiny_dir, tmp_path):
    import fcntl

    from piaa.errors import RunError
    from piaa.workflows import meta_train

    out = tmp_path / "run"
    with open(tmp_path / ".run.lock", "a+") as held:  # what the first writer holds while training
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(RunError, match="another meta-train is writing"):
            meta_train("user-mean", tiny_dir, out=out, overrides=FAST)
        assert_one_line_error(cli("meta-train", "--method", "user-mean", "--data", tiny_dir, "--out", out, "--set", "epochs=2"), "another meta-train", "run")
    assert not out.exists()


@pytest.mark.slow  # two interpreters importing torch and training: ~40 s on a busy machine
def test_two_concurrent_meta_train_processes_to_one_out_one_wins_the_other_says_so(tiny_dir, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "piaa", "meta-train", "--method", "user-mean", "--data", str(tiny_dir), "--out", str(out), "--set", "epochs=15", "--set", "hidden=32,16", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PIAA_RUNS": str(tmp_path / "runs")}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path) for _ in range(2)]
    results = [(p.wait(timeout=600), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, _, err in results if code == 2)
    assert loser.startswith("error: ") and loser.count("\n") == 1 and str(out) in loser
    assert (out / "weights.safetensors").is_file() and (out / "config.json").is_file()


def test_save_run_never_replaces_a_run_another_process_finished_first(trained, tmp_path):
    from piaa.runs import load_run, save_run

    run = load_run(trained["run"])
    out = tmp_path / "run"
    shutil.copytree(trained["run"], out)
    before = tree_digest(out)
    with pytest.raises(FileExistsError, match="run"):
        save_run(run.method, data_ref=run.data_ref, seed=1, out=out)
    assert tree_digest(out) == before and [p.name for p in tmp_path.iterdir()] == ["run"]


# -- outputs are never overwritten without --force -------------------------------------------------------------------------------------
FORCE_CASES = {
    "adapt --json": lambda t, f: ["adapt", "--run", t["run"], "--user", t["test_user"], "--repeats", "1", "--json", f],
    "evaluate --json": lambda t, f: ["evaluate", "--run", t["run"], "--shots", "10", "--repeats", "1", "--json", f],
    "evaluate --csv": lambda t, f: ["evaluate", "--run", t["run"], "--shots", "10", "--repeats", "1", "--csv", f],
    "score --csv": lambda t, f: ["score", "--run", t["run"], "--user", "alice", t["images"][0], "--csv", f],
}


@pytest.mark.parametrize("case", FORCE_CASES, ids=list(FORCE_CASES))
def test_an_existing_output_file_is_kept_unless_force(cli, trained, tmp_path, case):
    target = tmp_path / "result.out"
    target.write_text("precious\n")
    args = FORCE_CASES[case](trained, target)
    assert_one_line_error(cli(*args), "result.out", "--force")
    assert target.read_text() == "precious\n"
    forced = cli(*args, "--force")
    assert forced.code == 0, forced.err
    assert target.read_text() != "precious\n" and target.stat().st_size > 20


OUT_DIR_FORCE_CASES = {
    "meta-train --out": lambda t, d: ["meta-train", "--method", "user-mean", "--data", t["data"], "--out", d] + sum((["--set", s] for s in FAST), []),
    "data simulate --out": lambda t, d: ["data", "simulate", "--out", d],
}


@pytest.mark.parametrize("case", OUT_DIR_FORCE_CASES, ids=list(OUT_DIR_FORCE_CASES))
def test_an_existing_output_directory_is_kept_unless_force(cli, targets, tmp_path, case):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("precious\n")
    args = OUT_DIR_FORCE_CASES[case](targets, target)
    assert_one_line_error(cli(*args), "mine", "--force")
    assert (target / "notes.txt").read_text() == "precious\n"
    forced = cli(*args, "--force")
    assert forced.code == 0, forced.err
    assert not (target / "notes.txt").exists() and any(target.iterdir())


# -- files honour the umask --------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("umask,file_mode,dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700), (0o002, 0o664, 0o775)], ids=["022", "077", "002"])
def test_written_files_and_run_directories_honour_the_umask(cli, trained, tmp_path, umask, file_mode, dir_mode):
    from piaa.atomic import write_json
    from piaa.runs import load_run, save_run

    old = os.umask(umask)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        run = load_run(trained["run"])
        out = save_run(run.method, data_ref=run.data_ref, seed=0, out=tmp_path / "run")
        result = cli("data", "simulate", "--out", tmp_path / "sim")
    finally:
        os.umask(old)
    assert result.code == 0, result.err
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == file_mode
    assert out.stat().st_mode & 0o777 == dir_mode
    assert {p.stat().st_mode & 0o777 for p in out.iterdir()} == {file_mode}
    assert (tmp_path / "sim").stat().st_mode & 0o777 == dir_mode
    assert {p.stat().st_mode & 0o777 for p in (tmp_path / "sim").iterdir()} == {file_mode}


# -- tiny and huge images in features extract ----------------------------------------------------------------------------------------------------
ODD_SIZES = {"1x1": (1, 1), "2x2": (2, 2), "1x1000": (1, 1000), "1000x1": (1000, 1), "10000x3": (10000, 3), "3x10000": (3, 10000), "2x5": (2, 5)}


@pytest.mark.parametrize("size", ODD_SIZES, ids=list(ODD_SIZES))
def test_handcrafted_features_of_a_sliver_image_are_finite(size):
    from PIL import Image

    from piaa.features.handcrafted import FEATURE_NAMES, handcrafted_features

    rng = np.random.default_rng(0)
    w, h = ODD_SIZES[size]
    image = Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))
    values = handcrafted_features(image)
    assert values.shape == (len(FEATURE_NAMES),) and np.isfinite(values).all()
    assert values[FEATURE_NAMES.index("log_aspect_ratio")] == pytest.approx(np.log(w / h), rel=1e-5)


def test_features_extract_handles_sliver_images_and_keeps_extracting_the_folder(cli, tmp_path):
    from PIL import Image

    from piaa.tasks.feature_store import open_store

    folder = tmp_path / "pics"
    folder.mkdir()
    for name, (w, h) in ODD_SIZES.items():
        Image.new("RGB", (w, h), (10, 200, 30)).save(folder / f"{name}.png")
    Image.new("RGB", (64, 48), (90, 90, 250)).save(folder / "normal.jpg")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    result = cli("features", "extract", "--images", folder, "--backbone", "handcrafted", "--out", tmp_path / "store", "--no-progress")
    assert result.code == 0, result.err
    store = open_store(tmp_path / "store")
    assert sorted(store.images) == sorted([f"{n}.png" for n in ODD_SIZES] + ["normal.jpg"])
    assert np.isfinite(np.asarray(store.features)).all()
    assert list(store.failed) == ["broken.jpg"] and "1 unreadable image" in result.err


# -- disk full ---------------------------------------------------------------------------------------------------------------------------------------
def _folder_of_images(tmp_path: Path, n: int = 40) -> Path:
    from PIL import Image

    folder = tmp_path / "pics"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, size=(40, 50, 3), dtype=np.uint8)).save(folder / f"im{i:03d}.png")
    return folder


def test_disk_full_on_a_real_small_filesystem_is_one_error_line(cli, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root; the simulated ENOSPC test covers this case")
    folder = _folder_of_images(tmp_path, n=200)
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(disk)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        result = cli("features", "extract", "--images", folder, "--backbone", "handcrafted", "--out", disk / "store", "--no-progress", "--shard-size", "8")
        line = assert_one_line_error(result, "no space left")
        assert "disk" in line
        assert not (disk / "store" / "manifest.json").exists()
    finally:
        subprocess.run(["umount", str(disk)], check=False)


@pytest.mark.parametrize("where", ["shard", "final-array", "manifest"])
def test_disk_full_simulated_is_one_error_line_and_no_finished_store(cli, tmp_path, monkeypatch, where):
    import piaa.features.extract as extract

    folder = _folder_of_images(tmp_path, n=12)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "store" / "x"))

    if where == "shard":
        monkeypatch.setattr(extract._Shards, "commit", full)
    elif where == "final-array":
        monkeypatch.setattr(extract, "_write_rows", full)
    else:
        monkeypatch.setattr(extract, "write_json", lambda path, obj: full() if Path(path).name == "manifest.json" else None)
    result = cli("features", "extract", "--images", folder, "--backbone", "handcrafted", "--out", tmp_path / "store", "--no-progress")
    assert_one_line_error(result, "no space left")
    assert not (tmp_path / "store" / "manifest.json").exists()
