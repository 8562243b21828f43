"""The meta-training loop around one `TrainState`: resume it, step it, validate it, checkpoint it.

Every random draw of meta-step `s` (which tasks, which rows, dropout masks) is derived from
(seed, s), so a run resumed from the checkpoint at step `s` continues exactly as the uninterrupted
run would have: same batches, same masks, same weights at the end. The outer step is a stock
`torch.optim` optimiser over the flattened meta-parameters. Model selection and early stopping
follow the one-SE rule over validation raters (`piaa.meta.selection`); the checkpoints it can still
choose are part of the state, so a resumed run chooses and stops as the uninterrupted one.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from piaa import distributed
from piaa.errors import RunError
from piaa.heap import keep_freed_memory
from piaa.meta.checkpoint import load_checkpoint, save_checkpoint
from piaa.meta.core import Meta, MetaStep, Params, TaskBatch, clone, flatten, unflatten
from piaa.one_se import mean_score
from piaa.meta.selection import CheckpointSelection
from piaa.progress import progress_bar
from piaa.seeding import derive_seed

Sample = Callable[[int], TaskBatch]  # meta-step -> that step's task batch (deterministic in the step)
MakeOuter = Callable[[list[torch.Tensor]], torch.optim.Optimizer]
Score = Callable[[Meta], Any]  # meta-parameters -> validation score per rater (higher is better), or one number


@dataclass(frozen=True)
class LoopSpec:
    meta_steps: int
    val_every: int = 100
    patience: int = 0  # validations without a change of the selected checkpoint before stopping (0: never stop early)
    min_steps: int = 0  # never stop early before this many meta-steps (slow starters)
    checkpoint_every: int = 100
    carry_inner_state: bool = False  # feed each step's inner state into the next (BLG-PIAA)


@dataclass
class TrainState:
    """Everything a meta-training run is at one moment; a checkpoint is exactly this."""

    meta: Meta
    optimizer: torch.optim.Optimizer
    selection: CheckpointSelection = field(default_factory=CheckpointSelection)
    step: int = 0
    since_best: int = 0  # validations since the selected checkpoint last changed
    done: bool = False
    inner_state: dict | None = None
    log: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def start(cls, meta: Meta, make_outer: MakeOuter) -> "TrainState":
        meta = {g: {k: v.detach().clone().requires_grad_(True) for k, v in p.items()} for g, p in meta.items()}
        return cls(meta=meta, optimizer=make_outer(list(flatten(meta).values())))

    @property
    def best(self) -> Meta:
        """The selected prior (the current weights before the first validation)."""
        return self.selection.best if self.selection.selected is not None else clone(self.meta)

    @property
    def best_step(self) -> int:
        return self.selection.selected if self.selection.selected is not None else self.step

    @property
    def best_score(self) -> float:
        """Mean validation score of the selected checkpoint (-inf when there is none)."""
        return mean_score(self.selection.scores[self.best_step]) if self.selection.selected is not None else -math.inf

    # -- checkpoint ------------------------------------------------------------------------------
    def tensors(self) -> dict[str, torch.Tensor]:
        tree: dict[str, Any] = {"meta": self.meta, "candidates": self.selection.tensors(), "outer": _optimizer_tensors(self.optimizer, list(flatten(self.meta)))}
        if self.inner_state is not None:
            tree["inner"] = {k: v for k, v in self.inner_state.items() if isinstance(v, dict)}
        return flatten(tree)

    def info(self) -> dict[str, Any]:
        return {"log": self.log, "done": self.done, "since_best": self.since_best, **self.selection.info(),
                "inner_t": None if self.inner_state is None else self.inner_state["t"]}

    def restore(self, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
        tree = unflatten(tensors)
        with torch.no_grad():
            for g, p in self.meta.items():
                for k, v in p.items():
                    v.copy_(tree["meta"][g][k])
        self.selection.restore(tree.get("candidates", {}), info)
        _load_optimizer_tensors(self.optimizer, list(flatten(self.meta)), tree.get("outer", {}))
        self.step, self.log, self.done = int(info["step"]), list(info["log"]), bool(info["done"])
        self.since_best = int(info["since_best"])
        if info["inner_t"] is not None:
            self.inner_state = {"t": int(info["inner_t"]), **tree.get("inner", {})}
        self.log.append({"resumed_at_step": self.step})


def _optimizer_tensors(opt: torch.optim.Optimizer, names: list[str]) -> dict[str, Any]:
    """The optimiser's per-parameter state as {state key: nested meta-parameter tree} of tensors."""
    out: dict[str, dict[str, torch.Tensor]] = {}
    for index, entries in opt.state_dict()["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                out.setdefault(key, {})[names[index]] = value
    return {key: unflatten(flat) for key, flat in out.items()}


def _load_optimizer_tensors(opt: torch.optim.Optimizer, names: list[str], tree: dict[str, Any]) -> None:
    index = {name: i for i, name in enumerate(names)}
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, nested in tree.items():
        for name, value in flatten(nested).items():
            state.setdefault(index[name], {})[key] = value.clone()
    opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})


