"""`task-vector`: a new rater is the prior head plus a combination of training raters' task vectors.

After Yun & Choo, "Scaling Up Personalized Image Aesthetic Assessment via Task Vector Customization",
ECCV 2024 (arXiv:2407.07176). There, models are fine-tuned from one pretrained model on several
generic aesthetics and quality databases; each fine-tuned-minus-pretrained weight difference is a task
vector, and a user's model is the pretrained one plus a combination of task vectors whose (layer-wise)
coefficients are optimised on the user's few images with a ranking loss.

Here, as issue 10 asks, the tasks are the training raters and the model is a linear head over the
design of `piaa.priors.design` (the same rows as `learned-prior`):

    prior head μ        pooled least squares over all training raters (the generic head)
    task vector τ_u     rater u's head fine-tuned from μ (ridge towards μ) minus μ
    new rater           w = μ + Σ_u c_u τ_u, with c fitted on the support set by ridge regression
                        (strength λ chosen on validation raters, a split of the training raters)

What differs from the paper: rater-derived rather than database-derived task vectors; one
coefficient per task vector for the whole head rather than per layer; squared error with an L2 penalty
(closed form, milliseconds) rather than a ranking loss optimised by gradient descent; and a head over
fixed feature vectors rather than a fine-tuned image backbone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch

from piaa.errors import ConfigError
from piaa.method import MethodConfig, UserModel
from piaa.priors.gaussian import center, rater_moments
from piaa.priors.learned_prior import HeadMethod
from piaa.priors.validation import split_raters, validation_srocc
from piaa.tasks.format import RaterDataset


@dataclass(frozen=True)
class TaskVectorConfig(MethodConfig):
    components: int = 24  # principal components of the features in the design (beside s and p)
    finetune_strength: float = 1.0  # ridge pull of each training rater's head towards μ (relative to its gram's mean diagonal)
    lambdas: tuple[float, ...] = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)  # coefficient ridge, relative: chosen on validation raters
    validation_fraction: float = 0.2
    validation_shots: tuple[int, ...] = (10, 100)
    validation_repeats: int = 2
    min_ratings: int = 10
    network_epochs: int = 60
    folds: int = 3
    generic: str = "pcs"  # the s column: "pcs" (piaa.priors.generic) or "pa-iaa" (the PA-IAA nets' score)
    generic_folds: int = 5  # cross-fitting folds of the generic networks (0: `folds`); cheap, so more than `folds`
    threads: int = 1


def prior_head(moments) -> np.ndarray:
    """μ: one head for everyone, least squares pooled over the raters' centred rows."""
    gram, rhs = moments.gram.sum(axis=0), moments.rhs.sum(axis=0)
    dim = len(rhs)
    return np.linalg.solve(gram + 1e-6 * np.trace(gram) / dim * np.eye(dim), rhs)


def task_vectors(moments, mu: np.ndarray, strength: float) -> np.ndarray:
    """[U, D] τ_u = argmin ‖y − X w‖² + ρ_u ‖w − μ‖² − μ, with ρ_u = strength × mean diagonal of X_uᵀX_u."""
    dim = len(mu)
    rho = strength * np.trace(moments.gram, axis1=1, axis2=2) / dim
    a = moments.gram + rho[:, None, None] * np.eye(dim)
    return np.linalg.solve(a, (moments.rhs - moments.gram @ mu)[..., None])[..., 0]


def combine(x: np.ndarray, y: np.ndarray, mu: np.ndarray, basis: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray, float]:
    """(head, design centre, score centre): μ + basisᵀ c, c = argmin ‖r − X basisᵀ c‖² + λ' ‖c‖².

    λ' = λ × the mean squared norm of the support's projected rows, so λ means the same at any k.
    Solved in the k×k space of the support (k ≪ number of task vectors).
    """
    if len(y) == 0:
        return mu.copy(), np.zeros_like(mu), 0.0
    xc, yc, xm, ym = center(x, y)
    z = xc @ basis.T  # [k, U]
    kernel = z @ z.T
    lam_abs = lam * max(float(np.trace(kernel)) / len(yc), 1e-12)
    alpha = np.linalg.solve(kernel + lam_abs * np.eye(len(yc)), yc - xc @ mu)
    return mu + basis.T @ (z.T @ alpha), xm, ym


