"""`user-mean`: the generic prior shifted by the rater's bias; nothing else is personalised.

The oldest baseline in recommender systems and in PIAA: a rater is the average rater plus a constant
offset (how much more generous or harsh they are than the generic score on their shots). The offset
is shrunk toward the population's average offset with an empirical-Bayes weight n / (n + kappa),
where kappa (within-rater noise over between-rater bias variance) is estimated on training raters.

A constant shift does not change the order of predictions, so this baseline's SROCC equals giaa's
exactly; it only improves PLCC-scale agreement and absolute error. It is in the table to show how
much of a method's gain is plain bias.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch

from piaa.baselines.giaa import GenericPrior, GIAAConfig
from piaa.method import UserModel
from piaa.tasks.format import RaterDataset


@dataclass(frozen=True)
class UserMeanConfig(GIAAConfig):
    shrink: bool = True  # empirical-Bayes shrinkage of the offset; False uses the raw mean offset


class UserMeanModel(UserModel):
    def __init__(self, method: "UserMean", offset: float):
        self.method, self.offset = method, offset

    def predict(self, x: np.ndarray) -> np.ndarray:
        lo, hi = self.method.score_range
        return np.clip(self.method.generic_score(x) + self.offset, lo, hi)

    def predict_from_shared(self, shared: np.ndarray | None, x: np.ndarray) -> np.ndarray:
        if shared is None:
            return self.predict(x)
        lo, hi = self.method.score_range
        return np.clip(self.method.score_from_z(shared[:, 0]) + self.offset, lo, hi)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"offset": torch.tensor([self.offset], dtype=torch.float64)}


class UserMean(GenericPrior):
    Config = UserMeanConfig
    summary = "generic prior + the rater's mean offset (bias only; same SROCC as giaa)"

    def __init__(self, config: UserMeanConfig | None = None, **overrides):
        super().__init__(config, **overrides)
        self.bias_mean, self.kappa = 0.0, 0.0

    def fit(self, data: RaterDataset, *, seed: int = 0, progress: bool = False, checkpoint_dir=None) -> "UserMean":
        self._fit_prior(data, seed=seed, progress=progress)
        self.bias_mean, self.kappa = offset_prior(self, data)
        return self

    def adapt(self, x_support, y_support, *, big_five=None, seed: int = 0) -> UserModel:
        y = np.asarray(y_support, dtype=np.float64)
        if len(y) == 0:
            return UserMeanModel(self, self.bias_mean)
        raw = float(np.mean(y - self.generic_score(self.check_features(x_support, "support features"))))
        if not self.config.shrink:
            return UserMeanModel(self, raw)
        weight = len(y) / (len(y) + self.kappa)
        return UserMeanModel(self, weight * raw + (1.0 - weight) * self.bias_mean)

    def user_model_from_state(self, state: Mapping[str, torch.Tensor]) -> UserModel:
        """Rebuild a rater's model from `UserMeanModel.state_dict()` (stored profiles)."""
        return UserMeanModel(self, float(state["offset"][0]))

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = super().state_dict()
        state["offset_prior"] = torch.tensor([self.bias_mean, self.kappa], dtype=torch.float64)
        return state

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        super().load_state_dict(state)
        self.bias_mean, self.kappa = (float(v) for v in state["offset_prior"])


def offset_prior(method: GenericPrior, data: RaterDataset) -> tuple[float, float]:
    """(mean offset, kappa) over training raters: kappa = within-rater variance / between-rater variance."""
    g = method.generic_score(np.asarray(data.features))
    means, within, counts = [], [], []
    for rater in data.raters("train"):
        if len(rater) < 2:
            continue
        r = rater.scores.astype(np.float64) - g[rater.image_index]
        means.append(r.mean())
        within.append(r.var(ddof=1))
        counts.append(len(r))
    if len(means) < 2:
        return 0.0, 0.0
    means_a, within_a, counts_a = np.array(means), np.array(within), np.array(counts)
    sigma2 = float(np.mean(within_a))
    # The spread of observed means includes sampling noise sigma2 / n; what remains is true bias.
    tau2 = max(float(np.var(means_a, ddof=1) - np.mean(within_a / counts_a)), 1e-6)
    return float(np.mean(means_a)), sigma2 / tau2
