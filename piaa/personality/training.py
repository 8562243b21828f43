"""Joint training of the two heads by alternating batches, and the personality head's quality report.

One epoch walks through the generic-aesthetics examples in batches; after every generic batch comes
one personality batch (cycling through the likes), so both tasks shape the shared trunk at the same
pace. Early stopping watches the sum of both validation losses: held-out images for aesthetics, held-out
personality raters for personality (whole raters, so the report measures generalisation to new people).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from piaa.metrics import plcc
from piaa.nn import as_tensor
from piaa.personality.model import PersonalityAssistedNet, predict_heads
from piaa.seeding import numpy_rng, torch_seeded
from piaa.training import train_with_early_stopping
from piaa.tasks.format import BIG_FIVE

TRAITS = tuple(t[0].upper() for t in BIG_FIVE)  # O, C, E, A, N


@dataclass(frozen=True)
class TaskData:
    """One task's examples: features rows, targets, per-example weights."""

    x: np.ndarray
    y: np.ndarray
    w: np.ndarray

    def __len__(self) -> int:
        return len(self.x)

    def take(self, idx: np.ndarray) -> "TaskData":
        return TaskData(self.x[idx], self.y[idx], self.w[idx])


def _weighted(loss_rows: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return (w * loss_rows).sum() / w.sum()


def train_multitask(
    net: PersonalityAssistedNet,
    generic: tuple[TaskData, TaskData],
    personality: tuple[TaskData, TaskData] | None,
    *,
    distribution_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    personality_weight: float,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    patience: int,
    seed: int,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Adam over alternating batches; keeps the best epoch by validation loss. Returns the epoch log.

    `generic` and `personality` are (train, validation) pairs; `personality=None` trains the
    aesthetics head alone (a dataset without personality raters).
    """
    rng = numpy_rng(seed, "pa-iaa", "batches")
    g_train, g_val = generic
    tensors = lambda d: (as_tensor(d.x), as_tensor(d.y), as_tensor(d.w))  # noqa: E731
    gx, gy, gw = tensors(g_train)
    gvx, gvy, gvw = tensors(g_val)
    if personality is not None:
        p_train, p_val = personality
        px, py, pw = tensors(p_train)
        pvx, pvy, pvw = tensors(p_val)
        p_order, p_pos = rng.permutation(len(p_train)), 0

    def val_losses() -> tuple[float, float]:
        net.eval()
        with torch.no_grad():
            g = float(_weighted(distribution_loss(net(gvx)[0], gvy), gvw)) if len(g_val) else float("nan")
            p = float("nan")
            if personality is not None and len(p_val):
                p = float(_weighted(((net(pvx)[1] - pvy) ** 2).mean(dim=-1), pvw))
        net.train()
        return g, p

    with torch_seeded(seed, "pa-iaa", "train"):
        opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)

        def run_epoch(epoch: int) -> dict[str, Any]:
            nonlocal p_order, p_pos
            net.train()
            order = rng.permutation(len(g_train))
            g_sum = p_sum = 0.0
            g_n = p_n = 0
            for start in range(0, len(order), batch_size):
                idx = torch.from_numpy(order[start : start + batch_size])
                loss = _weighted(distribution_loss(net(gx[idx])[0], gy[idx]), gw[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                g_sum += float(loss.detach()) * len(idx)
                g_n += len(idx)
                if personality is not None:
                    if p_pos + batch_size > len(p_order):
                        p_order, p_pos = rng.permutation(len(p_train)), 0
                    pidx = torch.from_numpy(p_order[p_pos : p_pos + batch_size])
                    p_pos += batch_size
                    ploss = _weighted(((net(px[pidx])[1] - py[pidx]) ** 2).mean(dim=-1), pw[pidx])
                    opt.zero_grad(set_to_none=True)
                    (personality_weight * ploss).backward()
                    opt.step()
                    p_sum += float(ploss.detach()) * len(pidx)
                    p_n += len(pidx)
            g_val_loss, p_val_loss = val_losses()
            entry = {
                "epoch": epoch + 1,
                "aesthetics_train_loss": g_sum / max(g_n, 1),
                "aesthetics_val_loss": g_val_loss,
            }
            monitored = g_val_loss if np.isfinite(g_val_loss) else entry["aesthetics_train_loss"]
            if personality is not None:
                entry["personality_train_loss"] = p_sum / max(p_n, 1)
                entry["personality_val_loss"] = p_val_loss
                p_mon = p_val_loss if np.isfinite(p_val_loss) else entry["personality_train_loss"]
                monitored += personality_weight * p_mon
            entry["val_loss"] = monitored
            return entry

        return train_with_early_stopping(net, run_epoch, epochs=epochs, patience=patience, progress=progress, label="pa-iaa multi-task")


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