class TaskVector(HeadMethod):
    Config = TaskVectorConfig
    summary = "task-vector PIAA (Yun & Choo, ECCV 2024): prior head + ridge combination of training raters' task vectors"
    fitted_attributes = ("design", "mu", "basis")

    def __init__(self, config: TaskVectorConfig | None = None, **overrides):
        super().__init__(config, **overrides)
        if not self.config.lambdas or min(self.config.lambdas) <= 0 or self.config.finetune_strength <= 0:
            raise ConfigError("TaskVectorConfig: lambdas and finetune_strength must be > 0 (at least one λ)")
        self.mu: np.ndarray | None = None
        self.basis: np.ndarray | None = None
        self.lam = float("nan")
        self.selection: list[dict[str, float]] = []

    def fit(self, data: RaterDataset, *, seed: int = 0, progress: bool = False, checkpoint_dir=None) -> "TaskVector":
        cfg = self.config
        _, raters = self._fit_design(data, seed=seed)
        fit_pos, val_pos = split_raters(len(raters), cfg.validation_fraction, seed=seed, name=self.name)
        moments = rater_moments([raters[i] for i in fit_pos])
        mu = prior_head(moments)
        basis = task_vectors(moments, mu, cfg.finetune_strength)
        held = [raters[i] for i in val_pos]
        self.selection = []
        for lam in cfg.lambdas:
            def adapter(phi, y, lam=lam):
                head, xm, ym = combine(phi, y, mu, basis, lam)
                return lambda q: ym + (q - xm) @ head
            score = validation_srocc(adapter, held, shots=cfg.validation_shots, repeats=cfg.validation_repeats, seed=seed)
            self.selection.append({"lambda": float(lam), "validation_srocc": score})
        best = max(self.selection, key=lambda row: np.nan_to_num(row["validation_srocc"], nan=-1.0))
        self.lam = float(best["lambda"])
        everyone = rater_moments(raters)
        self.mu = prior_head(everyone)
        self.basis = task_vectors(everyone, self.mu, cfg.finetune_strength)
        self.fit_log = [{"event": "selection", "table": self.selection, "chosen": best, "validation_raters": len(held), "fit_raters": len(fit_pos), "task_vectors": int(len(self.basis))}]
        return self

    def adapt(self, x_support, y_support, *, big_five=None, seed: int = 0) -> UserModel:
        self.check_fitted("design", "mu")
        y = np.asarray(y_support, dtype=np.float64)
        if len(y) == 0:
            return self._user_model(self.mu.copy(), self.pool_center, self.pool_offset)
        phi = self.design(self.check_features(x_support, "support features"))
        head, x_center, offset = combine(phi, y, self.mu, self.basis, self.lam)
        return self._user_model(head, x_center, offset)

    def state_dict(self) -> dict[str, torch.Tensor]:
        self.check_fitted("mu", "basis")
        state = self._design_state()
        state.update({"mu": torch.from_numpy(self.mu.copy()), "basis": torch.from_numpy(self.basis.copy()), "lambda": torch.tensor([self.lam], dtype=torch.float64)})
        return state

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        self._load_design_state(state)
        self.mu = state["mu"].double().numpy().copy()
        self.basis = state["basis"].double().numpy().copy()
        self.lam = float(state["lambda"][0])

    def extra_state(self) -> dict[str, Any]:
        return {**super().extra_state(), "selection": self.selection}

    def load_extra_state(self, extra: Mapping[str, Any]) -> None:
        super().load_extra_state(extra)
        self.selection = list(extra.get("selection") or [])
