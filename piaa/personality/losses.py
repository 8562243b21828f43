"""Losses between predicted and target score distributions over ordered bins (torch, batched)."""

from __future__ import annotations

import torch


def squared_l2(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-row sum of squared differences between distributions (the PA-IAA release's loss)."""
    return ((pred - target) ** 2).sum(dim=-1)


def emd(pred: torch.Tensor, target: torch.Tensor, r: float = 2.0) -> torch.Tensor:
    """Per-row earth mover's distance, NIMA form: (mean over bins |CDF_p − CDF_q|^r)^(1/r).

    Matches `piaa.metrics.emd` (numpy); a small epsilon keeps the gradient finite at zero distance.
    """
    diff = (torch.cumsum(pred, dim=-1) - torch.cumsum(target, dim=-1)).abs()
    return (diff.pow(r).mean(dim=-1) + 1e-12).pow(1.0 / r)


DISTRIBUTION_LOSSES = {"l2": squared_l2, "emd": emd}
