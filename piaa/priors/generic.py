"""The design's generic column: small networks on the whitened principal components, trained on the
training raters' consensus with each rater's own bias and spread taken out.

Why not the PA-IAA network's score: that network reads all raw feature dimensions and learns from raw
scores, so its output carries feature noise and each image's luck in drawing lenient or harsh raters.
`benchmarks/prior_choices.py` compares the two columns by SROCC on a sibling simulation; docs/methods.md
gives how much of the demo's true generic quality each explains. Evaluated in numpy like the rest of
the design, so adapting and scoring need no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

import numpy as np

from piaa.seeding import derive_seed

if TYPE_CHECKING:
    import torch

HIDDEN = (128, 64)
DROPOUT = 0.3
WEIGHT_DECAY = 1e-3
LEARNING_RATE = 4e-3
BATCH = 512


@dataclass
class NumpyMLP:
    """Eval-mode forward of a ReLU MLP with one output (dropout is the identity)."""

    layers: list[tuple[np.ndarray, np.ndarray]]  # (weight [out, in], bias); ReLU after all but the last

    def __call__(self, x: np.ndarray) -> np.ndarray:
        h = np.asarray(x, dtype=np.float64)
        for w, b in self.layers[:-1]:
            h = np.maximum(h @ w.T + b, 0.0)
        w, b = self.layers[-1]
        return (h @ w.T + b)[:, 0]

    def state_dict(self, prefix: str) -> dict[str, np.ndarray]:
        out = {}
        for i, (w, b) in enumerate(self.layers):
            out[f"{prefix}{i}.weight"], out[f"{prefix}{i}.bias"] = w, b
        return out

    @classmethod
    def from_state(cls, state: Mapping[str, "torch.Tensor | np.ndarray"], prefix: str, as_f64) -> "NumpyMLP":
        n = len({k[len(prefix):].split(".")[0] for k in state if k.startswith(prefix)})
        return cls([(as_f64(state[f"{prefix}{i}.weight"]), as_f64(state[f"{prefix}{i}.bias"])) for i in range(n)])


def consensus_targets(data, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(target, count) for each training image in `rows`: the mean over its training raters of
    (score − that rater's mean) / that rater's spread, put back on the score scale (pooled mean and
    spread). Images without a training rating get NaN and count 0."""
    train = set(data.users_in("train"))
    ratings = data.ratings.loc[data.ratings["user"].isin(train), ["user", "image_index", "score"]]
    score = ratings["score"].to_numpy(np.float64)
    grouped = ratings.groupby("user")["score"]
    mean = grouped.transform("mean").to_numpy()
    spread = grouped.transform("std").fillna(0.0).to_numpy()
    floor = max(float(np.median(spread)) * 0.25, 1e-3)  # a rater who always gives the same score
    z = (score - mean) / np.maximum(spread, floor)
    pooled_sd = float(np.sqrt(np.mean(spread**2))) or 1.0
    where = np.searchsorted(rows, ratings["image_index"].to_numpy())
    total = np.bincount(where, weights=z, minlength=len(rows))
    count = np.bincount(where, minlength=len(rows)).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        target = float(score.mean()) + pooled_sd * total / count
    return target, count


def fit_generic_networks(pcs: np.ndarray, target: np.ndarray, count: np.ndarray, fold: np.ndarray, *,
                         seed: int, epochs: int = 60, threads: int = 1) -> list[NumpyMLP]:
    """One network per fold, trained on the other folds' images (all images with one fold), each
    image weighted by its number of ratings."""
    import torch

    from piaa.threads import torch_threads

    n_folds = int(fold.max()) + 1
    nets = []
    with torch_threads(threads):
        for f in range(n_folds):
            keep = (count > 0) & ((fold != f) if n_folds > 1 else True)
            nets.append(_train(pcs[keep], target[keep], count[keep], seed=derive_seed(seed, "generic-net", f), epochs=epochs))
    return nets


def _train(x: np.ndarray, y: np.ndarray, weight: np.ndarray, *, seed: int, epochs: int) -> NumpyMLP:
    import torch

    gen = torch.Generator().manual_seed(seed)
    sizes = (x.shape[1], *HIDDEN, 1)
    linears = [torch.nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])]
    with torch.no_grad():  # seeded init without touching torch's global generator
        for layer in linears:
            bound = 1.0 / np.sqrt(layer.in_features)
            layer.weight.uniform_(-bound, bound, generator=gen)
            layer.bias.uniform_(-bound, bound, generator=gen)
    params = [p for layer in linears for p in layer.parameters()]
    optimizer = torch.optim.AdamW(params, lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY, fused=True)
    y_mean, y_sd = float(y.mean()), float(y.std()) or 1.0
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    yt = torch.from_numpy(((y - y_mean) / y_sd).astype(np.float32))
    wt = torch.from_numpy((weight / weight.mean()).astype(np.float32))

    def forward(h: torch.Tensor) -> torch.Tensor:
        for layer in linears[:-1]:
            h = torch.relu(layer(h))
            h = h * (torch.rand(h.shape, generator=gen, dtype=h.dtype) >= DROPOUT) / (1 - DROPOUT)
        return linears[-1](h)[:, 0]

    for _ in range(epochs):
        order = torch.randperm(len(xt), generator=gen)
        for start in range(0, len(xt), BATCH):
            i = order[start:start + BATCH]
            loss = (wt[i] * (forward(xt[i]) - yt[i]) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    layers = [(layer.weight.detach().double().numpy(), layer.bias.detach().double().numpy()) for layer in linears]
    w, b = layers[-1]
    layers[-1] = (w * y_sd, b * y_sd + y_mean)  # back on the score scale
    return NumpyMLP(layers)

