"""Raters as learn2learn tasks (piaa.tasks.learn2learn_tasks) and the docs example that uses them.

The episode tests run everywhere; the ones needing learn2learn are marked `vision` and skip without it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from piaa.errors import ConfigError
from piaa.tasks.format import read_dataset
from piaa.tasks.learn2learn_tasks import RaterEpisodes, learn2learn_taskset
from piaa.tasks.sampling import draw_support

DOCS = Path(__file__).resolve().parent.parent / "docs" / "learn2learn.md"


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    return read_dataset(tiny_dir)


def test_episodes_use_the_protocols_support_draws_and_the_rest_as_query(tiny):
    eps = RaterEpisodes(tiny, split="test", shots=10, repeats=3, seed=7)
    lo, hi = tiny.score_range
    assert len(eps) == 3 * len(eps.raters) and eps.raters
    for i in (0, 4, len(eps) - 1):
        e = eps.episodes[i]
        rater = tiny.rater(e.user)
        support, query = draw_support(len(rater), 10, seed=7, user=e.user, repeat=e.repeat)
        assert (e.user, e.repeat) == (eps.raters[i // 3].user, i % 3)
        xs, ys, xq, yq = eps[i]
        assert xs.shape == (10, tiny.feature_dim) and xq.shape == (len(rater) - 10, tiny.feature_dim)
        np.testing.assert_array_equal(xs.numpy(), np.asarray(tiny.features[rater.image_index[support]], dtype=np.float32))
        np.testing.assert_array_equal(xq.numpy(), np.asarray(tiny.features[rater.image_index[query]], dtype=np.float32))
        np.testing.assert_allclose(ys.numpy(), (rater.scores[support] - lo) / (hi - lo), rtol=0, atol=1e-6)
        np.testing.assert_allclose(yq.numpy(), (rater.scores[query] - lo) / (hi - lo), rtol=0, atol=1e-6)
    # another seed draws other support sets for the same rater and repeat
    other = RaterEpisodes(tiny, split="test", shots=10, repeats=3, seed=8)
    assert not np.array_equal(other.episodes[0].support, eps.episodes[0].support)


def test_raters_too_small_for_the_shot_count_are_skipped_and_listed(tiny):
    eps = RaterEpisodes(tiny, split="train", shots=50, seed=0)
    sizes = {r.user: len(r) for r in tiny.raters("train")}
    assert set(eps.skipped) == {u for u, n in sizes.items() if n < 60}
    assert {r.user for r in eps.raters} == {u for u, n in sizes.items() if n >= 60}
    assert eps.skipped and eps.raters  # TINY's train raters have 40-90 ratings: both kinds occur


def test_no_eligible_rater_is_one_clear_error(tiny):
    with pytest.raises(ConfigError, match=r"no test rater of .* has 1010\+ ratings"):
        RaterEpisodes(tiny, split="test", shots=1000)


@pytest.mark.vision
def test_learn2learn_taskset_task_i_is_episode_i_in_any_reading_order(tiny):
    pytest.importorskip("learn2learn", reason="needs learn2learn in the vision venv: make install-learn2learn")
    eps = RaterEpisodes(tiny, split="test", shots=10, repeats=2, seed=3)
    taskset = learn2learn_taskset(eps)
    assert len(taskset) == len(eps)
    for i in reversed(range(len(eps))):  # read backwards: descriptions must not depend on reading order
        X, y = taskset[i]
        xs, ys, xq, yq = eps[i]
        torch.testing.assert_close(X, torch.cat([xs, xq]), rtol=0, atol=0)
        torch.testing.assert_close(y, torch.cat([ys, yq]), rtol=0, atol=0)
    X, y = taskset.sample()  # learn2learn's own sampling returns one of the episodes
    assert any(torch.equal(y, torch.cat([eps[i].y_support, eps[i].y_query])) for i in range(len(eps)))
    assert sorted(taskset.dataset.labels) == sorted(r.user for r in eps.raters)  # MetaDataset labels = raters


@pytest.mark.vision
def test_docs_example_runs_and_prints_the_numbers_the_docs_quote(demo_dir):
    pytest.importorskip("learn2learn", reason="needs learn2learn in the vision venv: make install-learn2learn")
    text = DOCS.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 1 and "learn2learn_taskset" in blocks[0]
    env = {**os.environ, "PIAA_DEMO_DIR": str(demo_dir), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", blocks[0]], capture_output=True, text=True, env=env, timeout=900,
                          cwd=Path(__file__).resolve().parent.parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    match = re.search(r"over (\d+) test raters: (-?[\d.]+) before meta-training, (-?[\d.]+) after", proc.stdout)
    assert match, proc.stdout
    n, before, after = int(match[1]), float(match[2]), float(match[3])
    assert n == 30 and after > before + 0.1  # meta-training over raters helps the 10-shot adaptation
    quoted = re.search(r"prints `(mean 10-shot SROCC over .*?)`", text.replace("\n", " "))
    assert quoted and " ".join(quoted[1].split()) == proc.stdout.strip()


def test_the_tasks_layer_imports_no_method_and_not_learn2learn_until_asked():
    """tasks → methods, never the reverse; learn2learn is imported only by `learn2learn_taskset`."""
    code = ("import sys, piaa.tasks.learn2learn_tasks; "
            "print(sorted(m for m in sys.modules if m.startswith(('piaa.meta', 'piaa.baselines', 'learn2learn', 'piaa.commands'))))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parent.parent)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
