"""BLG-PIAA and the MAML family as registered Methods.

`fit` meta-trains a `ScoreHead` on the train raters (each rater a task), holding out a share of them
for validation (model selection, early stopping and the test-time step size; test raters are never
seen). By default the validation raters' images are held out too (`piaa.tasks.holdout`), so that
validation, like the test protocol, scores images that pre-training and meta-training never saw.
`adapt` fine-tunes the meta-learned weights on the new rater's support set as configured per preset,
and the `UserModel`'s state is the adapted weights. The algorithms themselves live one per file
(`maml`, `metasgd`, `anil`, `reptile`) and know nothing of raters.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from piaa import distributed
from piaa.e2e.backbones import TRAINABLE_BACKBONES
from piaa.e2e.device import DEVICES, loading_device, on_device, resolve_device
from piaa.e2e.model import GroupLR, ImageScoreModel, build_model, lr_scales
from piaa.e2e.train import fit_on_images
from piaa.errors import ConfigError
from piaa.learn2learn_import import import_learn2learn
from piaa.meta.anil import ANIL, last_layer
from piaa.meta.checkpoint import fingerprint
from piaa.meta.core import Meta, Params, clone, flatten, inner_loop, stack, task_losses, unflatten
from piaa.meta.engines import meta_gradient_fn
from piaa.meta import learn2learn_engine  # noqa: F401  (registers engine=learn2learn; imports learn2learn only when used)
from piaa.meta.inner import make_inner, step_inplace
from piaa.meta.loop import LoopSpec, TrainState, run_meta_training
from piaa.meta.maml import MAML
from piaa.meta.metasgd import MetaSGD
from piaa.meta.model import ScoreHead, denormalise, normalise
from piaa.meta.reptile import Reptile
from piaa.meta.tasks import TaskPool
from piaa.one_se import one_se_choice
from piaa.meta.validation import Validator, episode_groups
from piaa.method import Method, MethodConfig, UserModel
from piaa.nn import as_tensor
from piaa.registry import register_method
from piaa.seeding import torch_seeded
from piaa.tasks.format import Rater, RaterDataset
from piaa.tasks.holdout import SPLITS, validation_split
from piaa.tasks.sampling import MIN_QUERY
from piaa.tasks.targets import generic_targets
from piaa.training import fit_regressor

ORDERS = ("second", "first", "reptile")


@dataclass(frozen=True)
class MetaConfig(MethodConfig):
    # model: 256-d features → 128 → 64 → sigmoid. The paper's 1024/512 head sits on 2048-d CNN
    # features; halving per layer from 256-d keeps the same shape at 1/10 the parameters.
    hidden: tuple[int, ...] = (128, 64)
    dropout: float = 0.1
    # initialisation: pre-train the head on the consensus score (the giaa prior) for this many epochs
    pretrain_epochs: int = 80
    # inner loop (per rater)
    order: str = "reptile"  # second | first | reptile
    inner_optimizer: str = "adam"  # sgd | adam
    inner_lr: float = 1e-3
    inner_steps: int = 5
    query_phase: bool = True  # reptile: also adapt on the query set before moving the prior
    carry_inner_state: bool = True  # BLG-PIAA: inner Adam moments carried across meta-batches
    learn_inner_lr: bool = False  # Meta-SGD: per-parameter inner step sizes are meta-learned
    inner_params: str = "all"  # all | last (ANIL: inner loop and test-time adaptation on the last layer only)
    support_shots: tuple[int, ...] = (80,)
    query_size: int = 80
    # outer loop
    meta_batch: int = 4
    meta_steps: int = 600
    outer_optimizer: str = "sgd"  # sgd | adam
    outer_lr: float = 0.25
    engine: str = "batched"  # batched | learn2learn (piaa.meta.learn2learn_engine); see piaa.meta.engines
    # validation on held-out train raters, checkpoints
    val_fraction: float = 0.15
    # image-disjoint: validation raters rate only images that pre-training and meta-training never
    # see, as test raters do (piaa.tasks.holdout); raters: held-out raters, images shared (older split)
    val_split: str = "image-disjoint"
    val_image_share: float = 1.0  # image-disjoint: share of the validation raters' images held out
    # after model selection, refit on every training rating (validation raters' and images too) for
    # the selected number of meta-steps, keeping the chosen step sizes; False: keep the validated model
    refit: bool = False
    val_shots: tuple[int, ...] = (10, 100)
    val_repeats: int = 2  # support draws per validation rater and shot count
    val_every: int = 100
    patience: int = 3
    min_steps: int = 0  # no early stop before this many meta-steps
    checkpoint_every: int = 100
    # test-time adaptation
    adapt_optimizer: str = "adam"  # sgd | adam (Meta-SGD uses its learned step sizes with sgd)
    adapt_lr: float = 1e-3
    adapt_steps: int = 20
    # candidate adaptation step sizes, chosen per shot count on the validation raters after
    # meta-training (0 = keep the prior); empty: always use adapt_lr
    adapt_lr_grid: tuple[float, ...] = (0.0, 1e-4, 3e-4, 1e-3, 3e-3)
    # end to end on images (dataset.json's images_root) instead of the dataset's features:
    backbone: str = ""  # "" = features (default) | small-cnn (built in) | resnet18, inception-v3 (vision extra)
    backbone_weights: str = ""  # a local .safetensors/.pth state dict; "" = seeded random initialisation
    backbone_lr_scale: float = 0.1  # backbone lr / head lr in every loop (BLG-PIAA: 1e-4 vs 1e-3)
    pretrain_batch: int = 32  # images per step of the consensus pre-training
    device: str = "auto"  # auto | cpu | cuda (end to end only; the feature path runs on the CPU)
    amp: bool = True  # mixed precision in the consensus pre-training, on CUDA only

    def __post_init__(self) -> None:
        checks = [
            (self.order in ORDERS, f"order must be one of {', '.join(ORDERS)}"),
            (self.inner_optimizer in ("sgd", "adam"), "inner_optimizer must be sgd or adam"),
            (self.adapt_optimizer in ("sgd", "adam"), "adapt_optimizer must be sgd or adam"),
            (self.outer_optimizer in ("sgd", "adam"), "outer_optimizer must be sgd or adam"),
            (self.inner_params in ("all", "last"), "inner_params must be all or last"),
            (not (self.inner_params == "last" and self.order == "reptile"), "inner_params=last needs order second or first"),
            (self.engine != "learn2learn" or (self.order in ("second", "first") and self.inner_optimizer == "sgd" and self.inner_params == "all"),
             "engine=learn2learn needs order second or first, inner_optimizer sgd and inner_params all (learn2learn's MAML adapts every parameter with plain SGD)"),
            (not (self.learn_inner_lr and self.order == "reptile"), "learn_inner_lr needs order second or first"),
            (not (self.backbone and (self.learn_inner_lr or self.inner_params != "all")), "learn_inner_lr and inner_params=last are for the feature head only (no backbone)"),
            (self.device in DEVICES, f"device must be one of {', '.join(DEVICES)}"),
            (self.backbone_lr_scale > 0 and self.pretrain_batch >= 1, "backbone_lr_scale and pretrain_batch must be positive"),
            (min(self.support_shots, default=0) >= 1, "support_shots must be positive"),
            (self.meta_batch >= 1 and self.meta_steps >= 0 and self.inner_steps >= 1, "meta_batch, inner_steps must be >= 1"),
            (0.0 <= self.val_fraction < 1.0, "val_fraction must be in [0, 1)"),
            (self.val_split in SPLITS, f"val_split must be one of {', '.join(SPLITS)}"),
            (0.0 < self.val_image_share <= 1.0, "val_image_share must be in (0, 1]"),
            (self.val_every >= 1 and self.checkpoint_every >= 1 and self.val_repeats >= 1, "val_every, val_repeats and checkpoint_every must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"{type(self).__name__}: {message}")
        if self.backbone:
            TRAINABLE_BACKBONES.get(self.backbone)  # an unknown name is a ConfigError naming the closest one


class AdaptedUserModel(UserModel):
    """The head with one rater's adapted weights."""

    def __init__(self, method: "MetaLearnedHead", params: Params):
        self.method, self.params = method, params

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = self.method.check_features(x)
        with torch.no_grad():
            self.method.module.eval()
            out = torch.func.functional_call(self.method.module, {**self.method.buffers, **self.params}, (as_tensor(x).to(self.method.device),))
        return denormalise(out.double().cpu().numpy(), self.method.score_range)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Only the tensors that differ from the meta-learned prior (none at 0 shots or step size 0;
        after adapting, every adapted tensor: end to end that is the whole backbone and head)."""
        prior = self.method.meta["params"]
        return {k: v.detach().cpu().clone() for k, v in self.params.items() if not torch.equal(v, prior[k])}

    def predict_from_shared(self, shared: np.ndarray | None, x: np.ndarray) -> np.ndarray:
        """ANIL: the adapted last layer on the trunk's outputs (`MetaLearnedHead.shared_representation`)."""
        if shared is None:
            return self.predict(x)
        weight, bias = (self.params[k].detach().double().cpu().numpy() for k in last_layer(self.method.module))
        z = np.asarray(shared, dtype=np.float64) @ weight.T + bias
        return denormalise(1.0 / (1.0 + np.exp(-z[:, 0])), self.method.score_range)


