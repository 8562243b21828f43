"""Checkpoint selection during meta-training by the one-SE rule (`piaa.one_se`).

A validation curve over meta-steps is noisy: its argmax lands anywhere on a plateau and moves with
any rounding difference (another engine, another machine). The rule keeps the earliest validated
checkpoint that the validation raters cannot tell from the best: among the checkpoints still in the
running, the earliest within one paired standard error of the best. A checkpoint leaves the running
for good once another beats it by more than one paired standard error, so only checkpoints that can
still be chosen are held (weights and per-rater scores), and a resumed run, which restores exactly
this set, chooses as the uninterrupted one does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from piaa.meta.core import Meta, clone
from piaa.one_se import OneSEChoice, clearly_beaten, one_se_choice

RULE = ("one-SE: the earliest validated checkpoint within one paired standard error (over validation raters) of the best, "
        "among those no other checkpoint beats by more than one paired standard error")


class CheckpointSelection:
    """The checkpoints in the running (step -> weights, step -> per-rater validation scores) and the
    one the rule selects."""

    def __init__(self) -> None:
        self.weights: dict[int, Meta] = {}
        self.scores: dict[int, np.ndarray] = {}
        self.selected: int | None = None

    def add(self, step: int, meta: Meta, scores: Any) -> bool:
        """Enter the checkpoint of `step` with its per-rater scores (a scalar counts as one rater:
        the rule is then the argmax, ties to the earlier); True when the selection changed."""
        self.weights[step], self.scores[step] = clone(meta), np.atleast_1d(np.asarray(scores, dtype=np.float64)).copy()
        for beaten in clearly_beaten(self.scores):
            del self.weights[beaten], self.scores[beaten]
        previous, self.selected = self.selected, self.choice().chosen
        return self.selected != previous

    def keep_latest(self, step: int, meta: Meta) -> None:
        """Without a validation score the latest weights are the answer."""
        self.weights, self.scores, self.selected = {step: clone(meta)}, {step: np.array([])}, step

    def choice(self) -> OneSEChoice[int]:
        return one_se_choice(self.scores)

    @property
    def best(self) -> Meta:
        return self.weights[self.selected]

    def summary(self) -> dict[str, Any]:
        """The selected step, the argmax step it did not choose, their mean validation scores and the
        paired standard error of their difference (for the fit log); empty without validation scores."""
        if self.selected is None or not self.scores[self.selected].size:
            return {}
        c = self.choice()
        return {"selected_step": c.chosen, "val_srocc_selected": _finite(c.mean[c.chosen]), "argmax_step": c.best,
                "val_srocc_argmax": _finite(c.mean[c.best]), "se_argmax_vs_selected": round(c.se[c.chosen], 6),
                "checkpoints_in_running": sorted(self.weights), "rule": RULE}

    # -- checkpoint ------------------------------------------------------------------------------
    def tensors(self) -> dict[str, Any]:
        return {str(s): {"meta": self.weights[s], "scores": torch.from_numpy(self.scores[s])} for s in self.weights}

    def info(self) -> dict[str, Any]:
        return {"selected_step": self.selected}

    def restore(self, tree: dict[str, Any], info: dict[str, Any]) -> None:
        self.weights = {int(s): node["meta"] for s, node in tree.items()}
        self.scores = {int(s): node["scores"].numpy().astype(np.float64) for s, node in tree.items()}
        self.selected = None if info["selected_step"] is None else int(info["selected_step"])


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None

