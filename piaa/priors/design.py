"""The design rows the rater heads of `learned-prior` and `task-vector` act on, computed with numpy.

φ(x) = [s(x), p(x), PCA_K(x)], each column standardised on the training images:

- s(x) the generic score: by default from the small networks of `piaa.priors.generic` on the
  principal components (debiased consensus), else from the PA-IAA networks;
- p(x) the five personality outputs of PA-IAA networks trained on the training raters' consensus and
  the personality raters' likes (so the Big-Five link of PA-IAA applies to the p columns);
- all networks cross-fitted over folds of the training images;
- the leading K principal components of the image features, which carry what a single consensus
  network throws away: the directions in which raters disagree.

The network is evaluated in numpy from its weights (a two-layer trunk and two heads), so adapting and
scoring a rater need no torch kernels; that keeps cold starts and per-rater calls cheap.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Mapping

import numpy as np

from piaa.priors.generic import NumpyMLP
from piaa.seeding import derive_seed, numpy_rng

if TYPE_CHECKING:  # torch only to save: loading reads numpy arrays too, so `piaa adapt` needs no torch
    import torch

N_HEAD_COLUMNS = 6  # s and p: the columns the PA-IAA link speaks about


def as_f64(value) -> np.ndarray:
    """A float64 copy of a stored tensor: a torch tensor or a numpy array (a run loaded without torch)."""
    if hasattr(value, "detach"):
        return value.detach().cpu().double().numpy().copy()
    return np.array(value, dtype=np.float64)


@dataclass
class NumpyPANet:
    """Eval-mode forward of piaa.personality.model.PersonalityAssistedNet (dropout is the identity)."""

    mean: np.ndarray
    scale: np.ndarray
    layers: list[tuple[np.ndarray, np.ndarray]]  # trunk Linear layers (weight [out, in], bias), ReLU after each
    aesthetics: tuple[np.ndarray, np.ndarray]
    personality: tuple[np.ndarray, np.ndarray]
    bins: np.ndarray

    @classmethod
    def from_state(cls, state: Mapping[str, torch.Tensor], prefix: str) -> "NumpyPANet":
        get = lambda k: as_f64(state[prefix + k])  # noqa: E731
        trunk = sorted({int(k[len(prefix) + len("trunk."):].split(".")[0]) for k in state if k.startswith(prefix + "trunk.")})
        layers = [(get(f"trunk.{i}.weight"), get(f"trunk.{i}.bias")) for i in trunk]
        return cls(
            mean=get("standardize.mean"), scale=get("standardize.scale"), layers=layers,
            aesthetics=(get("aesthetics.weight"), get("aesthetics.bias")),
            personality=(get("personality.weight"), get("personality.bias")), bins=get("bins"),
        )

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(generic score [n], personality [n, 5])."""
        h = (np.asarray(x, dtype=np.float64) - self.mean) / self.scale
        for w, b in self.layers:
            h = np.maximum(h @ w.T + b, 0.0)
        logits = h @ self.aesthetics[0].T + self.aesthetics[1]
        logits -= logits.max(axis=1, keepdims=True)
        prob = np.exp(logits)
        prob /= prob.sum(axis=1, keepdims=True)
        return prob @ self.bins, np.tanh(h @ self.personality[0].T + self.personality[1])