def resume(state: TrainState, checkpoint_dir: Path | None, fingerprint: str) -> bool:
    """Load the checkpoint in `checkpoint_dir` into `state` if there is one; refuse another run's."""
    found = load_checkpoint(checkpoint_dir) if checkpoint_dir is not None else None
    if found is None:
        return False
    tensors, info = found
    if info.get("fingerprint") != fingerprint:
        raise RunError(f"{checkpoint_dir} holds a checkpoint of a different configuration, seed or dataset (delete it to start over)")
    if "selected_step" not in info:
        raise RunError(f"{checkpoint_dir} holds a checkpoint of an older piaa, without one-SE checkpoint selection (delete it to start over)")
    state.restore(tensors, info)
    return True


def checkpoint(state: TrainState, checkpoint_dir: Path | None, fingerprint: str) -> None:
    if checkpoint_dir is not None and distributed.current().is_main:  # under torchrun rank 0 writes; every rank resumes
        save_checkpoint(checkpoint_dir, state.step, state.tensors(), {"fingerprint": fingerprint, **state.info()})


def meta_step(state: TrainState, meta_gradient: Callable[..., MetaStep], buffers: Params, batch: TaskBatch, *, seed: int, carry: bool) -> MetaStep:
    """One outer update: the meta-gradient of `batch` (dropout masks seeded by the step), then the optimiser."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "dropout", state.step))
        result = meta_gradient(state.meta, buffers, batch, state.inner_state if carry else None)
    grads = flatten(result.grads)
    for name, p in flatten(state.meta).items():
        p.grad = grads[name].detach().to(p.dtype)
    state.optimizer.step()
    state.optimizer.zero_grad(set_to_none=True)
    if carry:
        state.inner_state = result.inner_state
    state.step += 1
    return result


def validate(state: TrainState, score: Score | None) -> None:
    """Score the current meta-parameters per validation rater and let the one-SE rule
    (`piaa.meta.selection`) select among the checkpoints; patience counts validations that leave
    the selection unchanged."""
    if score is None:
        state.selection.keep_latest(state.step, state.meta)
        state.since_best = 0
        return
    scores = np.atleast_1d(np.asarray(score(state.meta), dtype=np.float64))
    changed = state.selection.add(state.step, state.meta, scores)
    value = mean_score(scores)
    state.log.append({"step": state.step, "val_srocc": value if math.isfinite(value) else None, "selected_so_far": state.selection.selected})
    state.since_best = 0 if changed else state.since_best + 1


def run_meta_training(
    state: TrainState,
    meta_gradient: Callable[..., MetaStep],
    sample: Sample,
    spec: LoopSpec,
    *,
    buffers: Params | None = None,
    seed: int = 0,
    score: Score | None = None,
    checkpoint_dir: Path | None = None,
    fingerprint: str = "",
    progress: bool = False,
    on_step: Callable[[int], None] | None = None,
) -> TrainState:
    """Meta-train `state` to `spec.meta_steps` (or early stop); `state.best` is the selected prior.

    `score` (higher is better, e.g. validation SROCC per validation rater) drives model selection
    and early stopping by the one-SE rule; the starting point competes too. A score of one number
    makes the rule a plain argmax (ties: the earlier step). With `checkpoint_dir`, a checkpoint of
    the same `fingerprint` is resumed. Turns on `piaa.heap.keep_freed_memory` (process-wide): every
    meta-step frees and reallocates the same buffers.
    """
    keep_freed_memory()
    buffers = dict(buffers or {})
    resumed = resume(state, checkpoint_dir, fingerprint)
    distributed.agree(state.step, "meta-step to resume from", distributed.current())
    if not resumed and not state.done:
        validate(state, score)
    with progress_bar("meta-training", total=spec.meta_steps, enabled=progress) as advance:
        advance(state.step)
        while not state.done and state.step < spec.meta_steps:
            started = time.perf_counter()
            result = meta_step(state, meta_gradient, buffers, sample(state.step), seed=seed, carry=spec.carry_inner_state)
            state.log.append({"step": state.step, "query_loss": round(float(result.query_loss), 6), "seconds": round(time.perf_counter() - started, 4)})
            advance(1)
            if state.step % spec.val_every == 0 or state.step == spec.meta_steps:
                validate(state, score)
                stop = spec.patience and state.since_best >= spec.patience and state.step >= spec.min_steps
                state.done = bool(stop) or state.step == spec.meta_steps
            state.done = state.done or state.step == spec.meta_steps
            if state.step % spec.checkpoint_every == 0 or state.done:
                checkpoint(state, checkpoint_dir, fingerprint)
            if on_step is not None:
                on_step(state.step)
    return state
