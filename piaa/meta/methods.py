"""BLG-PIAA and the MAML family as registered Methods.

`fit` meta-trains a `ScoreHead` on the train raters (each rater a task), holding out a share of them
for validation (model selection and early stopping; test raters are never seen). `adapt` fine-tunes
the meta-learned weights on the new rater's support set as configured per preset, and the
`UserModel`'s state is the adapted weights.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch.func import functional_call, vmap

from piaa import distributed
from piaa.e2e.backbones import BACKBONES
from piaa.e2e.device import DEVICES, on_device, resolve_device
from piaa.errors import ConfigError
from piaa.e2e.model import GroupLR, build_image_model, lr_scales
from piaa.e2e.train import fit_on_images
from piaa.meta.checkpoint import fingerprint
from piaa.meta.inner import Params, inner_loop, make_inner, make_loss, step_inplace
from piaa.meta.loop import LoopSpec, run_meta_training
from piaa.meta.model import ScoreHead, denormalise, normalise
from piaa.meta.outer import LR_PREFIX, ORDERS, MetaGradient, OuterOptimizer, split_meta
from piaa.meta.tasks import TaskPool
from piaa.method import Method, MethodConfig, UserModel
from piaa.metrics import srocc
from piaa.nn import as_tensor
from piaa.registry import register_method
from piaa.seeding import derive_seed, numpy_rng, torch_seeded
from piaa.tasks.format import RaterDataset
from piaa.tasks.sampling import draw_support
from piaa.tasks.targets import generic_targets
from piaa.training import fit_regressor


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
    support_shots: tuple[int, ...] = (80,)
    query_size: int = 80
    # outer loop
    meta_batch: int = 4
    meta_steps: int = 600
    outer_optimizer: str = "sgd"  # sgd | adam
    outer_lr: float = 0.25
    engine: str = "batched"  # batched (stacked raters, autograd) | vmap (torch.func per rater, vmapped) | loop
    # validation on held-out train raters, checkpoints
    val_fraction: float = 0.15
    val_shots: tuple[int, ...] = (10, 100)
    val_repeats: int = 2  # support draws per validation rater and shot count
    val_every: int = 100
    patience: int = 3
    checkpoint_every: int = 100
    # test-time adaptation
    adapt_optimizer: str = "adam"  # sgd | adam (Meta-SGD uses its learned step sizes with sgd)
    adapt_lr: float = 1e-3
    adapt_steps: int = 20
    # candidate adaptation step sizes, chosen per shot count on the validation raters after
    # meta-training (0 = keep the prior); empty: always use adapt_lr
    adapt_lr_grid: tuple[float, ...] = (0.0, 1e-4, 3e-4, 1e-3, 3e-3)
    # end to end on images (dataset.json's images_root) instead of the dataset's features:
    backbone: str = ""  # "" = features (default) | small-cnn (built in) | resnet18 (vision extra)
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
            (self.engine in ("batched", "vmap", "loop"), "engine must be batched, vmap or loop"),
            (not (self.learn_inner_lr and self.order == "reptile"), "learn_inner_lr needs order second or first"),
            (self.backbone in ("",) + tuple(BACKBONES), f"backbone must be empty (features) or one of {', '.join(BACKBONES)}"),
            (not (self.backbone and self.learn_inner_lr), "learn_inner_lr is for the feature head only (no backbone)"),
            (self.device in DEVICES, f"device must be one of {', '.join(DEVICES)}"),
            (self.backbone_lr_scale > 0 and self.pretrain_batch >= 1, "backbone_lr_scale and pretrain_batch must be positive"),
            (min(self.support_shots, default=0) >= 1, "support_shots must be positive"),
            (self.meta_batch >= 1 and self.meta_steps >= 0 and self.inner_steps >= 1, "meta_batch, inner_steps must be >= 1"),
            (0.0 <= self.val_fraction < 1.0, "val_fraction must be in [0, 1)"),
            (self.val_every >= 1 and self.checkpoint_every >= 1 and self.val_repeats >= 1, "val_every, val_repeats and checkpoint_every must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"{type(self).__name__}: {message}")


class AdaptedUserModel(UserModel):
    """The head with one rater's adapted weights."""

    def __init__(self, method: "MetaLearnedHead", params: Params):
        self.method, self.params = method, params

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = self.method.check_features(x)
        with torch.no_grad():
            self.method.module.eval()
            out = torch.func.functional_call(self.method.module, {**self.params, **self.method.buffers}, (as_tensor(x).to(self.method.device),))
        return denormalise(out.double().cpu().numpy(), self.method.score_range)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in self.params.items()}