class MetaLearnedHead(Method):
    """Shared machinery; the registered presets differ only in their Config defaults."""

    Config = MetaConfig
    fitted_attributes = ("module",)
    supports_distributed = True

    def __init__(self, config: MetaConfig | None = None, **overrides):
        super().__init__(config, **overrides)
        self.module: ScoreHead | None = None
        self.meta: Meta = {}
        self.buffers: Params = {}
        self.adapt_lrs: dict[int, float] = {}  # shots → adaptation step size chosen on validation raters
        self._on_step: Callable[[int], None] | None = None  # test hook: called after every meta-step
        self.device = torch.device("cpu")  # end to end: where the model trains and adapts

    # -- building ---------------------------------------------------------------------------------
    def _build(self, dim: int, *, initial_weights: bool = True) -> torch.nn.Module:
        """The feature head, or end to end (a backbone named) a model whose input rows are pixels (piaa.e2e)."""
        cfg = self.config
        module, notes = build_model(cfg, lambda: ScoreHead(dim, cfg.hidden, cfg.dropout),
                                    lambda net, width: ImageScoreModel(net, width, cfg.hidden, cfg.dropout), initial_weights=initial_weights)
        if initial_weights and self.uses_images:
            self._notes = notes
        return module

    def _inner_optimizer(self, kind: str, lr: float):
        """Inner/test-time optimiser; end to end, the backbone steps at backbone_lr_scale of the head."""
        opt = make_inner(kind, lr)
        if self.uses_images and self.config.backbone_lr_scale != 1.0:
            return GroupLR(opt, [k for k, _ in self.module.named_parameters()], self.config.backbone_lr_scale)
        return opt

    def _algorithm(self, module: ScoreHead):
        """The configured algorithm: Reptile (BLG-PIAA), MAML / first-order MAML, Meta-SGD or ANIL."""
        cfg = self.config
        inner = self._inner_optimizer(cfg.inner_optimizer, cfg.inner_lr)
        if cfg.order == "reptile":
            return Reptile(module, inner, cfg.inner_steps, query_phase=cfg.query_phase)
        first = cfg.order == "first"
        adapt = last_layer(module) if cfg.inner_params == "last" else None
        if cfg.learn_inner_lr:
            return MetaSGD(module, inner, cfg.inner_steps, first_order=first, adapt=adapt)
        if adapt is not None:
            return ANIL(module, inner, cfg.inner_steps, first_order=first, adapt=adapt)
        return MAML(module, inner, cfg.inner_steps, first_order=first)

    def _outer(self, params: list[torch.Tensor]) -> torch.optim.Optimizer:
        cfg = self.config
        if cfg.outer_optimizer == "adam":
            return torch.optim.Adam(params, lr=cfg.outer_lr)
        return torch.optim.SGD(params, lr=cfg.outer_lr)

    def _adapted_names(self) -> list[str]:
        names = [k for k, _ in self.module.named_parameters()]
        return list(last_layer(self.module)) if self.config.inner_params == "last" else names

    # -- fit --------------------------------------------------------------------------------------
    def fit(self, data: RaterDataset, *, seed: int = 0, progress: bool = False, checkpoint_dir: Path | None = None) -> "MetaLearnedHead":
        cfg = self.config
        if cfg.engine == "learn2learn":
            import_learn2learn("engine=learn2learn")  # refuse before any work when it is not installed
        self._remember_data(data)
        raters = [r for r in data.raters("train") if len(r) >= 2]
        if len(raters) < 2:
            raise ConfigError(f"{self.name} needs at least 2 train raters with 2+ ratings, got {len(raters)}")
        split = validation_split(raters, cfg.val_split, cfg.val_fraction, seed, min_ratings=min(cfg.val_shots) + MIN_QUERY,
                                 image_share=cfg.val_image_share)
        self.fit_log = [split.summary()]
        if split.kind == "raters":
            # The consensus prior uses every train rater (the validation raters too): it is shared by
            # all candidates that model selection compares, and meta-updates never see validation raters.
            prior_data, prior_users = data, {r.user for r in raters}
        else:  # image-disjoint: neither pre-training nor meta-training sees a validation image
            prior_data, prior_users = split.training_data(data), {r.user for r in split.train}
        self._prepare(prior_data, prior_users, split.train, seed, progress)

        validator = None
        if split.validation:
            groups = episode_groups(data.features, split.validation, tuple(cfg.val_shots), cfg.val_repeats, seed, lambda y: normalise(y, self.score_range))
            validator = Validator(self.module, self.buffers, groups, self._adapt_batched, seed)
        key = fingerprint({"method": self.name, "config": cfg.to_dict(), "seed": seed, "data": data.name,
                           "raters": [r.user for r in raters], "n_ratings": int(len(data.ratings))})
        state, start = self._meta_train(data.features, split.train, cfg.meta_steps, validator, seed, progress, checkpoint_dir, key)
        self.meta = state.best
        self.fit_log += state.log
        self.fit_log.append(self._selection_entry(state))
        self.adapt_lrs = {}
        if validator is not None and cfg.adapt_lr_grid and distributed.current().is_main:  # only rank 0's model is saved
            self.adapt_lrs, entries = validator.choose_step_sizes(self.meta, tuple(cfg.adapt_lr_grid))
            if state.best_step != 0:
                entries = self._keep_step0_unless_beaten(validator, start, entries)
            self.fit_log += entries
        if cfg.refit and split.validation:
            self._refit(data, raters, seed, progress)
        self.module.eval()
        return self

    def _prepare(self, data: RaterDataset, users: set[str], raters: list[Rater], seed: int, progress: bool) -> None:
        """A fresh module: input standardisation on `raters`' images, pre-training on the consensus of
        `users`' ratings in `data` (the step-0 prior)."""
        cfg = self.config
        with torch_seeded(seed, "init"):
            self.module = self._build(data.feature_dim)
        self.device = resolve_device(cfg.device) if self.uses_images else torch.device("cpu")
        if not self.uses_images:
            train_images = np.unique(np.concatenate([r.image_index for r in raters]))
            self.module.standardize.fit(np.asarray(data.features[train_images], dtype=np.float32))
        self.module.to(self.device)
        if cfg.pretrain_epochs > 0:
            self.fit_log += self._pretrain(data, users, seed, progress)
        self.buffers = {k: v.detach().clone() for k, v in self.module.named_buffers()}
        self.module.train()

    def _meta_train(self, features: np.ndarray, raters: list[Rater], steps: int, validator: Validator | None, seed: int, progress: bool,
                    checkpoint_dir: Path | None, key: str) -> tuple[TrainState, Meta]:
        """Meta-train the prepared module on `raters` for up to `steps` meta-steps (model selection by
        `validator` when given); returns the final state and the step-0 prior."""
        cfg = self.config
        algorithm = self._algorithm(self.module)
        try:
            meta_gradient = meta_gradient_fn(algorithm, cfg.engine)
        except ValueError as exc:
            raise ConfigError(f"{type(cfg).__name__}: {exc}") from None
        state = TrainState.start(algorithm.init_meta({k: v.detach() for k, v in self.module.named_parameters()}), self._outer)
        start = clone(state.meta)  # the step-0 prior: meta-training must beat it on validation raters
        spec = LoopSpec(steps, cfg.val_every, cfg.patience, cfg.min_steps, cfg.checkpoint_every, cfg.carry_inner_state)
        sample = TaskPool(features, raters, self.score_range).sampler(cfg.meta_batch, tuple(cfg.support_shots), cfg.query_size, seed)
        group = distributed.current()  # under torchrun: each rank takes a share of every meta-batch
        meta_gradient = distributed.sharded(on_device(meta_gradient, self.device), group)
        score = distributed.main_computes(validator, group) if validator is not None else None
        state = run_meta_training(state, meta_gradient, sample, spec, buffers=self.buffers, seed=seed, score=score,
                                  checkpoint_dir=Path(checkpoint_dir) if checkpoint_dir is not None else None,
                                  fingerprint=key, progress=progress, on_step=self._on_step)
        return state, start

    def _refit(self, data: RaterDataset, raters: list[Rater], seed: int, progress: bool) -> None:
        """Pre-train and meta-train again on every training rating for the selected number of meta-steps
        (no validation left to select with); the step sizes chosen on validation raters stay."""
        selected = int(next(e for e in reversed(self.fit_log) if "selected_step" in e)["selected_step"])
        # the step-0 check ran on rank 0 only: every rank refits for rank 0's count
        selected = int(distributed.broadcast_floats(selected, distributed.current())[0])
        self._prepare(data, {r.user for r in raters}, raters, seed, progress)
        state, _ = self._meta_train(data.features, raters, selected, None, seed, progress, None, "")
        self.meta = state.best
        self.fit_log.append({"refit_meta_steps": int(selected), "refit_raters": len(raters), "refit_ratings": int(sum(len(r) for r in raters))})

    def _keep_step0_unless_beaten(self, validator: Validator, start: Meta, entries: list[dict]) -> list[dict]:
        """The final check of model selection, at the step sizes test-time adaptation will use (each
        prior with its own, chosen by the one-SE rule): the same one-SE rule as checkpoint selection
        between step 0 and the selected step, so the meta-trained prior is kept only if its validation
        SROCC beats the step-0 prior's by more than one paired standard error over validation raters;
        otherwise the step-0 prior (and its step sizes) is the answer."""
        lrs0, entries0 = validator.choose_step_sizes(start, tuple(self.config.adapt_lr_grid))
        trained, step0 = validator.tuned_per_rater(self.meta, self.adapt_lrs), validator.tuned_per_rater(start, lrs0)
        choice = one_se_choice({0: step0, 1: trained})
        gain, se, keep = choice.mean[1] - choice.mean[0], max(choice.se.values()), choice.chosen == 1  # the best's own se is 0
        selection = next(e for e in reversed(self.fit_log) if "selected_step" in e)
        selection.update({"val_srocc_step0_tuned": round(float(np.nanmean(step0)), 6), "val_srocc_selected_tuned": round(float(np.nanmean(trained)), 6),
                          "tuned_gain": round(gain, 6), "tuned_gain_se": round(se, 6), "kept_meta_trained": bool(keep)})
        if keep:
            return entries
        selection.update({"selected_step": 0, "val_srocc_selected": selection["val_srocc_step0"],
                          "note": "meta-trained prior within one SE of step 0 at the chosen step sizes: step 0 kept"})
        self.meta, self.adapt_lrs = start, lrs0
        return entries0

    @staticmethod
    def _selection_entry(state: TrainState) -> dict[str, Any]:
        """Validation SROCC at meta-step 0 and at the selected step (did meta-training help?), and the
        argmax step the one-SE rule did not choose."""
        scores = {e["step"]: e["val_srocc"] for e in state.log if "val_srocc" in e}
        return {"selected_step": state.best_step, "val_srocc_step0": scores.get(0),
                "val_srocc_selected": scores.get(state.best_step), **state.selection.summary(), "meta_steps_run": state.step}

    def adapt_lr_for(self, shots: int) -> float:
        """The step size chosen on validation raters for the nearest shot count (log scale)."""
        if not self.adapt_lrs:
            return self.config.adapt_lr
        nearest = min(self.adapt_lrs, key=lambda k: (abs(np.log(max(shots, 1)) - np.log(k)), k))
        return self.adapt_lrs[nearest]

    def _pretrain(self, data: RaterDataset, users: set[str], seed: int, progress: bool) -> list[dict[str, Any]]:
        """Fit the head to the consensus score of `users` (the giaa recipe): the starting prior."""
        marked = data.users.copy()
        marked.loc[(marked["split"] == "train") & ~marked["user"].isin(users), "split"] = "validation"
        targets = generic_targets(dataclasses.replace(data, users=marked), "train")
        y = normalise(targets.score_mean + targets.rater_std * targets.target.astype(np.float64), data.score_range)
        y = np.clip(y, 0.02, 0.98).astype(np.float32)
        if self.uses_images:  # images stream through a DataLoader; the backbone at its own lr
            cfg = self.config
            with torch_seeded(seed, "pretrain"):
                log = fit_on_images(self.module, data.features, targets.image_index, y, weights=targets.n_raters.astype(np.float32),
                                    epochs=cfg.pretrain_epochs, batch_size=cfg.pretrain_batch, lr=1e-3, backbone_lr_scale=cfg.backbone_lr_scale,
                                    seed=seed, device=self.device, amp=cfg.amp, progress=progress, label=f"{self.name} prior")
            return [{"pretrain_epoch": e["epoch"], "train_loss": e["train_loss"], "val_loss": e["val_loss"]} for e in log]
        x = np.asarray(data.features[targets.image_index], dtype=np.float32)
        with torch_seeded(seed, "pretrain"):
            log = fit_regressor(self.module, x, y, epochs=self.config.pretrain_epochs, batch_size=128, lr=1e-3,
                                weight_decay=1e-4, val_fraction=0.1, patience=12, seed=seed,
                                weights=targets.n_raters.astype(np.float32), progress=progress, label=f"{self.name} prior")
        return [{"pretrain_epoch": e["epoch"], "train_loss": e["train_loss"], "val_loss": e["val_loss"]} for e in log]

    def _step_sizes(self, meta: Meta, lr: float) -> Params | None:
        """Meta-SGD's learned step sizes rescaled by lr / adapt_lr (None without learned ones)."""
        lrs = meta.get("lrs")
        return None if lrs is None else {k: v.detach() * (lr / self.config.adapt_lr) for k, v in lrs.items()}

    def _adapt_batched(self, meta: Meta, xs: torch.Tensor, ys: torch.Tensor, lr: float | None, seed: int) -> Params:
        """Test-time adaptation of many support sets of one size at once (leading axis = episode)."""
        cfg = self.config
        params = {k: v.detach() for k, v in meta["params"].items()}
        lr = cfg.adapt_lr if lr is None else lr
        if lr == 0:
            return stack(params, len(xs))
        xs, ys = xs.to(self.device), ys.to(self.device)
        names = self._adapted_names()
        shared = {k: v for k, v in params.items() if k not in names}
        opt = self._inner_optimizer(cfg.adapt_optimizer, lr)
        fast = {k: v.clone().requires_grad_(True) for k, v in stack({k: params[k] for k in names}, len(xs)).items()}
        losses = task_losses(self.module, self.buffers, shared=shared)
        self.module.train()
        with torch_seeded(seed, "adapt-batched"):
            fast, _ = inner_loop(losses, fast, opt, opt.init(fast), [(xs, ys, torch.ones_like(ys))], cfg.adapt_steps,
                                 graph="none", lrs=self._step_sizes(meta, lr))
        return {**stack(shared, len(xs)), **{k: v.detach() for k, v in fast.items()}}

    # -- adapt ------------------------------------------------------------------------------------
    def adapt(self, x_support, y_support, *, big_five=None, seed: int = 0) -> UserModel:
        self.check_fitted()
        params = {k: v.detach().clone() for k, v in self.meta["params"].items()}
        y = np.asarray(y_support, dtype=np.float32)
        lr = self.adapt_lr_for(len(y))
        if len(y) == 0 or lr == 0:
            return AdaptedUserModel(self, params)
        x = as_tensor(self.check_features(x_support, "support features")).to(self.device)
        yt = torch.from_numpy(normalise(y, self.score_range).astype(np.float32)).to(self.device)
        cfg = self.config
        opt = make_inner(cfg.adapt_optimizer, lr)
        state: dict = {"t": 0}
        loss_fn = task_losses(self.module, self.buffers, shared={k: v for k, v in params.items() if k not in self._adapted_names()})
        names = self._adapted_names()
        leaves = [params[k].requires_grad_(True) for k in names]
        lrs = self._step_sizes(self.meta, lr)
        lr_list = [lrs[k] for k in names] if lrs is not None else None
        if lr_list is None and self.uses_images:  # the backbone adapts at backbone_lr_scale of the head's rate
            scales = lr_scales(names, cfg.backbone_lr_scale)
            lr_list = [torch.full_like(params[k], lr * scales[k]) for k in names]
        x1, y1, w1 = x.unsqueeze(0), yt.unsqueeze(0), torch.ones_like(yt).unsqueeze(0)
        self.module.train()
        with torch_seeded(seed, "adapt"):
            for _ in range(cfg.adapt_steps):
                loss = loss_fn({k: v.unsqueeze(0) for k, v in zip(names, leaves)}, x1, y1, w1).sum()
                grads = torch.autograd.grad(loss, leaves)
                step_inplace(opt, leaves, list(grads), state, lr_list)
        self.module.eval()
        return AdaptedUserModel(self, {k: v.detach() for k, v in params.items()})

    def user_model_from_state(self, state: Mapping[str, torch.Tensor]) -> UserModel:
        """A rater's model from `AdaptedUserModel.state_dict()`: the prior with the stored tensors in place."""
        self.check_fitted()
        prior = self.meta["params"]
        unknown = sorted(set(state) - set(prior))
        if unknown:
            raise ConfigError(f"{self.name} profile holds {unknown[0]!r}, which is not a parameter of this model")
        for k, v in state.items():
            if v.shape != prior[k].shape:
                raise ConfigError(f"{self.name} profile: tensor {k!r} has shape {tuple(v.shape)}, the model's is {tuple(prior[k].shape)}")
        return AdaptedUserModel(self, {k: (state[k].to(self.device) if k in state else v.detach().clone()) for k, v in prior.items()})

    # -- state ------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        self.check_fitted()
        return {k: v.cpu() for k, v in flatten({"meta": self.meta, "buffers": self.buffers}).items()}

    def extra_state(self) -> dict[str, Any]:
        return {**super().extra_state(), "adapt_lrs": {str(k): v for k, v in self.adapt_lrs.items()}}

    def load_extra_state(self, extra: Mapping[str, Any]) -> None:
        super().load_extra_state(extra)
        self.adapt_lrs = {int(k): float(v) for k, v in extra.get("adapt_lrs", {}).items()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        tree = unflatten(state)
        self.buffers, self.meta = tree.get("buffers", {}), tree["meta"]  # the image model has no buffers
        dim = int(self.buffers["standardize.mean"].shape[0]) if "standardize.mean" in self.buffers else 0
        self.module = self._build(dim, initial_weights=False)  # the trained weights follow
        self.module.load_state_dict({**self.meta["params"], **self.buffers})
        if self.uses_images:  # a run trained on a GPU still loads where there is none ("auto")
            self.device = loading_device(self.config.device)
            self.module.to(self.device)
            self.meta = {g: {k: v.to(self.device) for k, v in p.items()} for g, p in self.meta.items()}
            self.buffers = {k: v.to(self.device) for k, v in self.buffers.items()}
        self.module.eval()

    def shared_representation(self, x: np.ndarray) -> np.ndarray | None:
        """ANIL on features (inner_params=last): the input of the last layer, which no rater adapts.
        Every other preset adapts the whole network, so nothing is shared."""
        if self.config.inner_params != "last" or self.uses_images or not isinstance(self.module, ScoreHead):
            return None
        self.check_fitted()
        last = self.module.body[-1]
        seen: list[torch.Tensor] = []
        hook = last.register_forward_hook(lambda _m, args, _out: seen.append(args[0].detach()))
        try:
            with torch.no_grad():
                self.module.eval()
                torch.func.functional_call(self.module, {**self.buffers, **self.meta["params"]}, (as_tensor(self.check_features(x)).to(self.device),))
        finally:
            hook.remove()
        return seen[0].double().cpu().numpy()


def _field_type(value: Any) -> Any:
    if isinstance(value, tuple):
        return tuple[type(value[0]), ...] if value else tuple[float, ...]
    return type(value)


def _preset(name: str, summary: str, **defaults: Any) -> type[MetaLearnedHead]:
    """A registered subclass whose Config has the preset's defaults."""
    config = dataclasses.make_dataclass(
        f"{name.title().replace('-', '')}Config",
        [(k, _field_type(v), dataclasses.field(default=v)) for k, v in defaults.items()],
        bases=(MetaConfig,), frozen=True,
    )
    config.__module__ = __name__
    cls = type(f"{name.title().replace('-', '')}Method", (MetaLearnedHead,), {"Config": config, "summary": summary, "__module__": __name__})
    return register_method(name)(cls)


# Step sizes of the MAML family: the loss is an MSE on scores in [0, 1] (~0.02 at the consensus
# prior), so its gradients are small; 5 SGD steps of 0.05 moved a rater's predictions by ~9% of
# their spread and the objective collapsed to the consensus regression. An inner step of 0.5 makes
# the inner loop matter; the outer Adam step of 1e-3 and 1,000 meta-steps (no early stop before 500)
# let validation SROCC climb. All chosen on validation raters (see docs/methods.md).
_MAML_FAMILY = dict(
    inner_optimizer="sgd", inner_lr=0.5, inner_steps=5, query_phase=False, carry_inner_state=False,
    support_shots=(10, 50), query_size=50, meta_batch=8, meta_steps=1000, min_steps=500, outer_optimizer="adam",
    outer_lr=1e-3, adapt_optimizer="sgd", adapt_lr=0.5, adapt_steps=5, adapt_lr_grid=(0.0, 0.1, 0.3, 1.0),
)

BlgPiaaMethod = _preset(
    "blg-piaa",
    "BLG-PIAA as published: Reptile-like first-order bi-level meta-learning, inner Adam on support then query",
)
BlgPiaaTunedMethod = _preset(
    "blg-piaa-tuned",
    "BLG-PIAA's bi-level update (support then query phase) with inner SGD steps that move the head (0.5)",
    **{**_MAML_FAMILY, "order": "reptile", "query_phase": True, "support_shots": (80,), "query_size": 80,
       "meta_batch": 4, "outer_optimizer": "sgd", "outer_lr": 0.1},
)
MamlMethod = _preset(
    "maml", "MAML: second-order meta-gradient through an SGD inner loop",
    order="second", **_MAML_FAMILY,
)
FomamlMethod = _preset(
    "fomaml", "first-order MAML: query gradient at the adapted weights, no Hessian terms",
    order="first", **_MAML_FAMILY,
)
ReptileMethod = _preset(
    "reptile", "Reptile: move the prior toward each rater's adapted weights (support set only)",
    **{**_MAML_FAMILY, "order": "reptile", "support_shots": (10, 100), "outer_optimizer": "sgd", "outer_lr": 0.1},
)
MetaSgdMethod = _preset(
    "meta-sgd", "Meta-SGD: MAML with meta-learned per-parameter inner step sizes",
    **{**_MAML_FAMILY, "order": "second", "learn_inner_lr": True, "inner_steps": 1, "adapt_steps": 1},
)
AnilMethod = _preset(
    "anil", "ANIL: MAML with the inner loop (and test-time adaptation) on the last layer only",
    order="second", inner_params="last", **_MAML_FAMILY,
)