@dataclass
class HeadDesign:
    """φ(x): network outputs and principal components, standardised on the training images.

    `nets` were trained by cross-fitting (each on the training images of all folds but one); a new
    image gets their average, a training image the output of the net that never saw it
    (`out_of_fold`). Heads fitted on in-sample network outputs would learn that the generic score
    explains the training raters far better than it explains anyone's unseen images.
    """

    nets: list[NumpyPANet]
    feat_mean: np.ndarray  # [dim] feature means on training images
    feat_scale: np.ndarray  # [dim]
    components: np.ndarray  # [dim, K], already divided by the components' standard deviations
    head_mean: np.ndarray  # [6] means of s, p on training images
    head_scale: np.ndarray  # [6]
    generic: list[NumpyMLP] = dataclasses.field(default_factory=list)  # one per fold: s from these when present

    @property
    def dim(self) -> int:
        return N_HEAD_COLUMNS + self.components.shape[1]

    @classmethod
    def fit(cls, nets: list[NumpyPANet], x_train: np.ndarray, n_components: int,
            fit_generic: Callable[[np.ndarray], list[NumpyMLP]] | None = None) -> "HeadDesign":
        """PCA on the training images, then (if `fit_generic`) the generic networks on their
        components, then the columns' standardisation."""
        x = np.asarray(x_train, dtype=np.float64)
        mean, scale = x.mean(axis=0), np.maximum(x.std(axis=0), 1e-6)
        z = (x - mean) / scale
        values, vectors = np.linalg.eigh(z.T @ z / max(len(z) - 1, 1))
        order = np.argsort(values)[::-1][: min(n_components, x.shape[1])]
        vectors = vectors[:, order]
        # Fix signs so the result does not depend on the LAPACK build.
        vectors *= np.where(vectors[np.argmax(np.abs(vectors), axis=0), np.arange(len(order))] < 0, -1.0, 1.0)
        components = vectors / np.sqrt(np.maximum(values[order], 1e-12))
        design = cls(nets, mean, scale, components, np.zeros(N_HEAD_COLUMNS), np.ones(N_HEAD_COLUMNS))
        pcs = design.components_of(x)
        design.generic = fit_generic(pcs) if fit_generic is not None else []
        heads = design._heads(x, pcs)
        design.head_mean, design.head_scale = heads.mean(axis=0), np.maximum(heads.std(axis=0), 1e-6)
        return design

    def components_of(self, x: np.ndarray) -> np.ndarray:
        """[n, K] whitened principal components of features."""
        return ((x - self.feat_mean) / self.feat_scale) @ self.components

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """[n, dim] features → [n, 6 + K] design rows (the nets' average for s and p)."""
        x = np.asarray(x, dtype=np.float64)
        pcs = self.components_of(x)
        return self._rows(self._heads(x, pcs), pcs)

    def out_of_fold(self, x: np.ndarray, fold: np.ndarray, generic_fold: np.ndarray | None = None) -> np.ndarray:
        """Design rows of training images, s and p from the nets that did not train on each image
        (`generic_fold`: the generic networks' folds, when they differ from the PA-IAA nets')."""
        x = np.asarray(x, dtype=np.float64)
        pcs = self.components_of(x)
        heads = np.empty((len(x), N_HEAD_COLUMNS))
        for f, net in enumerate(self.nets):
            rows = fold == f
            if rows.any():
                heads[rows] = np.column_stack(net(x[rows]))
        generic_fold = fold if generic_fold is None else generic_fold
        for f, net in enumerate(self.generic):
            rows = generic_fold == f
            if rows.any():
                heads[rows, 0] = net(pcs[rows])
        return self._rows(heads, pcs)

    def _heads(self, x: np.ndarray, pcs: np.ndarray) -> np.ndarray:
        """[n, 6]: s and p averaged over the cross-fitted nets (s from the generic nets if any)."""
        heads = _average_heads(self.nets, x)
        if self.generic:
            heads[:, 0] = np.mean([net(pcs) for net in self.generic], axis=0)
        return heads

    def _rows(self, heads: np.ndarray, pcs: np.ndarray) -> np.ndarray:
        return np.concatenate([(heads - self.head_mean) / self.head_scale, pcs], axis=1)

    def state_dict(self, prefix: str = "design.") -> dict[str, torch.Tensor]:
        import torch

        f64 = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))  # noqa: E731
        state = {prefix + k: f64(getattr(self, k)) for k in ("feat_mean", "feat_scale", "components", "head_mean", "head_scale")}
        for f, net in enumerate(self.generic):
            state.update({k: f64(v) for k, v in net.state_dict(f"{prefix}generic{f}.").items()})
        return state

    @classmethod
    def from_state(cls, state: Mapping[str, torch.Tensor], prefix: str = "design.") -> "HeadDesign":
        get = lambda k: as_f64(state[prefix + k])  # noqa: E731
        n_nets = len({k.split(".")[0] for k in state if k.startswith("net") and ".standardize.mean" in k})
        nets = [NumpyPANet.from_state(state, f"net{i}.") for i in range(n_nets)]
        n_generic = len({k[len(prefix):].split(".")[0] for k in state if k.startswith(prefix + "generic")})
        generic = [NumpyMLP.from_state(state, f"{prefix}generic{f}.", as_f64) for f in range(n_generic)]
        return cls(nets, get("feat_mean"), get("feat_scale"), get("components"), get("head_mean"), get("head_scale"), generic)


def _average_heads(nets: list[NumpyPANet], x: np.ndarray) -> np.ndarray:
    return np.mean([np.column_stack(net(x)) for net in nets], axis=0)


def image_folds(n_images: int, folds: int, *, seed: int) -> np.ndarray:
    """A seeded fold number for each of `n_images` training images."""
    fold = np.empty(n_images, dtype=np.int64)
    fold[numpy_rng(seed, "head-design", "folds").permutation(n_images)] = np.arange(n_images) % folds
    return fold


def fit_networks(data, rows: np.ndarray, fold: np.ndarray, *, seed: int, threads: int = 1, epochs: int = 60) -> list:
    """Cross-fitting: one PA-IAA network (with its Big-Five link) per fold, trained on the train raters'
    ratings of the other folds' images (`rows` are the training images, `fold` their folds); with a
    single fold, one network trained on all of them.
    Personality raters' likes train every net (they are not the raters the heads are fitted on).
    """
    from piaa.personality.method import PAIAAConfig, PersonalityAssisted

    cfg = PAIAAConfig(threads=threads, epochs=epochs)
    train_users = set(data.users_in("train"))
    models = []
    n_folds = int(fold.max()) + 1
    for f in range(n_folds):
        # one fold: no cross-fitting, a single network on every training image (design rows in-sample)
        held_images = set(rows[fold == f].tolist()) if n_folds > 1 else set()
        drop = data.ratings["user"].isin(train_users) & data.ratings["image_index"].isin(held_images)
        subset = dataclasses.replace(data, ratings=data.ratings[~drop].reset_index(drop=True))
        subset.__dict__.pop("_rater_groups", None)
        models.append(PersonalityAssisted(cfg).fit(subset, seed=derive_seed(seed, "head-design", f)))
    return models


def training_rows(data) -> np.ndarray:
    """Rows of `data.features` rated by training raters."""
    users = set(data.users_in("train"))
    return np.unique(data.ratings.loc[data.ratings["user"].isin(users), "image_index"].to_numpy())
