"""`pa-iaa`: the personality-assisted multi-task method as a registered Method.

fit: train trunk + heads (alternating batches), report the personality head on held-out personality
raters, learn the Big-Five → taste link (from training raters' own ratings where their Big-Five is
known, as in PARA; else from personality raters' likes, as with PsychoFlickr), and estimate the taste
prior from train raters. `personality["link"]["source"]` and `notes()` say which link was used.
adapt: posterior (γ, w) of s_user = offset + γ · s_generic + w · p from the support set, around the
Big-Five prediction when the rater's Big-Five is known (0 shots: the prediction alone).
End to end (`backbone` set, the dataset's `images_root` read as pixels): the trunk sits on a trainable
backbone that learns with it, at `backbone_lr_scale` of the trunk's rate, on the aesthetics
distributions and the personality raters' liked images alike; the fusion above is unchanged.
With `attribute_weight` > 0 on a dataset with per-rating attributes (PARA's attributes.csv), an
auxiliary head learns each image's mean attribute scores from the shared trunk, trained jointly.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch

from piaa.e2e.backbones import TRAINABLE_BACKBONES
from piaa.e2e.device import DEVICES, loading_device, resolve_device
from piaa.e2e.model import build_model
from piaa.errors import ConfigError, DataError
from piaa.method import Method, MethodConfig, UserModel
from piaa.personality.data import (
    LazyRows,
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
from piaa.personality.model import PersonalityAssistedNet, predict_attributes, predict_heads, torch_threads
from piaa.personality.training import TaskData, attribute_quality, personality_quality, train_multitask
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
    # end to end on images (dataset.json's images_root; see docs/distributed.md): the trunk on a backbone
    backbone: str = ""  # "" = features (default) | small-cnn (built in) | resnet18, inception-v3 (vision extra)
    backbone_weights: str = ""  # a local .safetensors/.pth state dict; "" = seeded random initialisation
    backbone_lr_scale: float = 0.1  # backbone lr / trunk and heads lr
    device: str = "auto"  # auto | cpu | cuda (end to end only; the feature path runs on the CPU)
    amp: bool = True  # float16 autocast while training, on CUDA only
    attribute_weight: float = 0.0  # > 0: auxiliary head on the images' mean attribute scores (attributes.csv), loss scaled by this


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
        if self.config.backbone:
            TRAINABLE_BACKBONES.get(self.config.backbone)  # an unknown name is a ConfigError naming the closest one
            if self.config.device not in DEVICES or self.config.backbone_lr_scale <= 0:
                raise ConfigError(f"PAIAAConfig: device must be one of {', '.join(DEVICES)} and backbone_lr_scale positive, "
                                  f"got device={self.config.device!r}, backbone_lr_scale={self.config.backbone_lr_scale}")
        self.net: PersonalityAssistedNet | None = None
        self.link: TasteLink | None = None
        self.prior: TastePrior | None = None
        self.pool_center: np.ndarray | None = None
        self.personality: dict[str, Any] = {"available": False, "reason": "not fitted"}
        self.attribute_names: list[str] = []  # the attribute head's outputs, in order (empty: no head)

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
                return [*self._notes, f"pa-iaa: Big-Five link learned from {link.get('n_raters')} training raters' own ratings (their Big-Five is known)"]
            if link.get("source") == "likes":
                return [*self._notes, f"pa-iaa: Big-Five link learned from {link.get('n_raters')} personality raters' likes"]
            return list(self._notes)
        return [*self._notes,
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
        targets, attribute_stats = self._attribute_targets(data, generic.image_index, order[n_val:])
        g_all = TaskData(
            x=self._rows(data, generic.image_index),
            y=generic.dist,
            w=generic.n_votes.astype(np.float32),
            a=targets,
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
            p_all = TaskData(x=self._rows(data, ex.image_index), y=ex.big_five, w=np.ones(len(ex.user), np.float32))
            p_split = (p_all.take(np.flatnonzero(~held)), p_all.take(np.flatnonzero(held)))
            heldout = p_split[1]
        else:
            warnings.warn(f"pa-iaa: {reason}; training the aesthetics head only (no personality fusion, no zero-shot)", stacklevel=3)

        with torch_seeded(seed, "pa-iaa", "init"):
            self.net = self._build(data.feature_dim, bins, n_attributes=len(self.attribute_names))
        if not self.uses_images:
            self.net.standardize.fit(g_all.x)
        if attribute_stats is not None:
            self.net.attribute_mean.copy_(torch.as_tensor(attribute_stats[0], dtype=torch.float32))
            self.net.attribute_std.copy_(torch.as_tensor(attribute_stats[1], dtype=torch.float32))
        self.fit_log = train_multitask(
            self.net, g_split, p_split,
            distribution_loss=DISTRIBUTION_LOSSES[cfg.aesthetics_loss], personality_weight=cfg.personality_weight,
            attribute_weight=cfg.attribute_weight if self.attribute_names else 0.0,
            epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
            patience=cfg.patience, seed=seed, progress=progress, backbone_lr_scale=cfg.backbone_lr_scale,
            device=resolve_device(cfg.device) if self.uses_images else torch.device("cpu"), amp=cfg.amp,
        )

        if self.attribute_names and n_val:
            self.fit_log.append({"event": "attributes", "names": list(self.attribute_names), **attribute_quality(self.net, g_split[1])})
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

    def _build(self, dim: int, bins: np.ndarray, *, initial_weights: bool = True, n_attributes: int = 0) -> PersonalityAssistedNet:
        """The network on `dim`-wide features, or end to end on a backbone of the configured name."""
        cfg = self.config
        net, notes = build_model(cfg, lambda: PersonalityAssistedNet(dim, bins, cfg.trunk, cfg.dropout, n_attributes=n_attributes),
                                 lambda backbone, width: PersonalityAssistedNet(width, bins, cfg.trunk, cfg.dropout, backbone=backbone, n_attributes=n_attributes),
                                 initial_weights=initial_weights)
        if initial_weights and self.uses_images:
            self._notes = notes
        return net

    def _rows(self, data: RaterDataset, index: np.ndarray) -> np.ndarray | LazyRows:
        """The input rows of images `index`: features, or end to end their pixels, decoded when used."""
        if self.uses_images:
            return LazyRows(data.features, index)
        return np.asarray(data.features[index], dtype=np.float32)

    def _attribute_targets(self, data: RaterDataset, image_index: np.ndarray, train_rows: np.ndarray) -> tuple[np.ndarray | None, tuple[np.ndarray, np.ndarray] | None]:
        """Per generic example, its image's mean attribute scores over train raters, standardised with
        the training rows' mean and std (NaN where unknown), and (mean, std); (None, None) when off."""
        self.attribute_names = []
        if self.config.attribute_weight <= 0:
            return None, None
        if not data.attribute_names:
            warnings.warn(f"pa-iaa: attribute_weight is set but dataset {data.name!r} has no attributes.csv; training without the attribute head", stacklevel=4)
            return None, None
        table = data.image_attributes("train")
        values = table.reindex(image_index).to_numpy(np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an attribute nobody scored: all-NaN column
            mean, std = np.nanmean(values[train_rows], axis=0), np.nanstd(values[train_rows], axis=0)
        usable = np.isfinite(mean) & (std > 0)
        if not usable.any():
            warnings.warn(f"pa-iaa: no attribute of {data.name!r} varies over the training images; training without the attribute head", stacklevel=4)
            return None, None
        self.attribute_names = [n for n, ok in zip(table.columns, usable) if ok]
        mean, std = mean[usable], std[usable]
        return ((values[:, usable] - mean) / std).astype(np.float32), (mean, std)

    def predict_attributes(self, x: np.ndarray) -> np.ndarray:
        """The attribute head's prediction of each image's mean attribute scores [n, len(attribute_names)]."""
        self.check_fitted("net")
        if self.net.attributes is None:
            raise ConfigError("pa-iaa was fitted without an attribute head (set attribute_weight > 0 on a dataset with attributes.csv)")
        with torch_threads(self.config.threads):
            return predict_attributes(self.net, self.check_features(x))

    def _fit_link(self, data: RaterDataset, generic_images: np.ndarray, seed: int) -> None:
        ex = personality_examples(data)
        pool = np.unique(np.concatenate([generic_images, ex.image_index]))
        s, _, p = predict_heads(self.net, self._rows(data, pool))
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
            groups.append((self.design(self._rows(data, rater.image_index)), rater.scores.astype(np.float64)))
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
        rows = self.design(self._rows(data, images))  # one batched pass over the training images
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
        rows = x if isinstance(x, LazyRows) else self.check_features(x)
        with torch_threads(self.config.threads):
            s, _, p = predict_heads(self.net, rows)
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

    def user_model_from_state(self, state: Mapping[str, torch.Tensor]) -> UserModel:
        """A rater's model from `PAUserModel.state_dict()`: 13 numbers, whatever the network's size."""
        self.check_fitted()
        expected = {"offset", "x_center", "theta"}
        if set(state) != expected:
            raise ConfigError(f"pa-iaa profile holds {sorted(state)}, expected {sorted(expected)}")
        fitted = FittedTaste(offset=float(state["offset"][0]), x_center=state["x_center"].numpy().astype(np.float64),
                             theta=state["theta"].numpy().astype(np.float64))
        if fitted.theta.shape != self.prior.mean.shape or fitted.x_center.shape != self.prior.mean.shape:
            raise ConfigError(f"pa-iaa profile: theta has {fitted.theta.shape[0]} values, this model's fusion has {self.prior.mean.shape[0]}")
        return PAUserModel(self, fitted, zero_shot=bool(np.array_equal(fitted.x_center, self.pool_center)))  # 0 shots: centred on the pool

    # -- state -----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        self.check_fitted()
        f64 = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))  # noqa: E731
        state = {f"net.{k}": v.cpu() for k, v in self.net.state_dict().items()}
        state.update({"prior.mean": f64(self.prior.mean), "prior.cov": f64(self.prior.cov), "prior.noise": f64([self.prior.noise]), "pool_center": f64(self.pool_center)})
        if self.link is not None:
            state.update({"link.matrix": f64(self.link.matrix), "link.generic_coef": f64([self.link.generic_coef])})
            if self.link.center is not None:
                state["link.center"] = f64(self.link.center)
        return state

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        dim = int(state["net.standardize.mean"].shape[0]) if "net.standardize.mean" in state else 0  # end to end: no standardiser
        bins = state["net.bins"].numpy()
        n_attributes = int(state["net.attributes.weight"].shape[0]) if "net.attributes.weight" in state else 0
        self.net = self._build(dim, bins, initial_weights=False, n_attributes=n_attributes)  # the trained weights follow
        self.net.load_state_dict({k[len("net."):]: v for k, v in state.items() if k.startswith("net.")})
        self.net.eval()
        if self.uses_images:
            self.net.to(loading_device(self.config.device))
        self.prior = TastePrior(mean=state["prior.mean"].numpy().copy(), cov=state["prior.cov"].numpy().copy(), noise=float(state["prior.noise"][0]))
        self.pool_center = state["pool_center"].numpy().copy()
        if "link.matrix" in state:
            center = state["link.center"].numpy().copy() if "link.center" in state else None
            self.link = TasteLink(matrix=state["link.matrix"].numpy().copy(), generic_coef=float(state["link.generic_coef"][0]), n_raters=0, center=center)

    def extra_state(self) -> dict[str, Any]:
        return {**super().extra_state(), "personality": self.personality, "attribute_names": self.attribute_names}

    def load_extra_state(self, extra: Mapping[str, Any]) -> None:
        super().load_extra_state(extra)
        self.personality = dict(extra.get("personality") or {"available": self.link is not None, "reason": None})
        self.attribute_names = list(extra.get("attribute_names") or [])
        if self.link is not None and "link" in self.personality:
            self.link = TasteLink(self.link.matrix, self.link.generic_coef, int(self.personality["link"].get("n_raters", 0)), self.link.center)
