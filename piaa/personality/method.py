"""`pa-iaa`: the personality-assisted multi-task method as a registered Method.

fit: train trunk + heads (alternating batches), report the personality head on held-out personality
raters, learn the Big-Five → taste link (from training raters' own ratings where their Big-Five is
known, as in PARA; else from personality raters' likes, as with PsychoFlickr), and estimate the taste
prior from train raters. `personality["link"]["source"]` and `notes()` say which link was used.
adapt: posterior (γ, w) of s_user = offset + γ · s_generic + w · p from the support set, around the
Big-Five prediction when the rater's Big-Five is known (0 shots: the prediction alone).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch

from piaa.errors import ConfigError, DataError
from piaa.method import Method, MethodConfig, UserModel
from piaa.personality.data import (
    generic_distributions,
    personality_examples,
    personality_unavailable,
    rated_big_five_raters,
    rating_examples,
    score_bins,
)
from piaa.personality.fusion import FittedTaste, TastePrior, design, estimate_taste_prior, posterior_taste
from piaa.personality.link import TasteLink, fit_taste_link, fit_taste_link_from_ratings, rater_tastes, select_link_l2
from piaa.personality.losses import DISTRIBUTION_LOSSES
from piaa.personality.model import PersonalityAssistedNet, predict_heads, torch_threads
from piaa.personality.training import TaskData, personality_quality, train_multitask
from piaa.seeding import numpy_rng, torch_seeded
from piaa.tasks.format import BIG_FIVE, RaterDataset, parse_big_five


LINK_SOURCES = ("auto", "ratings", "likes")


@dataclass(frozen=True)
class PAIAAConfig(MethodConfig):
    trunk: tuple[int, ...] = (256, 128)
    dropout: float = 0.2
    aesthetics_loss: str = "l2"  # "l2" (squared L2 on the distribution, as released) or "emd"
    personality_weight: float = 1.0  # scale of the personality loss in the alternating updates
    lr: float = 1e-3
    weight_decay: float = 1e-4
    epochs: int = 60
    batch_size: int = 128
    patience: int = 10
    val_fraction: float = 0.1  # held-out images for the aesthetics head's early stopping
    personality_holdout: float = 0.2  # held-out personality raters (early stopping + the quality report)
    link_l2: tuple[float, ...] = (1e-5,)  # shrinkage of the Big-Five → taste matrix; several values: chosen by CV
    link_folds: int = 4  # cross-validation folds over personality raters that pick the shrinkage
    prior_floor: float = 0.05  # smallest prior variance, relative to the average taste variance
    min_prior_ratings: int = 20  # train raters with fewer ratings do not inform the taste prior
    link_source: str = "auto"  # Big-Five → taste link: "ratings" (train raters' Big-Five), "likes", or "auto"
    link_ratings_l2: float = 0.05  # ridge of the link learned from ratings (per rater, relative to the Big-Five spread)
    min_link_raters: int = 10  # "auto" learns the link from ratings when this many train raters have a Big-Five
    threads: int = 1  # torch threads while training and scoring (0: torch's default)


class PAUserModel(UserModel):
    def __init__(self, method: "PersonalityAssisted", fitted: FittedTaste, zero_shot: bool):
        self.method, self.fitted, self.zero_shot = method, fitted, zero_shot

    def predict(self, x: np.ndarray) -> np.ndarray:
        lo, hi = self.method.score_range
        return np.clip(self.fitted.predict(self.method.design(x)), lo, hi)

    def predict_from_shared(self, shared: np.ndarray | None, x: np.ndarray) -> np.ndarray:
        if shared is None:
            return self.predict(x)
        lo, hi = self.method.score_range
        f = self.fitted
        out = shared @ f.theta  # FittedTaste.predict without the [n, 6] centred copy
        out += f.offset - f.x_center @ f.theta
        return np.clip(out, lo, hi, out=out)

    def state_dict(self) -> dict[str, torch.Tensor]:
        f = self.fitted
        return {
            "offset": torch.tensor([f.offset], dtype=torch.float64),
            "x_center": torch.from_numpy(f.x_center.astype(np.float64)),
            "theta": torch.from_numpy(f.theta.astype(np.float64)),
        }


class PersonalityAssisted(Method):
    Config = PAIAAConfig
    summary = "personality-assisted multi-task model: s_generic + w·p(x), zero-shot from Big-Five (PA-IAA)"
    fitted_attributes = ("net", "prior")

    def __init__(self, config: PAIAAConfig | None = None, **overrides):
        super().__init__(config, **overrides)
        if self.config.aesthetics_loss not in DISTRIBUTION_LOSSES:
            raise ConfigError(f"PAIAAConfig.aesthetics_loss: expected one of {', '.join(DISTRIBUTION_LOSSES)}, got {self.config.aesthetics_loss!r}")
        if self.config.link_source not in LINK_SOURCES:
            raise ConfigError(f"PAIAAConfig.link_source: expected one of {', '.join(LINK_SOURCES)}, got {self.config.link_source!r}")
        self.net: PersonalityAssistedNet | None = None
        self.link: TasteLink | None = None
        self.prior: TastePrior | None = None
        self.pool_center: np.ndarray | None = None
        self.personality: dict[str, Any] = {"available": False, "reason": "not fitted"}

    # -- capabilities ----------------------------------------------------------------------------
    @property
    def personality_available(self) -> bool:
        return bool(self.personality.get("available"))

    @property
    def uses_big_five(self) -> bool:
        # Without a trained personality head there is nothing Big-Five could be mapped through.
        return self.personality_available

    def notes(self) -> list[str]:
        """What this fitted model cannot do (in words a user can act on), and where its link came from."""
        if self.personality_available:
            link = self.personality.get("link") or {}
            if link.get("source") == "ratings":
                return [f"pa-iaa: Big-Five link learned from {link.get('n_raters')} training raters' own ratings (their Big-Five is known)"]
            if link.get("source") == "likes":
                return [f"pa-iaa: Big-Five link learned from {link.get('n_raters')} personality raters' likes"]
            return []
        return [
            f"pa-iaa: personality head not trained ({self.personality.get('reason')}); personalisation only "
            "re-weights the generic score, and zero-shot prediction from Big-Five is unavailable"
        ]

    # -- learning --------------------------------------------------------------------------------
    def fit(self, data: RaterDataset, *, seed: int = 0, progress: bool = False, checkpoint_dir=None) -> "PersonalityAssisted":
        with torch_threads(self.config.threads):
            return self._fit(data, seed=seed, progress=progress)

    def _fit(self, data: RaterDataset, *, seed: int, progress: bool) -> "PersonalityAssisted":
        cfg = self.config
        self._remember_data(data)
        bins = score_bins(data.score_range)
        if not data.users_in("train"):
            raise DataError("users.csv", f"dataset {data.name!r} has no train raters; pa-iaa learns generic aesthetics and the taste prior from them", field="split")
        generic = generic_distributions(data, bins)
        rng = numpy_rng(seed, "pa-iaa", "split")
        order = rng.permutation(len(generic.image_index))
        n_val = int(round(len(order) * cfg.val_fraction)) if len(order) >= 20 else 0
        g_all = TaskData(
            x=np.asarray(data.features[generic.image_index], dtype=np.float32),
            y=generic.dist,
            w=generic.n_votes.astype(np.float32),
        )
        g_split = (g_all.take(order[n_val:]), g_all.take(order[:n_val]))

        likes_reason = personality_unavailable(data)
        rated = rated_big_five_raters(data, cfg.min_prior_ratings)
        link_source = cfg.link_source
        if link_source == "auto":
            link_source = "ratings" if len(rated) >= cfg.min_link_raters else "likes"
        if link_source == "ratings" and len(rated) < 2:
            raise ConfigError(f"pa-iaa link_source='ratings' needs train raters with a known Big-Five and {cfg.min_prior_ratings}+ ratings; {data.name!r} has {len(rated)}")
        reason = likes_reason if link_source == "likes" else None
        p_split, heldout = None, None
        if reason is None:
            # The personality head trains on likes where there are any, else on what Big-Five raters rated highly.
            head_source = "likes" if likes_reason is None else "ratings"
            ex = personality_examples(data) if head_source == "likes" else rating_examples(data, rated)
            raters = np.array(sorted(set(ex.user)), dtype=object)
            raters = raters[numpy_rng(seed, "pa-iaa", "holdout").permutation(len(raters))]
            n_hold = int(round(len(raters) * cfg.personality_holdout)) if len(raters) >= 5 else 0
            held = np.isin(ex.user, raters[:n_hold])
            p_all = TaskData(x=np.asarray(data.features[ex.image_index], dtype=np.float32), y=ex.big_five, w=np.ones(len(ex.user), np.float32))
            p_split = (p_all.take(np.flatnonzero(~held)), p_all.take(np.flatnonzero(held)))
            heldout = p_split[1]
        else:
            warnings.warn(f"pa-iaa: {reason}; training the aesthetics head only (no personality fusion, no zero-shot)", stacklevel=3)

        with torch_seeded(seed, "pa-iaa", "init"):
            self.net = PersonalityAssistedNet(data.feature_dim, bins, cfg.trunk, cfg.dropout)
        self.net.standardize.fit(g_all.x)
        self.fit_log = train_multitask(
            self.net, g_split, p_split,
            distribution_loss=DISTRIBUTION_LOSSES[cfg.aesthetics_loss], personality_weight=cfg.personality_weight,
            epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
            patience=cfg.patience, seed=seed, progress=progress,
        )

        if reason is None:
            quality = personality_quality(self.net, heldout.x, heldout.y) if len(heldout) else None
            self.personality = {"available": True, "reason": None, "heldout_raters": int(n_hold), "quality": quality, "head_source": head_source}
            if link_source == "likes":
                self._fit_link(data, generic.image_index, seed)
            else:
                self._fit_link_from_ratings(data, rated)
        else:
            self.personality = {"available": False, "reason": reason}
        self._fit_prior(data)
        self.fit_log.append({"event": "personality", **self.personality})
        return self

    def _fit_link(self, data: RaterDataset, generic_images: np.ndarray, seed: int) -> None:
        ex = personality_examples(data)
        pool = np.unique(np.concatenate([generic_images, ex.image_index]))
        s, _, p = predict_heads(self.net, np.asarray(data.features[pool], dtype=np.float32))
        raters = sorted(set(ex.user))
        pos = {u: i for i, u in enumerate(raters)}
        col = np.searchsorted(pool, ex.image_index)
        liked = np.zeros((len(raters), len(pool)))
        liked[[pos[u] for u in ex.user], col] = 1.0
        b5 = data.users.set_index("user").loc[raters, list(BIG_FIVE)].to_numpy(np.float64)
        l2, cv = select_link_l2(s, p, liked, b5, tuple(self.config.link_l2), folds=self.config.link_folds, seed=seed)
        self.link = fit_taste_link(s, p, liked, b5, l2=l2)
        w = self.link.weights(b5)
        self.personality["link"] = {
            "generic_coef": self.link.generic_coef,
            "l2": l2,
            "cv": cv,
            "n_raters": self.link.n_raters,
            "pool_images": int(len(pool)),
            "mean_abs_weight": float(np.mean(np.abs(w))),
            "source": "likes",
        }

    def _fit_link_from_ratings(self, data: RaterDataset, raters: list[str]) -> None:
        """The link from train raters with a known Big-Five: their own tastes regressed on their traits."""
        groups = []
        for user in raters:
            rater = data.rater(user)
            groups.append((self.design(data.features[rater.image_index]), rater.scores.astype(np.float64)))
        b5 = data.users.set_index("user").loc[raters, list(BIG_FIVE)].to_numpy(np.float64)
        self.link = fit_taste_link_from_ratings(groups, b5, l2=self.config.link_ratings_l2)
        thetas, kept = rater_tastes(groups, min_ratings=self.config.min_prior_ratings)
        w = self.link.weights(b5)
        self.personality["link"] = {
            "source": "ratings",
            "generic_coef": self.link.generic_coef,
            "l2": self.config.link_ratings_l2,
            "n_raters": self.link.n_raters,
            "mean_abs_weight": float(np.mean(np.abs(w))),
            "explained_taste_share": float(1 - np.var(thetas[:, 1:] - w[kept], axis=0).sum() / max(np.var(thetas[:, 1:], axis=0).sum(), 1e-12)) if kept.sum() > 1 else None,
        }

    def _fit_prior(self, data: RaterDataset) -> None:
        train = data.ratings[data.ratings["user"].isin(set(data.users_in("train")))]
        images = np.unique(train["image_index"].to_numpy())
        rows = self.design(data.features[images])  # one batched pass over the training images
        self.pool_center = rows.mean(axis=0)
        groups = []
        for rater in data.raters("train"):
            if len(rater) >= self.config.min_prior_ratings:
                groups.append((rows[np.searchsorted(images, rater.image_index)], rater.scores.astype(np.float64)))
        try:
            self.prior = estimate_taste_prior(groups, floor=self.config.prior_floor, min_ratings=self.config.min_prior_ratings)
        except ValueError as exc:
            raise DataError("ratings.csv", f"pa-iaa cannot estimate the taste prior: {exc}") from None

    # -- prediction ------------------------------------------------------------------------------
    def heads(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(generic score [n] on the dataset's scale, personality [n, 5] in [-1, 1])."""
        self.check_fitted("net")
        with torch_threads(self.config.threads):
            s, _, p = predict_heads(self.net, self.check_features(x))
        return s, p

    def generic_score(self, x: np.ndarray) -> np.ndarray:
        return self.heads(x)[0]

    def shared_representation(self, x: np.ndarray) -> np.ndarray | None:
        """The fusion design [s_generic, p]: the network's outputs, the same for every user."""
        return self.design(x)

    def design(self, x: np.ndarray) -> np.ndarray:
        """The fusion design: [s_generic, p] when personality is available, else [s_generic]."""
        s, p = self.heads(x)
        return design(s, p) if self.personality_available else s[:, None].astype(np.float64)

    def prior_for(self, big_five: np.ndarray | None) -> TastePrior:
        self.check_fitted()
        if big_five is None or not self.personality_available or self.link is None:
            return self.prior
        b5 = parse_big_five(big_five, error=lambda message: ConfigError(f"Big-Five: {message}"))
        return self.prior.given_big_five(self.link.weights(b5))

    def adapt(self, x_support, y_support, *, big_five=None, seed: int = 0) -> UserModel:
        y = np.asarray(y_support, dtype=np.float64)
        prior = self.prior_for(big_five)
        x = self.design(x_support) if len(y) else np.zeros((0, len(prior.mean)))
        fitted = posterior_taste(x, y, prior, pool_center=self.pool_center)
        return PAUserModel(self, fitted, zero_shot=len(y) == 0)

    # -- state -----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        self.check_fitted()
        f64 = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))  # noqa: E731
        state = {f"net.{k}": v for k, v in self.net.state_dict().items()}
        state.update({"prior.mean": f64(self.prior.mean), "prior.cov": f64(self.prior.cov), "prior.noise": f64([self.prior.noise]), "pool_center": f64(self.pool_center)})
        if self.link is not None:
            state.update({"link.matrix": f64(self.link.matrix), "link.generic_coef": f64([self.link.generic_coef])})
            if self.link.center is not None:
                state["link.center"] = f64(self.link.center)
        return state

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        dim = int(state["net.standardize.mean"].shape[0])
        bins = state["net.bins"].numpy()
        self.net = PersonalityAssistedNet(dim, bins, self.config.trunk, self.config.dropout)
        self.net.load_state_dict({k[len("net."):]: v for k, v in state.items() if k.startswith("net.")})
        self.net.eval()
        self.prior = TastePrior(mean=state["prior.mean"].numpy().copy(), cov=state["prior.cov"].numpy().copy(), noise=float(state["prior.noise"][0]))
        self.pool_center = state["pool_center"].numpy().copy()
        if "link.matrix" in state:
            center = state["link.center"].numpy().copy() if "link.center" in state else None
            self.link = TasteLink(matrix=state["link.matrix"].numpy().copy(), generic_coef=float(state["link.generic_coef"][0]), n_raters=0, center=center)

    def extra_state(self) -> dict[str, Any]:
        return {**super().extra_state(), "personality": self.personality}

    def load_extra_state(self, extra: Mapping[str, Any]) -> None:
        super().load_extra_state(extra)
        self.personality = dict(extra.get("personality") or {"available": self.link is not None, "reason": None})
        if self.link is not None and "link" in self.personality:
            self.link = TasteLink(self.link.matrix, self.link.generic_coef, int(self.personality["link"].get("n_raters", 0)), self.link.center)
