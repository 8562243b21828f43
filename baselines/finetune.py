"""`finetune`: the generic prior fine-tuned on the rater's rated images.

The plainest way to personalise a neural scorer, and the baseline the BLG-PIAA paper (Zhu, Li et al.,
IEEE TCYB 2020) calls BA-PIAA: start from the network trained on everyone's consensus and take a
few gradient steps on the rater's own images. Here: the output bias is first moved to the rater's
mean, then Adam runs full-batch on squared error, on every layer (default) or on the last layer only
(cheaper, but on the demo it gains little: the rater's taste is not a re-weighting of the prior's
last hidden features). How many steps to take at k shots is chosen at fit time on practice
episodes of training raters, the early stopping a user could afford without anyone's query images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch
from torch.func import functional_call

from piaa.baselines._episodes import nearest_in_log, practice_episodes
from piaa.baselines.giaa import GenericPrior, GIAAConfig
from piaa.e2e.backbones import TRAINABLE_BACKBONES
from piaa.e2e.device import DEVICES, loading_device, resolve_device
from piaa.e2e.model import ImageRegressor, build_model, lr_scales
from piaa.e2e.train import fit_on_images
from piaa.errors import ConfigError
from piaa.method import UserModel
from piaa.nn import as_tensor
from piaa.seeding import torch_seeded
from piaa.tasks.format import RaterDataset
from piaa.tasks.targets import generic_targets


@dataclass(frozen=True)
class FineTuneConfig(GIAAConfig):
    layers: str = "all"  # "all": every layer of the prior; "last": the output layer only
    adapt_lr: float = 3e-4  # small: the prior was trained at 1e-3 and a few images must not undo it
    step_grid: tuple[int, ...] = (0, 5, 10, 20, 40, 80)  # candidate numbers of Adam steps (demo picks 10-20)
    practice_shots: tuple[int, ...] = (10, 30, 100)
    practice_raters: int = 16
    # end to end on images (see docs/distributed.md): the prior is a backbone + MLP trained on the
    # consensus, and fine-tuning reaches the backbone at backbone_lr_scale of the head's rate
    backbone: str = ""  # "" = features (default) | small-cnn | resnet18
    backbone_weights: str = ""  # a local state dict; "" = seeded random initialisation
    backbone_lr_scale: float = 0.1
    device: str = "auto"  # auto | cpu | cuda (end to end only)
    amp: bool = True  # mixed precision while training the prior, on CUDA only


class FineTunedModel(UserModel):
    def __init__(self, method: "FineTune", params: dict[str, torch.Tensor]):
        self.method, self.params = method, params

    def predict(self, x: np.ndarray) -> np.ndarray:
        m = self.method
        z = m.forward_z(self.params, as_tensor(m.check_features(x)))
        lo, hi = m.score_range
        return np.clip(m.score_mean + m.rater_std * z, lo, hi)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Only the tensors that differ from the prior (at 0 steps: the shifted output bias; after
        fine-tuning, every tuned tensor: end to end that is the whole backbone and head)."""
        prior = self.method.prior_params()
        return {k: v.detach().cpu().clone() for k, v in self.params.items() if not torch.equal(v, prior[k])}


