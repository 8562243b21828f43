"""Raters as learn2learn tasks: one rater's support and query under piaa's protocol and seeds.

`RaterEpisodes` is a plain torch Dataset (no learn2learn needed): item i is one episode, a rater's
`shots` support images drawn exactly as `piaa evaluate` draws them (same seed, user, shots, repeat →
same images) and all the rater's other images as the query. `learn2learn_taskset` exposes the same
episodes as an `l2l.data.Taskset` over a `MetaDataset` of ratings labelled by rater, so learn2learn
code (its loops, `Taskset.sample()`, its algorithms) runs on FLICKR-AES, AADB or demo raters; task i
is `(X, y)` with the support rows first. Scores are normalised to [0, 1] with the dataset's range.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from piaa.errors import ConfigError
from piaa.tasks.format import Rater, RaterDataset
from piaa.tasks.sampling import MIN_QUERY, Episode, eligible, episodes


@dataclass(frozen=True)
class EpisodeTensors:
    x_support: torch.Tensor  # float32 [shots, dim]
    y_support: torch.Tensor  # float32 [shots], normalised to [0, 1]
    x_query: torch.Tensor  # float32 [n - shots, dim]
    y_query: torch.Tensor

    def __iter__(self):  # so that `xs, ys, xq, yq = episode` works
        return iter((self.x_support, self.y_support, self.x_query, self.y_query))


class RaterEpisodes(torch.utils.data.Dataset):
    """The protocol's episodes of one split: for each eligible rater (users.csv order), `repeats` draws.

    Raters with fewer than `shots + min_query` images are skipped, as the protocol does; their ids are
    in `skipped`. Episode i is rater i // repeats, repeat i % repeats.
    """

    def __init__(self, data: RaterDataset, *, split: str = "train", shots: int = 10, repeats: int = 1, seed: int = 0, min_query: int = MIN_QUERY):
        if shots < 1 or repeats < 1:
            raise ConfigError(f"RaterEpisodes needs shots >= 1 and repeats >= 1, got shots={shots}, repeats={repeats}")
        self.data, self.split, self.shots, self.repeats, self.seed = data, split, int(shots), int(repeats), int(seed)
        raters = data.raters(split)
        self.raters: list[Rater] = [r for r in raters if eligible(r, self.shots, min_query)]
        self.skipped: list[str] = [r.user for r in raters if not eligible(r, self.shots, min_query)]
        if not self.raters:
            raise ConfigError(f"no {split} rater of {data.name} has {self.shots + min_query}+ ratings (shots {self.shots} + {min_query} query)")
        self.episodes: list[Episode] = [e for r in self.raters for e in episodes(r, self.shots, self.repeats, seed=self.seed)]
        self._by_user = {r.user: r for r in self.raters}

    def __len__(self) -> int:
        return len(self.episodes)

    def rows(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows of `data.features` (support, query) of episode i."""
        e = self.episodes[i]
        rater = self._by_user[e.user]
        return rater.image_index[e.support], rater.image_index[e.query]

    def __getitem__(self, i: int) -> EpisodeTensors:
        e = self.episodes[i]
        rater = self._by_user[e.user]
        lo, hi = self.data.score_range
        x = np.asarray(self.data.features[rater.image_index], dtype=np.float32)
        y = ((rater.scores.astype(np.float64) - lo) / (hi - lo)).astype(np.float32)
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a))
        return EpisodeTensors(t(x[e.support]), t(y[e.support]), t(x[e.query]), t(y[e.query]))


class _Ratings(torch.utils.data.Dataset):
    """One item per rating of the episodes' raters: (features, normalised score); label = rater id."""

    def __init__(self, episodes: RaterEpisodes):
        data = episodes.data
        self.image_index = np.concatenate([r.image_index for r in episodes.raters])
        lo, hi = data.score_range
        self.scores = ((np.concatenate([r.scores for r in episodes.raters]).astype(np.float64) - lo) / (hi - lo)).astype(np.float32)
        self.features = data.features
        offsets = np.cumsum([0] + [len(r) for r in episodes.raters])
        self.first_row = {r.user: int(offsets[i]) for i, r in enumerate(episodes.raters)}
        self.labels_to_indices = {r.user: list(range(offsets[i], offsets[i + 1])) for i, r in enumerate(episodes.raters)}

    def __len__(self) -> int:
        return len(self.scores)

    def __getitem__(self, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(np.array(self.features[self.image_index[j]], dtype=np.float32))
        return x, torch.tensor(self.scores[j])


def learn2learn_taskset(episodes: RaterEpisodes):
    """The episodes as a learn2learn `Taskset`: task i is `(X, y)`, rows `[:episodes.shots]` the support.

    Task descriptions are fixed up front from piaa's draws (not from Python's global `random`), so task
    i is the same episode whatever order tasks are read in; `Taskset.sample()` picks one of them.
    """
    from piaa.learn2learn_import import import_learn2learn

    l2l = import_learn2learn("learn2learn_taskset")
    ratings = _Ratings(episodes)
    meta = l2l.data.MetaDataset(ratings, labels_to_indices=ratings.labels_to_indices)
    load = ratings.__getitem__

    def describe(i: int) -> list:
        e = episodes.episodes[i]
        first = ratings.first_row[e.user]
        out = []
        for pos in np.concatenate([e.support, e.query]):
            d = l2l.data.DataDescription(int(first + pos))
            d.transforms.append(load)
            out.append(d)
        return out

    descriptions = {i: describe(i) for i in range(len(episodes))}

    def no_new_tasks(_description):
        raise RuntimeError("this Taskset holds piaa's protocol episodes only; index it or call .sample()")

    taskset = l2l.data.Taskset(meta, task_transforms=no_new_tasks, num_tasks=len(episodes))
    taskset.sampled_descriptions = descriptions
    return taskset
