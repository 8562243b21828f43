"""Joint training of the two heads by alternating batches, and the personality head's quality report.

One epoch walks through the generic-aesthetics examples in batches; after every generic batch comes
one personality batch (cycling through the likes), so both tasks shape the shared trunk at the same
pace. Early stopping watches the sum of both validation losses: held-out images for aesthetics, held-out
personality raters for personality (whole raters, so the report measures generalisation to new people).
End to end the examples are pixel rows (`LazyRows` of the dataset's images, decoded a batch at a
time), the backbone learns at its own rate, and batches go to the device (float16 autocast on CUDA).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from piaa.e2e.device import autocast
from piaa.e2e.train import param_groups
from piaa.metrics import plcc
from piaa.nn import as_tensor
from piaa.personality.data import LazyRows
from piaa.personality.model import PersonalityAssistedNet, predict_attributes, predict_heads
from piaa.seeding import numpy_rng, torch_seeded
from piaa.training import train_with_early_stopping
from piaa.tasks.format import BIG_FIVE

TRAITS = tuple(t[0].upper() for t in BIG_FIVE)  # O, C, E, A, N


@dataclass(frozen=True)
class TaskData:
    """One task's examples: features rows (or LazyRows of images), targets, per-example weights."""

    x: np.ndarray | LazyRows
    y: np.ndarray
    w: np.ndarray
    a: np.ndarray | None = None  # auxiliary targets per example (standardised image attributes; NaN = unknown)

    def __len__(self) -> int:
        return len(self.x)

    def take(self, idx: np.ndarray) -> "TaskData":
        return TaskData(self.x[idx], self.y[idx], self.w[idx], None if self.a is None else self.a[idx])