class MetaLearnedHead(Method):
    """Shared machinery; the registered presets differ only in their Config defaults."""

    Config = MetaConfig
    supports_distributed = True

    def __init__(self, config: MetaConfig | None = None, **overrides):
        super().__init__(config, **overrides)
        self.module: ScoreHead | None = None
        self.meta: Params = {}
        self.buffers: Params = {}
        self.adapt_lrs: dict[int, float] = {}  # shots → adaptation step size chosen on validation raters
        self._on_step: Callable[[int], None] | None = None  # test hook: called after every meta-step
        self.device = torch.device("cpu")  # end to end: where the model trains and adapts
        self._notes: list[str] = []

    @property
    def uses_images(self) -> bool:
        return bool(self.config.backbone)

    def notes(self) -> list[str]:
        return list(self._notes)

    # -- building ---------------------------------------------------------------------------------
    def _build(self, dim: int, *, initial_weights: bool = True) -> torch.nn.Module:
        if self.uses_images:  # end to end: the input rows are pixels (piaa.e2e)
            weights = self.config.backbone_weights if initial_weights else ""
            module, note = build_image_model(self.config.backbone, weights, self.config.hidden, self.config.dropout)
            if initial_weights:
                self._notes = [note]
            return module
        return ScoreHead(dim, self.config.hidden, self.config.dropout)

    def _inner_optimizer(self, kind: str, lr: float):
        """Inner/test-time optimiser; end to end, the backbone steps at backbone_lr_scale of the head."""
        opt = make_inner(kind, lr)
        if self.uses_images and self.config.backbone_lr_scale != 1.0:
            return GroupLR(opt, [k for k, _ in self.module.named_parameters()], self.config.backbone_lr_scale)
        return opt

    def _initial_meta(self, module: ScoreHead) -> Params:
        params = {k: v.detach().clone() for k, v in module.named_parameters()}
        if self.config.learn_inner_lr:
            params.update({LR_PREFIX + k: torch.full_like(v, self.config.inner_lr) for k, v in list(params.items())})
        return params

    # -- fit --------------------------------------------------------------------------------------
    def fit(self, data: RaterDataset, *, seed: int = 0, progress: bool = False, checkpoint_dir: Path | None = None) -> "MetaLearnedHead":
        cfg = self.config
        self._remember_data(data)
        raters = [r for r in data.raters("train") if len(r) >= 2]
        if len(raters) < 2:
            raise ConfigError(f"{self.name} needs at least 2 train raters with 2+ ratings, got {len(raters)}")
        order = numpy_rng(seed, "validation-raters").permutation(len(raters))
        n_val = int(round(len(raters) * cfg.val_fraction)) if cfg.val_fraction > 0 else 0
        n_val = min(n_val, len(raters) - 1)
        val_raters = [raters[i] for i in order[:n_val]]
        train_raters = [raters[i] for i in order[n_val:]]

        with torch_seeded(seed, "init"):
            self.module = self._build(data.feature_dim)
        self.device = resolve_device(cfg.device) if self.uses_images else torch.device("cpu")
        if not self.uses_images:
            train_images = np.unique(np.concatenate([r.image_index for r in train_raters]))
            self.module.standardize.fit(np.asarray(data.features[train_images], dtype=np.float32))
        self.module.to(self.device)
        self.fit_log = []
        if cfg.pretrain_epochs > 0:
            # The consensus prior uses every train rater (the validation raters too): it is shared by
            # all candidates that model selection compares, and meta-updates never see validation raters.
            self.fit_log += self._pretrain(data, {r.user for r in raters}, seed, progress)
        self.buffers = {k: v.detach().clone() for k, v in self.module.named_buffers()}
        self.module.train()

        meta_grad = MetaGradient(self.module, self._inner_optimizer(cfg.inner_optimizer, cfg.inner_lr), cfg.inner_steps,
                                 order=cfg.order, query_phase=cfg.query_phase, engine=cfg.engine)
        outer = OuterOptimizer(cfg.outer_optimizer, cfg.outer_lr)
        spec = LoopSpec(cfg.meta_steps, cfg.meta_batch, tuple(cfg.support_shots), cfg.query_size, cfg.val_every,
                        cfg.patience, cfg.checkpoint_every, carry_inner_state=cfg.carry_inner_state)
        pool = TaskPool(data.features, train_raters, data.score_range)
        validate = self._validator(data, val_raters, seed) if val_raters else None
        group = distributed.current()  # under torchrun: each rank takes a share of every meta-batch
        meta_grad = distributed.sharded(on_device(meta_grad, self.device), group)
        validate = distributed.main_computes(validate, group) if validate is not None else None
        key = fingerprint({"method": self.name, "config": cfg.to_dict(), "seed": seed, "data": data.name,
                           "raters": [r.user for r in raters], "n_ratings": int(len(data.ratings))})
        self.meta, log = run_meta_training(
            self._initial_meta(self.module), self.buffers, meta_grad, outer, pool, spec, seed=seed, validate=validate,
            checkpoint_dir=Path(checkpoint_dir) if checkpoint_dir is not None else None, fingerprint=key,
            progress=progress, on_step=self._on_step,
        )
        self.fit_log += log
        self.adapt_lrs = {}
        if validate is not None and cfg.adapt_lr_grid and group.is_main:  # only rank 0's model is saved
            scores = {lr: validate.per_shot(self.meta, lr) for lr in cfg.adapt_lr_grid}
            for k in sorted({k for per in scores.values() for k in per}):
                lr = max(cfg.adapt_lr_grid, key=lambda lr: (scores[lr].get(k, float("-inf")), -lr))
                self.adapt_lrs[int(k)] = float(lr)
                self.fit_log.append({"adapt_lr_for_shots": int(k), "adapt_lr": float(lr), "val_srocc": round(scores[lr][k], 6)})
        self.module.eval()
        return self

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

    def _validator(self, data: RaterDataset, raters, seed: int) -> Callable[[Params], float]:
        """Mean SROCC over the held-out train raters after test-time adaptation, averaged over shots.

        Episodes with the same shot count are adapted together with `vmap` (one batched inner loop);
        the query sets are padded to one shape and trimmed again before scoring.
        """
        groups = []
        for k in self.config.val_shots:
            episodes = []
            for r in raters:
                x = np.asarray(data.features[r.image_index], dtype=np.float32)
                for repeat in range(self.config.val_repeats if len(r) >= k + 10 else 0):
                    support, query = draw_support(len(r), k, seed=seed, user=r.user, repeat=repeat)
                    episodes.append((x[support], r.scores[support], x[query], r.scores[query]))
            if episodes:
                xs = torch.from_numpy(np.stack([e[0] for e in episodes]))
                ys = torch.from_numpy(np.stack([normalise(e[1], self.score_range) for e in episodes]).astype(np.float32))
                n_q = max(len(e[3]) for e in episodes)
                xq = torch.from_numpy(np.stack([np.pad(e[2], ((0, n_q - len(e[2])), (0, 0))) for e in episodes]))
                groups.append((k, xs, ys, xq, [e[3] for e in episodes]))

        def per_shot(meta: Params, lr: float | None = None) -> dict[int, float]:
            out = {}
            for k, xs, ys, xq, yq in groups:
                adapted = self._adapt_batched(meta, xs.to(self.device), ys.to(self.device), seed=derive_seed(seed, "validation", k), lr=lr)
                with torch.no_grad():
                    self.module.eval()
                    pred = vmap(lambda p, x: functional_call(self.module, {**p, **self.buffers}, (x,)))(adapted, xq.to(self.device)).cpu().numpy()
                    self.module.train()
                values = [srocc(pred[i, : len(y)], y) for i, y in enumerate(yq)]
                values = [v for v in values if np.isfinite(v)]
                if values:
                    out[k] = float(np.mean(values))
            return out

        def validate(meta: Params) -> float:
            scores = per_shot(meta)
            return float(np.mean(list(scores.values()))) if scores else 0.0

        validate.per_shot = per_shot  # type: ignore[attr-defined]
        return validate

    def _adapt_batched(self, meta: Params, xs: torch.Tensor, ys: torch.Tensor, *, seed: int, lr: float | None = None) -> Params:
        """Test-time adaptation of many support sets of one size at once (leading axis = episode)."""
        cfg = self.config
        params, lrs = split_meta({k: v.detach() for k, v in meta.items()})
        lr = cfg.adapt_lr if lr is None else lr
        if lr == 0:
            return {k: v.expand(len(xs), *v.shape) for k, v in params.items()}
        opt = self._inner_optimizer(cfg.adapt_optimizer, lr)
        if lrs is not None:
            lrs = {k: v * (lr / cfg.adapt_lr) for k, v in lrs.items()}
        loss = make_loss(self.module, self.buffers)

        def one(x: torch.Tensor, y: torch.Tensor) -> Params:
            adapted, _ = inner_loop(loss, params, opt, opt.init(params), [(x, y, torch.ones_like(y))], cfg.adapt_steps, first_order=True, lrs=lrs)
            return adapted

        self.module.train()
        with torch_seeded(seed, "adapt-batched"):
            return {k: v.detach() for k, v in vmap(one, randomness="different")(xs, ys).items()}

    # -- adapt ------------------------------------------------------------------------------------
    def adapt(self, x_support, y_support, *, big_five=None, seed: int = 0) -> UserModel:
        if self.module is None:
            raise RuntimeError(f"{self.name} is not fitted")
        params, lrs = split_meta(self.meta)
        params = {k: v.detach().clone() for k, v in params.items()}
        y = np.asarray(y_support, dtype=np.float32)
        if len(y) == 0:
            return AdaptedUserModel(self, params)
        x = as_tensor(self.check_features(x_support, "support features")).to(self.device)
        yt = torch.from_numpy(normalise(y, self.score_range).astype(np.float32)).to(self.device)
        w = torch.ones_like(yt)
        cfg = self.config
        lr = self.adapt_lr_for(len(y))
        if lr == 0:
            return AdaptedUserModel(self, params)
        opt = make_inner(cfg.adapt_optimizer, lr)
        state: dict = {"t": 0}
        loss_fn = make_loss(self.module, self.buffers)
        names = list(params)
        leaves = [params[k].requires_grad_(True) for k in names]
        lr_list = [lrs[k].detach() * (lr / cfg.adapt_lr) for k in names] if lrs is not None else None
        if lr_list is None and self.uses_images:  # the backbone adapts at backbone_lr_scale of the head's rate
            scales = lr_scales(names, cfg.backbone_lr_scale)
            lr_list = [torch.full_like(params[k], lr * scales[k]) for k in names]
        self.module.train()
        with torch_seeded(seed, "adapt"):
            for _ in range(cfg.adapt_steps):
                grads = torch.autograd.grad(loss_fn(dict(zip(names, leaves)), x, yt, w), leaves)
                step_inplace(opt, leaves, list(grads), state, lr_list)
        self.module.eval()
        return AdaptedUserModel(self, {k: v.detach() for k, v in params.items()})

    # -- state ------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        if self.module is None:
            raise RuntimeError(f"{self.name} is not fitted")
        return {**{f"meta.{k}": v.cpu() for k, v in self.meta.items()}, **{f"buffer.{k}": v.cpu() for k, v in self.buffers.items()}}

    def extra_state(self) -> dict[str, Any]:
        return {**super().extra_state(), "adapt_lrs": {str(k): v for k, v in self.adapt_lrs.items()}, "notes": self._notes}

    def load_extra_state(self, extra: Mapping[str, Any]) -> None:
        super().load_extra_state(extra)
        self.adapt_lrs = {int(k): float(v) for k, v in extra.get("adapt_lrs", {}).items()}
        self._notes = [str(n) for n in extra.get("notes", [])]

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        self.buffers = {k[7:]: v for k, v in state.items() if k.startswith("buffer.")}
        self.meta = {k[5:]: v for k, v in state.items() if k.startswith("meta.")}
        self.module = self._build(int(self.buffers["standardize.mean"].shape[0]) if "standardize.mean" in self.buffers else 0, initial_weights=False)
        self.module.load_state_dict({**split_meta(self.meta)[0], **self.buffers})
        if self.uses_images:
            self.device = resolve_device(self.config.device)
            self.module.to(self.device)
            self.meta = {k: v.to(self.device) for k, v in self.meta.items()}
            self.buffers = {k: v.to(self.device) for k, v in self.buffers.items()}
        self.module.eval()


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


