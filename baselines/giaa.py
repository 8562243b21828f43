"""`giaa`: the generic prior. One MLP predicts the consensus score; every rater gets the same model.

This is the reference point for personalisation: a method that does not beat it at 10 or 100 shots
has not learned anything about the rater.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import numpy as np
import torch

from piaa.errors import ConfigError
from piaa.method import Method, MethodConfig, UserModel
from piaa.nn import FeatureRegressor, predict_batched
from piaa.seeding import torch_seeded
from piaa.tasks.format import RaterDataset
from piaa.tasks.targets import generic_targets
from piaa.training import fit_regressor


@dataclass(frozen=True)
class GIAAConfig(MethodConfig):
    hidden: tuple[int, ...] = (256, 64)
    dropout: float = 0.2
    lr: float = 1e-3
    weight_decay: float = 1e-4
    epochs: int = 80
    batch_size: int = 128
    val_fraction: float = 0.1
    patience: int = 12
    giaa_train_only: bool = False  # train on the dataset's GIAA-train images only (giaa_split.csv, PARA's image split)


# Within `shared_priors()`, priors already trained (same data object, seed and prior config) are reused.
_SHARED_PRIORS: ContextVar[dict[tuple, Any] | None] = ContextVar("piaa_shared_priors", default=None)


@contextlib.contextmanager
def shared_priors() -> Iterator[None]:
    """Train each distinct generic prior once inside this block (e.g. a benchmark of many baselines).

    Every method built on `GenericPrior` fits the same MLP when its prior fields, seed and data are
    equal; training is deterministic, so reusing a copy gives exactly the weights a fresh fit would.
    """
    token = _SHARED_PRIORS.set({})
    try:
        yield
    finally:
        _SHARED_PRIORS.reset(token)


class GenericUserModel(UserModel):
    """Every rater gets the prior: the consensus score mapped onto the dataset's score scale."""

    def __init__(self, method: "GenericPrior"):
        self.method = method

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.method.generic_score(x)

    def predict_from_shared(self, shared: np.ndarray | None, x: np.ndarray) -> np.ndarray:
        return self.method.score_from_z(shared[:, 0]) if shared is not None else self.predict(x)


class GenericPrior(Method):
    Config = GIAAConfig
    summary = "generic aesthetics prior (MLP on features), no personalisation"
    fitted_attributes = ("model",)
    can_share_prior = True

    def __init__(self, config: GIAAConfig | None = None, **overrides):
        super().__init__(config, **overrides)
        self.model: FeatureRegressor | None = None
        self.score_mean = 0.0
        self.rater_std = 1.0
        self.prior_shared = False
        self.giaa_split_used: dict[str, int] | None = None  # with giaa_train_only: images kept and left out

    def _build(self, dim: int) -> FeatureRegressor:
        return FeatureRegressor(dim, self.config.hidden, self.config.dropout)

    def fit(self, data: RaterDataset, *, seed: int = 0, progress: bool = False, checkpoint_dir=None) -> "GenericPrior":
        self._fit_prior(data, seed=seed, progress=progress)
        return self

    def prior_key(self) -> tuple:
        """The configuration fields that determine the prior (shared by all GIAAConfig subclasses)."""
        return tuple((f.name, getattr(self.config, f.name)) for f in dataclasses.fields(GIAAConfig))

    def _fit_prior(self, data: RaterDataset, *, seed: int, progress: bool) -> None:
        self._remember_data(data)
        cache = _SHARED_PRIORS.get()
        key = (id(data), seed, type(self)._build, self.prior_key())
        if cache is not None and key in cache:
            _, model, stats, log = cache[key]
            self.model = copy.deepcopy(model)
            self.score_mean, self.rater_std = stats
            self.fit_log = list(log)
            self.prior_shared = True
            return
        targets = generic_targets(self._giaa_train_ratings(data) if self.config.giaa_train_only else data)
        x = np.asarray(data.features[targets.image_index], dtype=np.float32)
        with torch_seeded(seed, "giaa-init"):
            self.model = self._build(data.feature_dim)
        self.model.standardize.fit(x)
        cfg = self.config
        # Images seen by more raters have a less noisy consensus: weight by the number of raters.
        self.fit_log = fit_regressor(
            self.model, x, targets.target,
            epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
            val_fraction=cfg.val_fraction, patience=cfg.patience, seed=seed,
            weights=targets.n_raters.astype(np.float32), progress=progress, label="giaa prior",
        )
        if self.config.giaa_train_only:
            self.fit_log.append({"event": "giaa_split", **self.giaa_split_used})
        self.score_mean, self.rater_std = targets.score_mean, targets.rater_std
        self.prior_shared = False
        if cache is not None:  # keep `data` referenced so its id cannot be reused while cached
            cache[key] = (data, copy.deepcopy(self.model), (self.score_mean, self.rater_std), list(self.fit_log))

    def _giaa_train_ratings(self, data: RaterDataset) -> RaterDataset:
        """`data` with only the ratings of images its published image split puts in GIAA-train (targets
        and their standardisation then never see a GIAA-test image), so the prior can be scored on
        the GIAA-test images."""
        split = data.image_split()
        if split is None:
            raise ConfigError(f"giaa_train_only: dataset {data.name!r} has no image split (giaa_split.csv, written when PARA is imported with its GIAA files)")
        train_images = split.index[split.to_numpy() == "train"]
        keep = data.ratings["image_index"].isin(train_images).to_numpy()
        users = set(data.users_in("train"))
        in_train = data.ratings["user"].isin(users).to_numpy()
        if not (keep & in_train).any():
            raise ConfigError(f"giaa_train_only: none of the train raters' images of {data.name!r} is in the GIAA-train split")
        self.giaa_split_used = {
            "train_images": int(data.ratings.loc[keep & in_train, "image_index"].nunique()),
            "left_out_images": int(data.ratings.loc[~keep & in_train, "image_index"].nunique()),
        }
        return dataclasses.replace(data, ratings=data.ratings[keep].reset_index(drop=True))

    def generic_z(self, x: np.ndarray) -> np.ndarray:
        """The prior on the standardised scale (0 = an average image, 1 = one rater-std better)."""
        self.check_fitted()
        return predict_batched(self.model, self.check_features(x))

    def generic_score(self, x: np.ndarray) -> np.ndarray:
        return self.score_from_z(self.generic_z(x))

    def score_from_z(self, z: np.ndarray) -> np.ndarray:
        """`generic_z` outputs mapped onto the dataset's score scale."""
        lo, hi = self.score_range
        return np.clip(self.score_mean + self.rater_std * z, lo, hi)

    def shared_representation(self, x: np.ndarray) -> np.ndarray | None:
        """The generic network's output: every user model of this family starts from it. [n, 1]"""
        return self.generic_z(x)[:, None]

    def adapt(self, x_support, y_support, *, big_five=None, seed: int = 0) -> UserModel:
        return GenericUserModel(self)

    def user_model_from_state(self, state) -> UserModel:
        return GenericUserModel(self)  # nothing is personal

    def state_dict(self) -> dict[str, torch.Tensor]:
        self.check_fitted()
        state = {f"prior.{k}": v for k, v in self.model.state_dict().items()}
        state["prior_stats"] = torch.tensor([self.score_mean, self.rater_std], dtype=torch.float64)
        return state

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        dim = int(state["prior.standardize.mean"].shape[0])
        self.model = self._build(dim)
        self.model.load_state_dict({k[len("prior."):]: v for k, v in state.items() if k.startswith("prior.")})
        self.model.eval()
        self.score_mean, self.rater_std = (float(v) for v in state["prior_stats"])
