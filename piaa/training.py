"""Supervised training of a feature regressor with a held-out split for early stopping."""

from __future__ import annotations

import copy
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from piaa.nn import as_tensor
from piaa.progress import progress_bar
from piaa.seeding import numpy_rng, torch_seeded
from piaa.threads import job_threads


def fit_regressor(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    val_fraction: float,
    patience: int,
    seed: int,
    weights: np.ndarray | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    progress: bool = False,
    label: str = "training",
) -> list[dict[str, Any]]:
    """Adam on weighted MSE; keeps the weights of the best validation epoch. Returns the epoch log."""
    rng = numpy_rng(seed, "split")
    n = len(x)
    order = rng.permutation(n)
    n_val = int(round(n * val_fraction)) if n >= 20 else 0
    val, train = order[:n_val], order[n_val:]
    xt, yt = as_tensor(x), as_tensor(y)
    wt = as_tensor(np.ones(n) if weights is None else weights)
    loss_fn = loss_fn or (lambda pred, target, w: (w * (pred - target) ** 2).sum() / w.sum())
    log: list[dict[str, Any]] = []
    with torch_seeded(seed, "train"), job_threads():
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
        best, best_loss, since_best = copy.deepcopy(model.state_dict()), float("inf"), 0
        with progress_bar(label, total=epochs, enabled=progress) as advance:
            for epoch in range(epochs):
                model.train()
                perm = train[rng.permutation(len(train))]
                total = 0.0
                for start in range(0, len(perm), batch_size):
                    idx = torch.from_numpy(perm[start : start + batch_size])
                    loss = loss_fn(model(xt[idx]), yt[idx], wt[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    total += float(loss.detach()) * len(idx)
                train_loss = total / max(1, len(perm))
                if n_val:
                    model.eval()
                    with torch.no_grad():
                        vi = torch.from_numpy(val)
                        val_loss = float(loss_fn(model(xt[vi]), yt[vi], wt[vi]))
                else:
                    val_loss = train_loss
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
