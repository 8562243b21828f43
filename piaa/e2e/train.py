"""Supervised end-to-end training on images through a DataLoader (the consensus prior of the
meta-learners, fine-tuning baselines): Adam with the backbone at its own learning rate, mixed
precision on a GPU, the weights of the best held-out epoch kept."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from piaa.e2e.device import autocast
from piaa.e2e.model import BACKBONE_PREFIX
from piaa.progress import progress_bar
from piaa.seeding import derive_seed, numpy_rng, torch_seeded


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


def fit_on_images(
    model: nn.Module, pixels: Any, rows: np.ndarray, y: np.ndarray, *, weights: np.ndarray | None = None, epochs: int,
    batch_size: int = 32, lr: float = 1e-3, backbone_lr_scale: float = 0.1, weight_decay: float = 1e-4,
    val_fraction: float = 0.1, patience: int = 12, seed: int = 0, device: torch.device = torch.device("cpu"),
    amp: bool = True, workers: int = 0, progress: bool = False, label: str = "training",
) -> list[dict[str, Any]]:
    """Weighted MSE of `model(pixels[rows])` against `y`; returns the epoch log, keeps the best epoch."""
    n = len(rows)
    order = numpy_rng(seed, "split").permutation(n)
    n_val = int(round(n * val_fraction)) if n >= 20 else 0
    val, train = order[:n_val], order[n_val:]
    w = np.ones(n, np.float32) if weights is None else np.asarray(weights, np.float32)
    part = lambda idx: RatedImages(pixels, np.asarray(rows)[idx], np.asarray(y)[idx], w[idx])  # noqa: E731
    gen = torch.Generator().manual_seed(derive_seed(seed, "image-batches"))
    loader = DataLoader(part(train), batch_size=batch_size, shuffle=True, generator=gen, num_workers=workers,
                        pin_memory=device.type == "cuda")
    val_loader = DataLoader(part(val), batch_size=batch_size, num_workers=workers) if n_val else None
    model.to(device)
    opt = torch.optim.Adam(param_groups(model, lr, backbone_lr_scale), weight_decay=weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=amp and device.type == "cuda")

    def loss_of(xb, yb, wb):
        with autocast(device, amp):
            pred = model(xb.to(device, non_blocking=True)).float()
        yb, wb = yb.to(device), wb.to(device)
        return (wb * (pred - yb) ** 2).sum() / wb.sum().clamp_min(1e-12), len(xb)

    log: list[dict[str, Any]] = []
    best, best_loss, since_best = copy.deepcopy(model.state_dict()), float("inf"), 0
    with torch_seeded(seed, "image-train"), progress_bar(label, total=epochs, enabled=progress) as advance:
        for epoch in range(epochs):
            model.train()
            total, count = 0.0, 0
            for xb, yb, wb in loader:
                loss, size = loss_of(xb, yb, wb)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                total, count = total + float(loss.detach()) * size, count + size
            train_loss = total / max(1, count)
            val_loss = train_loss
            if val_loader is not None:
                model.eval()
                with torch.no_grad():
                    parts = [loss_of(*b) for b in val_loader]
                val_loss = sum(float(l) * s for l, s in parts) / max(1, sum(s for _, s in parts))
            log.append({"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss})
            advance(1)
            if val_loss < best_loss - 1e-6:
                best, best_loss, since_best = copy.deepcopy(model.state_dict()), val_loss, 0
            else:
                since_best += 1
                if since_best >= patience:
                    break
    model.load_state_dict(best)
    model.eval()
    return log