BLGPIAA = _preset(
    "blg-piaa",
    "BLG-PIAA: Reptile-like first-order bi-level meta-learning, inner Adam on support then query",
)
MAML = _preset(
    "maml", "MAML: second-order meta-gradient through an SGD inner loop",
    order="second", inner_optimizer="sgd", inner_lr=0.05, inner_steps=5, query_phase=False, carry_inner_state=False,
    support_shots=(10, 50), query_size=50, meta_batch=8, meta_steps=600, outer_optimizer="adam", outer_lr=1e-4,
    adapt_optimizer="sgd", adapt_lr=0.05, adapt_steps=5, adapt_lr_grid=(0.0, 0.01, 0.025, 0.05, 0.1),
)
FOMAML = _preset(
    "fomaml", "first-order MAML: query gradient at the adapted weights, no Hessian terms",
    order="first", inner_optimizer="sgd", inner_lr=0.05, inner_steps=5, query_phase=False, carry_inner_state=False,
    support_shots=(10, 50), query_size=50, meta_batch=8, meta_steps=600, outer_optimizer="adam", outer_lr=1e-4,
    adapt_optimizer="sgd", adapt_lr=0.05, adapt_steps=5, adapt_lr_grid=(0.0, 0.01, 0.025, 0.05, 0.1),
)
REPTILE = _preset(
    "reptile", "Reptile: move the prior toward each rater's adapted weights (support set only)",
    order="reptile", inner_optimizer="adam", inner_lr=1e-3, inner_steps=5, query_phase=False, carry_inner_state=False,
    support_shots=(10, 100), query_size=50, meta_batch=4, outer_optimizer="sgd", outer_lr=0.25,
)
METASGD = _preset(
    "meta-sgd", "Meta-SGD: MAML with meta-learned per-parameter inner step sizes",
    order="second", inner_optimizer="sgd", inner_lr=0.05, inner_steps=1, query_phase=False, carry_inner_state=False,
    learn_inner_lr=True, support_shots=(10, 50), query_size=50, meta_batch=8, meta_steps=600, outer_optimizer="adam",
    outer_lr=1e-4, adapt_optimizer="sgd", adapt_lr=0.05, adapt_steps=1, adapt_lr_grid=(0.0, 0.025, 0.05, 0.1),
)
