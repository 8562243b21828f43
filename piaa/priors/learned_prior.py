"""`learned-prior`: an empirical-Bayes Gaussian prior over raters' linear heads, Big-Five as its mean.

Each rater scores an image as offset + φ(x) · w_u, with φ the design of `piaa.priors.design` (generic
score, PA-IAA personality outputs, principal components of the features). The prior w_u ~ N(μ, FFᵀ +
diag d) and the rating noise are fitted on training raters by marginal likelihood (EM, see
`piaa.priors.gaussian`); its rank and a noise multiplier are chosen on validation raters (a seeded
split of the training raters), then the prior is refitted on all training raters.

Adapting is the closed-form posterior mean. A rater whose Big-Five is known starts from a shifted
mean: PA-IAA's link turns Big-Five into weights on p (w(b) = M b / a, score points per unit of p,
learned from what personality raters liked), added on the p columns. So the same method is the
Big-Five prediction at 0 shots, a shrunk posterior at 10 and mostly the rater's own fit at 100.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from piaa.errors import ConfigError, DataError
from piaa.method import Method, MethodConfig, UserModel
from piaa.priors.design import N_HEAD_COLUMNS, HeadDesign, as_f64, NumpyPANet, fit_networks, image_folds, training_rows
from piaa.priors.generic import consensus_targets, fit_generic_networks
from piaa.priors.gaussian import HeadPrior, fit_head_prior, posterior, rater_moments
from piaa.one_se import mean_score, one_se_choice
from piaa.priors.validation import split_raters, validation_scores
from piaa.tasks.format import RaterDataset

if TYPE_CHECKING:  # torch only to save: loading reads numpy arrays too, so `piaa adapt` needs no torch
    import torch


@dataclass(frozen=True)
class LearnedPriorConfig(MethodConfig):
    components: int = 24  # principal components of the features in the design (beside s and p)
    ranks: tuple[int, ...] = (0, 3, 6, 9)  # low-rank part of the prior covariance: the smallest within one paired SE of the best on validation raters
    noise_scales: tuple[float, ...] = (0.7, 1.0, 1.4)  # multipliers of the fitted rating noise: chosen likewise
    validation_fraction: float = 0.2  # share of training raters held out to choose rank and noise
    validation_shots: tuple[int, ...] = (10, 100)
    validation_repeats: int = 2
    em_iterations: int = 100
    link_spread: bool = True  # widen a Big-Five rater's prior by the spread of Big-Five shifts (so ratings can undo it)
    min_ratings: int = 10  # training raters with fewer ratings do not inform the prior
    network_epochs: int = 60  # epochs of the PA-IAA networks behind s and p
    folds: int = 3  # cross-fitting folds of the training images (one network each)
    generic: str = "pcs"  # the s column: "pcs" (piaa.priors.generic) or "pa-iaa" (the PA-IAA nets' score)
    generic_folds: int = 5  # cross-fitting folds of the generic networks (0: `folds`); cheap, so more than `folds`
    threads: int = 1


class HeadUserModel(UserModel):
    """offset + (φ(x) − centre) · head: one rater's posterior head over the method's design."""

    def __init__(self, design: HeadDesign, head: np.ndarray, x_center: np.ndarray, offset: float, score_range):
        self.design, self.head, self.x_center, self.offset, self.score_range = design, head, x_center, offset, score_range

    def predict(self, x: np.ndarray) -> np.ndarray:
        lo, hi = self.score_range
        return np.clip(self.offset + (self.design(x) - self.x_center) @ self.head, lo, hi)

    def state_dict(self) -> dict[str, torch.Tensor]:
        import torch

        return {
            "head": torch.from_numpy(self.head.astype(np.float64)),
            "x_center": torch.from_numpy(self.x_center.astype(np.float64)),
            "offset": torch.tensor([self.offset], dtype=torch.float64),
        }

    def predict_from_shared(self, shared: np.ndarray | None, x: np.ndarray) -> np.ndarray:
        """`predict` from the design rows φ(x) (`HeadMethod.shared_representation`): one matrix-vector product."""
        if shared is None:
            return self.predict(x)
        lo, hi = self.score_range
        out = shared @ self.head  # (φ - c)·h = φ·h - c·h: no [n, dim] temporary
        out += self.offset - self.x_center @ self.head
        return np.clip(out, lo, hi, out=out)


class HeadMethod(Method):
    """What `learned-prior` and `task-vector` share: the design, the pool centre, profiles."""

    def __init__(self, config=None, **overrides):
        super().__init__(config, **overrides)
        if self.config.generic not in ("pcs", "pa-iaa"):
            raise ConfigError(f"{self.name}: generic must be 'pcs' or 'pa-iaa', got {self.config.generic!r}")
        self.design: HeadDesign | None = None
        self.pool_center: np.ndarray | None = None  # design mean over training images (0-shot centre)
        self.pool_offset = 0.0  # mean training score (0-shot offset; irrelevant to rankings)

    def _fit_design(self, data: RaterDataset, *, seed: int) -> tuple[list, list[tuple[np.ndarray, np.ndarray]]]:
        """Train the networks, build the design; return (pa-iaa models, per-train-rater (rows, scores))."""
        self._remember_data(data)
        if not data.users_in("train"):
            raise DataError("users.csv", f"dataset {data.name!r} has no train raters; {self.name} learns its prior from them", field="split")
        rows = training_rows(data)
        fold = image_folds(len(rows), self.config.folds, seed=seed)
        bases = fit_networks(data, rows, fold, seed=seed, threads=self.config.threads, epochs=self.config.network_epochs)
        self._net_state = {}
        for i, base in enumerate(bases):
            self._net_state.update({f"net{i}.{k[len('net.'):]}": v for k, v in base.state_dict().items() if k.startswith("net.")})
        nets = [NumpyPANet.from_state(self._net_state, f"net{i}.") for i in range(len(bases))]
        x_train = np.asarray(data.features[rows], dtype=np.float32)
        fit_generic, generic_fold = None, fold
        if self.config.generic == "pcs":
            if self.config.generic_folds and self.config.generic_folds != self.config.folds:
                generic_fold = image_folds(len(rows), self.config.generic_folds, seed=seed)
            target, count = consensus_targets(data, rows)
            fit_generic = lambda pcs: fit_generic_networks(  # noqa: E731
                pcs, target, count, generic_fold, seed=seed, epochs=self.config.network_epochs, threads=self.config.threads)
        self.design = HeadDesign.fit(nets, x_train, self.config.components, fit_generic)
        self.pool_center = self.design(x_train).mean(axis=0)
        phi = self.design.out_of_fold(x_train, fold, generic_fold)
        self.pool_offset = float(data.ratings.loc[data.ratings["user"].isin(set(data.users_in("train"))), "score"].mean())
        raters = [
            (phi[np.searchsorted(rows, r.image_index)], r.scores.astype(np.float64))
            for r in data.raters("train") if len(r) >= self.config.min_ratings
        ]
        if len(raters) < 6:
            raise DataError("ratings.csv", f"{self.name} needs at least 6 train raters with {self.config.min_ratings}+ ratings, got {len(raters)}")
        return bases, raters

    def _user_model(self, head: np.ndarray, x_center: np.ndarray, offset: float) -> HeadUserModel:
        self.check_fitted("design")
        return HeadUserModel(self.design, head, x_center, offset, self.score_range)

    def user_model_from_state(self, state) -> UserModel:
        return self._user_model(as_f64(state["head"]), as_f64(state["x_center"]), float(as_f64(state["offset"])[0]))

    def _design_state(self) -> dict[str, torch.Tensor]:
        import torch

        self.check_fitted("design")
        state = {k: torch.as_tensor(v).clone() for k, v in self._net_state.items()}  # numpy after a torch-free load
        state.update(self.design.state_dict())
        state["pool"] = torch.from_numpy(np.concatenate([[self.pool_offset], self.pool_center]))
        return state

    def _load_design_state(self, state: Mapping[str, torch.Tensor]) -> None:
        self._net_state = {k: v for k, v in state.items() if k.startswith("net")}
        self.design = HeadDesign.from_state(state)
        pool = as_f64(state["pool"])
        self.pool_offset, self.pool_center = float(pool[0]), pool[1:].copy()

    def shared_representation(self, x: np.ndarray) -> np.ndarray | None:
        """The design φ(x): networks and principal components, the same for every rater."""
        self.check_fitted("design")
        return self.design(self.check_features(x))


class LearnedPrior(HeadMethod):
    Config = LearnedPriorConfig
    loads_numpy_state = True  # load_state_dict reads numpy arrays: loading a run imports no torch
    summary = "empirical-Bayes Gaussian prior over raters' linear heads (low rank + diagonal), Big-Five as its mean; closed-form posterior"
    fitted_attributes = ("design", "prior")

    @property
    def uses_big_five(self) -> bool:
        # Big-Five shift the prior's mean only through the link learned from training raters.
        return self.link_matrix is not None

    def __init__(self, config: LearnedPriorConfig | None = None, **overrides):
        super().__init__(config, **overrides)
        cfg = self.config
        if not cfg.ranks or min(cfg.ranks) < 0 or not cfg.noise_scales or min(cfg.noise_scales) <= 0:
            raise ConfigError("LearnedPriorConfig: ranks must be >= 0 and noise_scales > 0 (at least one each)")
        self.prior: HeadPrior | None = None
        self.link_matrix: np.ndarray | None = None  # [5, 5] PA-IAA's M / a, in standardised p units
        self.link_spread: np.ndarray | None = None  # [5, 5] square root of the shifts' covariance
        self.link_center: np.ndarray = np.zeros(5)  # Big-Five the link is centred on (PA-IAA's link from ratings)
        self.selection: list[dict[str, float]] = []

    def fit(self, data: RaterDataset, *, seed: int = 0, progress: bool = False, checkpoint_dir=None) -> "LearnedPrior":
        cfg = self.config
        bases, raters = self._fit_design(data, seed=seed)
        fit_pos, val_pos = split_raters(len(raters), cfg.validation_fraction, seed=seed, name=self.name)
        moments = rater_moments([raters[i] for i in fit_pos])
        held = [raters[i] for i in val_pos]
        ranks = sorted({min(r, self.design.dim) for r in cfg.ranks})
        self.selection, per_rater = [], {}
        for rank in ranks:
            prior, _ = fit_head_prior(moments, rank=rank, iterations=cfg.em_iterations)
            for scale in cfg.noise_scales:
                candidate = prior.with_noise(prior.noise * scale)
                per_rater[rank, scale] = validation_scores(_adapter(candidate), held, shots=cfg.validation_shots, repeats=cfg.validation_repeats, seed=seed)
                self.selection.append({"rank": rank, "noise_scale": float(scale), "validation_srocc": mean_score(per_rater[rank, scale])})
        # Per rank its best noise; then the smallest rank within one paired SE of the best rank (piaa.one_se).
        noise_of = {rank: max(cfg.noise_scales, key=lambda sc: (mean_score(per_rater[rank, sc]), -abs(np.log(sc)))) for rank in ranks}
        choice = one_se_choice({rank: per_rater[rank, noise_of[rank]] for rank in ranks})
        best = {"rank": choice.chosen, "noise_scale": float(noise_of[choice.chosen]), "validation_srocc": choice.mean[choice.chosen],
                "argmax_rank": choice.best, "validation_srocc_argmax": choice.mean[choice.best], "se_vs_argmax": choice.se[choice.chosen]}
        prior, history = fit_head_prior(rater_moments(raters), rank=int(best["rank"]), iterations=cfg.em_iterations)
        self.prior = prior.with_noise(prior.noise * best["noise_scale"])
        self.link_matrix = self._link_in_design(bases)
        self.link_spread = self._link_spread(data) if self.link_matrix is not None and self.config.link_spread else None
        self.fit_log = [
            {"event": "selection", "table": self.selection, "chosen": best, "validation_raters": len(held), "fit_raters": len(fit_pos)},
            {"event": "big-five link", "available": self.link_matrix is not None, "spread_added": self.link_spread is not None},
            {"event": "prior", "rank": self.prior.rank, "noise": self.prior.noise, "em_iterations": len(history), "log_likelihood": history[-1], "raters": len(raters)},
        ]
        return self

    def _link_in_design(self, bases: list) -> np.ndarray | None:
        """PA-IAA's w(b) = M b / a is in score points per unit of p at γ = 1 (averaged over the
        cross-fitted nets, as p is); the design's p columns are standardised and its s column carries
        the prior's own γ, so scale by γ and by p's spread."""
        if any(base.link is None or not base.personality_available for base in bases):
            return None
        self.check_fitted("design", "prior")
        link = np.mean([base.link.matrix / base.link.generic_coef for base in bases], axis=0)
        centers = [base.link.center for base in bases if getattr(base.link, "center", None) is not None]
        self.link_center = np.mean(centers, axis=0) if centers else np.zeros(5)
        gamma = self.prior.mean[0] / self.design.head_scale[0]  # score points per point of s
        return gamma * self.design.head_scale[1:N_HEAD_COLUMNS, None] * link

    def _link_spread(self, data: RaterDataset) -> np.ndarray:
        """[5, 5] square root of the covariance of the Big-Five shift over raters with known Big-Five
        (the personality raters; never test raters). Added to the prior covariance of a rater whose
        Big-Five is known: the shift is a prediction, not a certainty, so the rater's own ratings
        must be able to take it back as easily as it was given."""
        from piaa.tasks.format import BIG_FIVE

        assert self.link_matrix is not None
        known = data.users[data.users["split"] == "personality"][list(BIG_FIVE)].dropna().to_numpy(np.float64)
        if len(known) < 2:  # PARA-like: no personality raters, but the train raters' Big-Five is known
            known = data.users[data.users["split"] == "train"][list(BIG_FIVE)].dropna().to_numpy(np.float64)
        if len(known) < 2:
            return np.zeros((5, 5))
        cov_b5 = np.cov(known.T) + 1e-9 * np.eye(5)
        return self.link_matrix @ np.linalg.cholesky(cov_b5)

    def prior_for(self, big_five: np.ndarray | None) -> HeadPrior:
        self.check_fitted("prior")
        if big_five is None or self.link_matrix is None:
            return self.prior
        b5 = np.asarray(big_five, dtype=np.float64).reshape(-1)
        if b5.shape != (5,) or not np.isfinite(b5).all():
            raise ConfigError(f"Big-Five must be 5 finite numbers (O, C, E, A, N), got {big_five!r}")
        mean = self.prior.mean.copy()
        mean[1:N_HEAD_COLUMNS] += self.link_matrix @ (b5 - self.link_center)
        prior = self.prior.with_mean(mean)
        if self.link_spread is None:
            return prior
        extra = np.zeros((len(mean), 5))
        extra[1:N_HEAD_COLUMNS] = self.link_spread
        return HeadPrior(prior.mean, np.concatenate([prior.factors, extra], axis=1), prior.diag, prior.noise)

    def adapt(self, x_support, y_support, *, big_five=None, seed: int = 0) -> UserModel:
        self.check_fitted("design")
        y = np.asarray(y_support, dtype=np.float64)
        prior = self.prior_for(big_five)
        if len(y) == 0:
            return self._user_model(prior.mean.copy(), self.pool_center, self.pool_offset)
        phi = self.design(self.check_features(x_support, "support features"))
        head, x_center, offset = posterior(phi, y, prior)
        return self._user_model(head, x_center, offset)

    def state_dict(self) -> dict[str, torch.Tensor]:
        import torch

        self.check_fitted("prior")
        f64 = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))  # noqa: E731
        state = self._design_state()
        state.update({"prior.mean": f64(self.prior.mean), "prior.factors": f64(self.prior.factors), "prior.diag": f64(self.prior.diag), "prior.noise": f64([self.prior.noise])})
        if self.link_matrix is not None:
            state["link"] = f64(self.link_matrix)
        if self.link_spread is not None:
            state["link_spread"] = f64(self.link_spread)
        if np.any(self.link_center):
            state["link_center"] = f64(self.link_center)
        return state

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        self._load_design_state(state)
        get = lambda k: as_f64(state[k])  # noqa: E731  (tensors or numpy arrays)
        self.prior = HeadPrior(get("prior.mean"), get("prior.factors"), get("prior.diag"), float(get("prior.noise")[0]))
        self.link_matrix = get("link") if "link" in state else None
        self.link_spread = get("link_spread") if "link_spread" in state else None
        self.link_center = get("link_center") if "link_center" in state else np.zeros(5)

    def extra_state(self) -> dict[str, Any]:
        return {**super().extra_state(), "selection": self.selection}

    def load_extra_state(self, extra: Mapping[str, Any]) -> None:
        super().load_extra_state(extra)
        self.selection = list(extra.get("selection") or [])


def _adapter(prior: HeadPrior):
    def adapt(phi: np.ndarray, y: np.ndarray):
        head, xm, ym = posterior(phi, y, prior)
        return lambda q: ym + (q - xm) @ head

    return adapt