class FineTune(GenericPrior):
    Config = FineTuneConfig
    summary = "BA-PIAA: generic prior fine-tuned on the rater's images (Adam, steps chosen on train raters)"

    def __init__(self, config: FineTuneConfig | None = None, **overrides):
        super().__init__(config, **overrides)
        if self.config.layers not in ("last", "all"):
            raise ConfigError(f"finetune.layers must be 'last' or 'all', got {self.config.layers!r}")
        if self.config.backbone:
            TRAINABLE_BACKBONES.get(self.config.backbone)  # an unknown name is a ConfigError naming the closest one
            if self.config.layers != "all":
                raise ConfigError("finetune.layers must be 'all' with a backbone (the backbone is fine-tuned with the head)")
            if self.config.device not in DEVICES:
                raise ConfigError(f"finetune.device must be one of {', '.join(DEVICES)}, got {self.config.device!r}")
        self.steps_for: dict[int, int] = {}
        self.device = torch.device("cpu")

    # -- end to end on images ---------------------------------------------------------------------
    def _build(self, dim: int, *, initial_weights: bool = True):
        cfg, feature_model = self.config, super()._build
        model, notes = build_model(cfg, lambda: feature_model(dim), lambda net, width: ImageRegressor(net, width, cfg.hidden, cfg.dropout),
                                   initial_weights=initial_weights)
        if initial_weights and self.uses_images:
            self._notes = notes
        return model

    def _fit_prior(self, data: RaterDataset, *, seed: int, progress: bool) -> None:
        if not self.uses_images:
            return super()._fit_prior(data, seed=seed, progress=progress)
        self._remember_data(data)
        cfg = self.config
        targets = generic_targets(data)
        with torch_seeded(seed, "giaa-init"):
            self.model = self._build(data.feature_dim)
        self.device = resolve_device(cfg.device)
        self.fit_log = fit_on_images(
            self.model, data.features, targets.image_index, targets.target.astype(np.float32), weights=targets.n_raters.astype(np.float32),
            epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, backbone_lr_scale=cfg.backbone_lr_scale, weight_decay=cfg.weight_decay,
            val_fraction=cfg.val_fraction, patience=cfg.patience, seed=seed, device=self.device, amp=cfg.amp, progress=progress,
            label="finetune prior (images)",
        )
        self.score_mean, self.rater_std = targets.score_mean, targets.rater_std
        self.prior_shared = False

    # -- the network, as a function of the parameters being tuned --------------------------------
    def _tuned_names(self) -> list[str]:
        names = [n for n, _ in self.model.body.named_parameters()]
        return names[-2:] if self.config.layers == "last" else names

    def prior_params(self) -> dict[str, torch.Tensor]:
        own = dict(self.model.body.named_parameters())
        return {n: own[n].detach() for n in self._tuned_names()}

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        """What the tuned parameters see: the penultimate activations, or the standardised features."""
        with torch.no_grad():
            h = self.model.standardize(x.to(self.device))
            return self.model.body[:-1](h) if self.config.layers == "last" else h

    def _apply(self, params: dict[str, torch.Tensor], h: torch.Tensor) -> torch.Tensor:
        if self.config.layers == "last":
            weight, bias = (params[n] for n in self._tuned_names())
            return (h @ weight.T + bias).squeeze(-1)
        return functional_call(self.model.body, params, (h,)).squeeze(-1)

    def forward_z(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> np.ndarray:
        self.model.eval()
        with torch.no_grad():
            return self._apply(params, self._inputs(x)).double().cpu().numpy()

    def tune(self, x: np.ndarray, y: np.ndarray, checkpoints: list[int]) -> dict[int, dict[str, torch.Tensor]]:
        """Fine-tune on (x, y) and return the parameters after each number of steps in `checkpoints`."""
        self.model.eval()  # no dropout while adapting: full-batch steps on a handful of images
        h = self._inputs(as_tensor(x))
        target = torch.from_numpy(((y - self.score_mean) / self.rater_std).astype(np.float32)).to(self.device)
        names = self._tuned_names()
        params = {n: p.clone() for n, p in self.prior_params().items()}
        with torch.no_grad():  # start from the rater's mean: shift the output bias
            params[names[-1]] += (target - self._apply(params, h)).mean()
        out = {0: {n: p.clone() for n, p in params.items()}} if 0 in checkpoints else {}
        last = max(checkpoints)
        if last > 0:
            leaves = [params[n].requires_grad_() for n in names]
            groups = [{"params": leaves}]
            if self.uses_images:  # the backbone at backbone_lr_scale of the head's rate (BLG-PIAA's BA-PIAA recipe)
                scales = lr_scales(names, self.config.backbone_lr_scale)
                groups = [{"params": [params[n] for n in names if scales[n] != 1.0], "lr": self.config.adapt_lr * self.config.backbone_lr_scale},
                          {"params": [params[n] for n in names if scales[n] == 1.0]}]
            opt = torch.optim.Adam([g for g in groups if g["params"]], lr=self.config.adapt_lr)
            for step in range(1, last + 1):
                loss = ((self._apply(params, h) - target) ** 2).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if step in checkpoints:
                    out[step] = {n: p.detach().clone() for n, p in params.items()}
        return out

    # -- Method ----------------------------------------------------------------------------------
    def fit(self, data: RaterDataset, *, seed: int = 0, progress: bool = False, checkpoint_dir=None) -> "FineTune":
        self._fit_prior(data, seed=seed, progress=progress)
        self.steps_for = self._choose_steps(data, seed)
        return self

    def _choose_steps(self, data: RaterDataset, seed: int) -> dict[int, int]:
        """Per practice shot count, the step count with the lowest squared error on practice queries."""
        cfg = self.config
        grid = sorted(set(cfg.step_grid))
        episodes = practice_episodes(data, cfg.practice_shots, n_raters=cfg.practice_raters, seed=seed, label="finetune")
        errors: dict[int, np.ndarray] = {}
        for ep in episodes:
            x = np.asarray(data.features[ep.image_index], dtype=np.float32)
            xq = as_tensor(x[ep.query])
            tuned = self.tune(x[ep.support], ep.scores[ep.support], grid)
            err = [np.mean((self.score_mean + self.rater_std * self.forward_z(tuned[s], xq) - ep.scores[ep.query]) ** 2) for s in grid]
            errors.setdefault(ep.shots, np.zeros(len(grid)))
            errors[ep.shots] += np.asarray(err)
        return {k: int(grid[int(np.argmin(e))]) for k, e in sorted(errors.items())} or {1: 0}

    def shared_representation(self, x: np.ndarray) -> np.ndarray | None:
        """None: each rater fine-tunes the whole network, so no part of it is shared."""
        return None

    def adapt(self, x_support, y_support, *, big_five=None, seed: int = 0) -> UserModel:
        y = np.asarray(y_support, dtype=np.float64)
        if len(y) == 0:
            return FineTunedModel(self, {n: p.clone() for n, p in self.prior_params().items()})
        steps = int(nearest_in_log(self.steps_for, len(y)))
        tuned = self.tune(self.check_features(x_support, "support features"), y, [steps])
        return FineTunedModel(self, tuned[steps])

    def user_model_from_state(self, state: Mapping[str, torch.Tensor]) -> UserModel:
        """Rebuild a rater's model from `FineTunedModel.state_dict()`: the prior with the stored tensors in place."""
        prior = self.prior_params()
        if not set(state) <= set(prior):
            raise ConfigError(f"finetune profile holds {sorted(set(state) - set(prior))}, expected some of {sorted(prior)} (layers={self.config.layers!r})")
        return FineTunedModel(self, {k: (state[k].to(self.device) if k in state else v.clone()) for k, v in prior.items()})

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = super().state_dict()
        keys = sorted(self.steps_for)
        state["steps_for"] = torch.tensor([keys, [self.steps_for[k] for k in keys]], dtype=torch.int64)
        return state

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        if self.uses_images:  # built without its initial weights: the trained ones follow
            self.model = self._build(0, initial_weights=False)
            self.model.load_state_dict({k[len("prior."):]: v for k, v in state.items() if k.startswith("prior.")})
            self.model.eval()
            self.score_mean, self.rater_std = (float(v) for v in state["prior_stats"])
            self.device = loading_device(self.config.device)
            self.model.to(self.device)
        else:
            super().load_state_dict(state)
        keys, steps = state["steps_for"].tolist()
        self.steps_for = {int(k): int(s) for k, s in zip(keys, steps)}
