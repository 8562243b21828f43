"""Supervised end-to-end training on images through a DataLoader (the consensus prior of the
meta-learners, fine-tuning baselines): Adam with the backbone at its own learning rate, mixed
precision on a GPU, the weights of the best held-out epoch kept, data parallel under torchrun."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from piaa import distributed
from piaa.e2e.device import autocast
from piaa.errors import ConfigError
from piaa.e2e.model import BACKBONE_PREFIX
from piaa.seeding import numpy_rng, torch_seeded
from piaa.training import train_with_early_stopping


class RatedImages(Dataset):
    """(pixel row, target, weight) for the given rows of a PixelArray (or any row-indexable array)."""

    def __init__(self, pixels: Any, rows: np.ndarray, y: np.ndarray, w: np.ndarray):
        self.pixels, self.rows, self.y, self.w = pixels, np.asarray(rows), np.asarray(y, np.float32), np.asarray(w, np.float32)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        return torch.from_numpy(np.asarray(self.pixels[int(self.rows[i])], dtype=np.float32)), self.y[i], self.w[i]


def is_backbone(name: str) -> bool:
    """Whether a parameter name is a backbone weight (`backbone.*`, at any depth)."""
    return name.startswith(BACKBONE_PREFIX) or f".{BACKBONE_PREFIX}" in name


def param_groups(model: nn.Module, lr: float, backbone_lr_scale: float) -> list[dict[str, Any]]:
    backbone = [p for k, p in model.named_parameters() if is_backbone(k)]
    head = [p for k, p in model.named_parameters() if not is_backbone(k)]
    return [g for g in ({"params": backbone, "lr": lr * backbone_lr_scale}, {"params": head, "lr": lr}) if g["params"]]


def global_batches(order: np.ndarray, batch_size: int, world_size: int) -> list[np.ndarray]:
    """`order` cut into batches; a last batch with fewer rows than processes joins the one before,
    so every process has at least one row of every batch."""
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if len(batches) > 1 and len(batches[-1]) < world_size:
        batches[-2:] = [np.concatenate(batches[-2:])]
    return batches


class _RankBatches:
    """A DataLoader batch sampler: this process's share of each global batch."""

    def __init__(self, batches: list[np.ndarray], group: distributed.Group):
        self.parts = [b[distributed.shard(len(b), group)].tolist() for b in batches]

    def __iter__(self):
        return iter(self.parts)

    def __len__(self) -> int:
        return len(self.parts)


def fit_on_images(
    model: nn.Module, pixels: Any, rows: np.ndarray, y: np.ndarray, *, weights: np.ndarray | None = None, epochs: int,
    batch_size: int = 32, lr: float = 1e-3, backbone_lr_scale: float = 0.1, weight_decay: float = 1e-4,
    val_fraction: float = 0.1, patience: int = 12, seed: int = 0, device: torch.device = torch.device("cpu"),
    amp: bool = True, workers: int = 0, progress: bool = False, label: str = "training",
) -> list[dict[str, Any]]:
    """Weighted MSE of `model(pixels[rows])` against `y`; returns the epoch log, keeps the best epoch.

    Under torchrun the processes split every batch (and the held-out rows) and add their gradients
    by hand, each normalised by the whole batch's weight, so all processes take the step one process
    would take on the whole batch (data parallel, each decoding only its own images).
    """
    group = distributed.current()
    n = len(rows)
    order = numpy_rng(seed, "split").permutation(n)
    n_val = int(round(n * val_fraction)) if n >= 20 else 0
    val, train = order[:n_val], order[n_val:]
    if len(train) < group.world_size:
        raise ConfigError(f"{len(train)} training images cannot be split over {group.world_size} processes")
    w = np.ones(n, np.float32) if weights is None else np.asarray(weights, np.float32)
    data = RatedImages(pixels, np.asarray(rows), np.asarray(y), w)
    shuffle = numpy_rng(seed, "image-batches")
    pin = device.type == "cuda"
    val_part = val[distributed.shard(len(val), group)]
    model.to(device)
    opt = torch.optim.Adam(param_groups(model, lr, backbone_lr_scale), weight_decay=weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=amp and device.type == "cuda")

    def weighted_error(xb, yb, wb) -> torch.Tensor:
        with autocast(device, amp):
            pred = model(xb.to(device, non_blocking=True)).float()
        return (wb.to(device) * (pred - yb.to(device)) ** 2).sum()

    def total(values: dict[str, float]) -> dict[str, float]:
        summed = distributed.weighted_sum({k: torch.tensor(v, dtype=torch.float64) for k, v in values.items()}, 1.0, group)
        return {k: float(v) for k, v in summed.items()}

    def run_epoch(epoch: int) -> dict[str, Any]:
        model.train()
        batches = global_batches(train[shuffle.permutation(len(train))], batch_size, group.world_size)
        loader = DataLoader(data, batch_sampler=_RankBatches(batches, group), num_workers=workers, pin_memory=pin)
        err_sum = 0.0
        for batch, (xb, yb, wb) in zip(batches, loader):
            err = weighted_error(xb, yb, wb)
            loss = err / max(float(w[batch].sum()), 1e-12)  # normalised by the whole batch's weight
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if group.active:  # every process ends with the whole batch's gradient
                params = {k: p for k, p in model.named_parameters() if p.grad is not None}
                summed = distributed.weighted_sum({k: p.grad for k, p in params.items()}, 1.0, group)
                for k, p in params.items():
                    p.grad.copy_(summed[k])
            scaler.step(opt)
            scaler.update()
            err_sum += float(err.detach())
        train_loss = total({"e": err_sum})["e"] / max(float(w[train].sum()), 1e-12)
        val_loss = train_loss
        if n_val:
            model.eval()
            with torch.no_grad():
                loader = DataLoader(data, batch_sampler=[b.tolist() for b in global_batches(val_part, batch_size, 1)],
                                    num_workers=workers, pin_memory=pin)
                err_val = sum(float(weighted_error(*b)) for b in loader)
            val_loss = total({"e": err_val})["e"] / max(float(w[val].sum()), 1e-12)
        return {"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss}

    # every process sees the same (all-reduced) val_loss, so all stop at the same epoch
    with torch_seeded(seed, "image-train"):
        return train_with_early_stopping(model, run_epoch, epochs=epochs, patience=patience, progress=progress, label=label)