def _weighted(loss_rows: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return (w * loss_rows).sum() / w.sum()


def attribute_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the known (non-NaN) attribute targets; 0 when none is known."""
    known = ~torch.isnan(target)
    if not bool(known.any()):
        return pred.sum() * 0.0
    return ((pred - torch.nan_to_num(target)) ** 2)[known].mean()


def train_multitask(
    net: PersonalityAssistedNet,
    generic: tuple[TaskData, TaskData],
    personality: tuple[TaskData, TaskData] | None,
    *,
    distribution_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    personality_weight: float,
    attribute_weight: float = 0.0,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    patience: int,
    seed: int,
    progress: bool = False,
    backbone_lr_scale: float = 0.1,
    device: torch.device = torch.device("cpu"),
    amp: bool = False,
) -> list[dict[str, Any]]:
    """Adam over alternating batches; keeps the best epoch by validation loss. Returns the epoch log.

    `generic` and `personality` are (train, validation) pairs; `personality=None` trains the
    aesthetics head alone (a dataset without personality raters). With a backbone in `net`, its
    weights learn at `backbone_lr_scale` times `lr`. With `attribute_weight` > 0 (and attribute
    targets `generic[i].a`, a network with an attribute head) every aesthetics batch also trains the
    attribute head on the same images.
    """
    rng = numpy_rng(seed, "pa-iaa", "batches")
    net.to(device)
    epoch = _MultitaskEpoch(net, generic, personality, distribution_loss, personality_weight, batch_size, rng, device, amp, attribute_weight)
    with torch_seeded(seed, "pa-iaa", "train"):
        params = net.parameters() if net.backbone is None else param_groups(net, lr, backbone_lr_scale)
        epoch.opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
        return train_with_early_stopping(net, epoch, epochs=epochs, patience=patience, progress=progress, label="pa-iaa multi-task")


def _tensors(d: TaskData, device: torch.device) -> tuple[torch.Tensor | LazyRows, torch.Tensor, torch.Tensor]:
    """Features as one tensor; images stay LazyRows (decoded per batch by `_rows`)."""
    x = d.x if isinstance(d.x, LazyRows) else as_tensor(d.x).to(device)
    return x, as_tensor(d.y).to(device), as_tensor(d.w).to(device)


def _rows(x: torch.Tensor | LazyRows, idx: torch.Tensor, device: torch.device) -> torch.Tensor:
    if isinstance(x, LazyRows):
        return as_tensor(np.asarray(x[idx.numpy()])).to(device, non_blocking=True)
    return x[idx]


class _MultitaskEpoch:
    """One epoch of the multi-task training: each aesthetics batch is followed by a personality
    batch (drawn in turn from a reshuffled order); its log entry's val_loss is the weighted sum."""

    def __init__(self, net, generic, personality, distribution_loss, personality_weight: float, batch_size: int, rng: np.random.Generator,
                 device: torch.device = torch.device("cpu"), amp: bool = False, attribute_weight: float = 0.0):
        self.net, self.loss, self.weight, self.batch_size, self.rng = net, distribution_loss, personality_weight, batch_size, rng
        self.device, self.amp = device, amp
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp and device.type == "cuda")  # disabled: a plain backward and step
        self.opt: torch.optim.Optimizer | None = None
        self.g_train, self.g_val = generic
        self.g, self.gv = _tensors(self.g_train, device), _tensors(self.g_val, device)
        self.attribute_weight = attribute_weight if net.attributes is not None and self.g_train.a is not None else 0.0
        if self.attribute_weight:
            self.ga, self.gva = as_tensor(self.g_train.a).to(device), as_tensor(self.g_val.a).to(device)
        self.personality = personality
        if personality is not None:
            self.p_train, self.p_val = personality
            self.p, self.pv = _tensors(self.p_train, device), _tensors(self.p_val, device)
            self.p_order, self.p_pos = rng.permutation(len(self.p_train)), 0

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast(self.device, self.amp):
            dist, p = self.net(x)
        return dist.float(), p.float()

    def _step(self, loss: torch.Tensor) -> None:
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()

    def _personality_loss(self, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return _weighted(((self._forward(x)[1] - y) ** 2).mean(dim=-1), w)

    def _val_loss(self, data: tuple, rows_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> float:
        """Weighted mean of `rows_loss(x, y)` over a validation set: features in one pass, images
        a batch at a time."""
        x, y, w = data
        if not isinstance(x, LazyRows):
            return float(_weighted(rows_loss(x, y), w))
        total = 0.0
        for start in range(0, len(x), self.batch_size):
            idx = torch.arange(start, min(start + self.batch_size, len(x)))
            total += float((w[idx] * rows_loss(_rows(x, idx, self.device), y[idx])).sum())
        return total / float(w.sum())

    def _personality_batch(self) -> tuple[float, int]:
        if self.p_pos + self.batch_size > len(self.p_order):
            self.p_order, self.p_pos = self.rng.permutation(len(self.p_train)), 0
        pidx = torch.from_numpy(self.p_order[self.p_pos : self.p_pos + self.batch_size])
        self.p_pos += self.batch_size
        px, py, pw = self.p
        ploss = self._personality_loss(_rows(px, pidx, self.device), py[pidx], pw[pidx])
        self._step(self.weight * ploss)
        return float(ploss.detach()) * len(pidx), len(pidx)

    def _aesthetics_losses(self, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, a: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(aesthetics loss, attribute loss or None) of one batch, through one pass of the trunk."""
        with autocast(self.device, self.amp):
            h = self.net.hidden(x)
            dist = self.net.heads(h)[0]
            att = self.net.attributes(h) if a is not None else None
        g = _weighted(self.loss(dist.float(), y), w)
        return g, (attribute_loss(att.float(), a) if att is not None else None)

    def _attribute_val_loss(self) -> float:
        """The attribute head's loss on the validation images (features in one pass, images a batch at a time)."""
        x, _, _ = self.gv
        if not isinstance(x, LazyRows):
            with autocast(self.device, self.amp):
                return float(attribute_loss(self.net.attributes(self.net.hidden(x)).float(), self.gva))
        preds = []
        for start in range(0, len(x), self.batch_size):
            idx = torch.arange(start, min(start + self.batch_size, len(x)))
            with autocast(self.device, self.amp):
                preds.append(self.net.attributes(self.net.hidden(_rows(x, idx, self.device))).float())
        return float(attribute_loss(torch.cat(preds), self.gva))

    def val_losses(self) -> tuple[float, float, float]:
        self.net.eval()
        with torch.no_grad():
            g = self._val_loss(self.gv, lambda x, y: self.loss(self._forward(x)[0], y)) if len(self.g_val) else float("nan")
            att = self._attribute_val_loss() if self.attribute_weight and len(self.g_val) else float("nan")
            personality_rows = lambda x, y: ((self._forward(x)[1] - y) ** 2).mean(dim=-1)  # noqa: E731
            p = self._val_loss(self.pv, personality_rows) if self.personality is not None and len(self.p_val) else float("nan")
        self.net.train()
        return g, p, att

    def __call__(self, epoch: int) -> dict[str, Any]:
        self.net.train()
        order = self.rng.permutation(len(self.g_train))
        gx, gy, gw = self.g
        g_sum = p_sum = a_sum = 0.0
        g_n = p_n = 0
        for start in range(0, len(order), self.batch_size):
            idx = torch.from_numpy(order[start : start + self.batch_size])
            loss, a_loss = self._aesthetics_losses(_rows(gx, idx, self.device), gy[idx], gw[idx], self.ga[idx] if self.attribute_weight else None)
            self._step(loss if a_loss is None else loss + self.attribute_weight * a_loss)
            g_sum += float(loss.detach()) * len(idx)
            a_sum += 0.0 if a_loss is None else float(a_loss.detach()) * len(idx)
            g_n += len(idx)
            if self.personality is not None:
                total, n = self._personality_batch()
                p_sum, p_n = p_sum + total, p_n + n
        g_val_loss, p_val_loss, a_val_loss = self.val_losses()
        entry = {"epoch": epoch + 1, "aesthetics_train_loss": g_sum / max(g_n, 1), "aesthetics_val_loss": g_val_loss}
        monitored = g_val_loss if np.isfinite(g_val_loss) else entry["aesthetics_train_loss"]
        if self.attribute_weight:
            entry["attribute_train_loss"], entry["attribute_val_loss"] = a_sum / max(g_n, 1), a_val_loss
            monitored += self.attribute_weight * (a_val_loss if np.isfinite(a_val_loss) else entry["attribute_train_loss"])
        if self.personality is not None:
            entry["personality_train_loss"] = p_sum / max(p_n, 1)
            entry["personality_val_loss"] = p_val_loss
            monitored += self.weight * (p_val_loss if np.isfinite(p_val_loss) else entry["personality_train_loss"])
        entry["val_loss"] = monitored
        return entry


def personality_quality(net: PersonalityAssistedNet, x: np.ndarray, big_five: np.ndarray) -> dict[str, Any]:
    """Per-trait Pearson r and mean absolute error between the predicted personality of liked images
    and the Big-Five of the raters who liked them (use held-out raters for an honest figure)."""
    _, _, p = predict_heads(net, x)
    out: dict[str, Any] = {"n_likes": int(len(x)), "traits": {}}
    for k, trait in enumerate(TRAITS):
        r = float("nan")
        if len(x) >= 3 and np.ptp(p[:, k]) > 0 and np.ptp(big_five[:, k]) > 0:
            r = plcc(p[:, k], big_five[:, k])
        out["traits"][trait] = {"pearson_r": r, "mae": float(np.mean(np.abs(p[:, k] - big_five[:, k]))) if len(x) else float("nan")}
    rs = [v["pearson_r"] for v in out["traits"].values()]
    out["mean_pearson_r"] = float(np.nanmean(rs)) if np.isfinite(rs).any() else float("nan")
    out["mean_mae"] = float(np.mean([v["mae"] for v in out["traits"].values()]))
    return out


def attribute_quality(net: PersonalityAssistedNet, held_out: TaskData) -> dict[str, Any]:
    """Pearson r per attribute between the attribute head and the (standardised) targets of held-out
    images, and their mean: how well the auxiliary task is learned."""
    pred = (predict_attributes(net, held_out.x) - net.attribute_mean.double().numpy()) / net.attribute_std.double().numpy()
    rs = []
    for k in range(pred.shape[1]):
        known = np.isfinite(held_out.a[:, k])
        ok = known.sum() >= 3 and np.ptp(pred[known, k]) > 0 and np.ptp(held_out.a[known, k]) > 0
        rs.append(plcc(pred[known, k], held_out.a[known, k]) if ok else float("nan"))
    return {"heldout_images": int(len(held_out)), "pearson_r": rs, "mean_pearson_r": float(np.nanmean(rs)) if np.isfinite(rs).any() else float("nan")}
