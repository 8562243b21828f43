"""`piaa adapt --ratings`, `piaa score`, `piaa profiles`: output, stored state and exit status 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

import piaa
from tests_helpers import run_cli


def test_adapt_new_user_save_score_list_show_delete(run_copy, ratings_csv, capsys, monkeypatch, tmp_path):
    path, rows = ratings_csv
    code, out, err = run_cli(capsys, monkeypatch, "adapt", "--ratings", str(path), "--user", "alice")
    assert code == 0 and "from 12 ratings" in out and "not stored" in out
    assert not (run_copy / "profiles.sqlite").exists()
    code, out, err = run_cli(capsys, monkeypatch, "adapt", "--ratings", str(path), "--user", "alice", "--save")
    assert code == 0 and "saved profile of alice" in out, err
    model = piaa.load(run_copy)
    profile = model.profiles.load("alice")
    assert profile.n_ratings == 12 and profile.images == [r[0] for r in rows]

    images = list(model.dataset.images[100:110])
    code, out, err = run_cli(capsys, monkeypatch, "score", "--user", "alice", *images, "--csv", str(tmp_path / "s.csv"))
    assert code == 0, err
    expected = profile.rank(images)
    written = (tmp_path / "s.csv").read_text().splitlines()
    assert written[0] == "rank,index,image,score" and len(written) == 11
    assert [line.split(",")[2] for line in written[1:]] == expected["image"].tolist()
    assert f"{expected['score'].iloc[0]:.3f}" in out and expected["image"].iloc[0] in out

    feats = tmp_path / "f.npy"
    np.save(feats, np.asarray(model.dataset.features[:50], dtype=np.float32))
    code, out, err = run_cli(capsys, monkeypatch, "score", "--user", "alice", "--features", str(feats), "--top", "3")
    assert code == 0 and out.count("row ") == 3, err
    best = profile.rank(np.asarray(model.dataset.features[:50]), top=3)
    assert f"row {best['index'].iloc[0]}" in out

    code, out, _ = run_cli(capsys, monkeypatch, "adapt", "--ratings", str(path), "--user", "alice", "--save")
    assert "replaced profile of alice" in out
    code, out, _ = run_cli(capsys, monkeypatch, "profiles", "list")
    assert code == 0 and "1 profile(s)" in out and "alice" in out and "12" in out
    code, out, _ = run_cli(capsys, monkeypatch, "profiles", "show", "alice", "--run", str(run_copy))
    assert code == 0 and profile.model_id in out and f"{rows[0][0]}={rows[0][1]:g}" in out
    code, out, _ = run_cli(capsys, monkeypatch, "profiles", "delete", "alice")
    assert code == 0 and "deleted profile of alice" in out
    assert model.profiles.users() == []


def test_protocol_mode_of_adapt_still_works(run_copy, capsys, monkeypatch, tmp_path):
    user = piaa.load(run_copy).dataset.users_in("test")[0]
    code, out, err = run_cli(capsys, monkeypatch, "adapt", "--user", user, "--shots", "10", "--repeats", "2", "--json", str(tmp_path / "r.json"))
    assert code == 0, err
    assert f"user {user}: SROCC" in out and "over 2 draws of 10 shots" in out
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    assert [r["shots"] for r in rows] == [10, 10]


@pytest.mark.parametrize(
    "args, content, message",
    [
        (["score", "--user", "bob", "demo_00001.jpg"], None, "no profile for user 'bob'"),
        (["adapt", "--user", "x", "--ratings", "{csv}"], "image,score\n", "has a header but no ratings"),
        (["adapt", "--user", "x", "--ratings", "{csv}"], "", "is empty; expected a header line"),
        (["adapt", "--user", "x", "--ratings", "{csv}"], "image,score\ndemo_00001.jpg,3\ndemo_00002.jpg,9\n",
         "line 3, field 'score': expected a score in [1, 5]"),
        (["adapt", "--user", "x", "--ratings", "{csv}"], "image,score\ndemo_00001.jpg,three\n", "line 2, field 'score': expected a number"),
        (["adapt", "--user", "x", "--ratings", "{csv}"], "img,score\na,1\n", "missing column 'image'"),
        (["adapt", "--user", "x", "--ratings", "{csv}"], "image,score\nnope.jpg,3\n",
         "line 2, field 'image': 'nope.jpg' is neither an image id"),
        (["adapt", "--user", "x", "--ratings", "{csv}", "--shots", "5"], "image,score\n", "--shots and --json belong"),
        (["adapt", "--user", "42", "--save"], None, "need --ratings FILE"),
        (["score", "--user", "alice"], None, "give IMAGES or --features"),
        (["score", "--user", "alice", "--features", "{csv}"], "not numpy", "not a readable .npy array"),
        (["profiles", "delete", "nobody"], None, "no profile for user 'nobody'"),
        (["profiles", "show", "nobody", "--store", "{csv}"], "garbage " * 500, "not a readable profile store"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(run_copy, capsys, monkeypatch, tmp_path, args, content, message):
    csv = tmp_path / "in.csv"
    if content is not None:
        csv.write_text(content)
    before = csv.read_bytes() if csv.exists() else None
    code, out, err = run_cli(capsys, monkeypatch, *[a.replace("{csv}", str(csv)) for a in args])
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert (csv.read_bytes() if csv.exists() else None) == before
    assert not (run_copy / "profiles.sqlite").exists()
