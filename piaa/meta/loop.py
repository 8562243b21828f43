"""The meta-training loop: meta-batches of raters, validation, model selection, checkpoints, resume.

Every random draw of meta-step `s` (which raters, which images, dropout masks) is derived from
(seed, s), so a run resumed from the checkpoint at step `s` continues exactly as the uninterrupted
run would have: same batches, same masks, same weights at the end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from piaa import distributed
from piaa.errors import RunError
from piaa.meta.checkpoint import load_checkpoint, save_checkpoint
from piaa.meta.inner import Params
from piaa.meta.outer import MetaGradient, OuterOptimizer, split_meta
from piaa.meta.tasks import TaskPool
from piaa.progress import progress_bar
from piaa.seeding import derive_seed, numpy_rng


@dataclass(frozen=True)
class LoopSpec:
    meta_steps: int
    meta_batch: int
    support_shots: tuple[int, ...]
    query_size: int
    val_every: int
    patience: int  # validations without improvement before stopping (0: never stop early)
    checkpoint_every: int
    carry_inner_state: bool = False


def _clone(params: Params) -> Params:
    return {k: v.detach().clone() for k, v in params.items()}


def run_meta_training(
    meta: Params,
    buffers: Params,
    meta_grad: MetaGradient,
    outer: OuterOptimizer,
    pool: TaskPool,
    spec: LoopSpec,
    *,
    seed: int,
    validate: Callable[[Params], float] | None = None,
    checkpoint_dir: Path | None = None,
    fingerprint: str = "",
    progress: bool = False,
    on_step: Callable[[int], None] | None = None,
) -> tuple[Params, list[dict[str, Any]]]:
    """Meta-train from `meta`; returns the best meta-parameters (by validation) and the step log.

    With `checkpoint_dir`, an existing checkpoint of the same `fingerprint` is resumed.
    """
    step, log = 0, []
    best, best_score, since_best, done = _clone(meta), float("-inf"), 0, False
    inner_state = meta_grad.inner.init(split_meta(meta)[0]) if spec.carry_inner_state else None

    resumed = load_checkpoint(checkpoint_dir) if checkpoint_dir is not None else None
    if resumed is not None:
        tensors, info = resumed
        if info.get("fingerprint") != fingerprint:
            raise RunError(f"{checkpoint_dir} holds a checkpoint of a different configuration, seed or dataset (delete it to start over)")
        step, log, done = int(info["step"]), list(info["log"]), bool(info.get("done", False))
        log.append({"resumed_at_step": step})
        best_score, since_best = float(info["best_score"]) if info["best_score"] is not None else float("-inf"), int(info["since_best"])
        meta = {k[5:]: v for k, v in tensors.items() if k.startswith("meta.")}
        best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
        outer.load_state_tensors(int(info["outer_t"]), {k[6:]: v for k, v in tensors.items() if k.startswith("outer.")})
        if inner_state is not None:
            inner_state = {"t": int(info["inner_t"])}
            if "m" in meta_grad.inner.init({}):
                inner_state["m"] = {k[8:]: v for k, v in tensors.items() if k.startswith("inner.m.")}
                inner_state["v"] = {k[8:]: v for k, v in tensors.items() if k.startswith("inner.v.")}

    def checkpoint() -> None:
        if checkpoint_dir is None or not distributed.current().is_main:  # rank 0 writes, every rank resumes
            return
        tensors = {**{f"meta.{k}": v for k, v in meta.items()}, **{f"best.{k}": v for k, v in best.items()}}
        tensors.update({f"outer.{k}": v for k, v in outer.state_tensors().items()})
        info: dict[str, Any] = {"fingerprint": fingerprint, "log": log, "done": done, "since_best": since_best,
                                "best_score": None if best_score == float("-inf") else best_score, "outer_t": outer.t}
        if inner_state is not None:
            info["inner_t"] = inner_state["t"]
            for part in ("m", "v"):
                tensors.update({f"inner.{part}.{k}": v for k, v in inner_state.get(part, {}).items()})
        save_checkpoint(checkpoint_dir, step, tensors, info)

    def run_validation() -> None:
        nonlocal best, best_score, since_best
        if validate is None:
            best, since_best = _clone(meta), 0
            return
        score = float(validate(meta))
        log.append({"step": step, "val_srocc": score})
        if score > best_score + 1e-6:
            best, best_score, since_best = _clone(meta), score, 0
        else:
            since_best += 1

    if step == 0 and not done:
        run_validation()  # the initial prior (e.g. the giaa head) competes in model selection
    buffers = dict(buffers)
    n_pool = len(pool)
    with progress_bar("meta-training", total=spec.meta_steps, enabled=progress) as advance:
        advance(step)
        while not done and step < spec.meta_steps:
            rng = numpy_rng(seed, "meta-batch", step)
            which = rng.choice(n_pool, size=min(spec.meta_batch, n_pool), replace=False)
            batch = pool.batch(which, spec.support_shots, spec.query_size, rng)
            started = time.perf_counter()
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(derive_seed(seed, "dropout", step))
                grads, info = meta_grad(meta, buffers, batch, inner_state)
            meta = outer.step(meta, grads)
            if inner_state is not None:
                inner_state = info["state"]
            step += 1
            log.append({"step": step, "query_loss": round(info["query_loss"], 6), "seconds": round(time.perf_counter() - started, 4)})
            advance(1)
            if step % spec.val_every == 0 or step == spec.meta_steps:
                run_validation()
                if spec.patience and since_best >= spec.patience:
                    done = True
            if step == spec.meta_steps:
                done = True
            if step % spec.checkpoint_every == 0 or done:
                checkpoint()
            if on_step is not None:
                on_step(step)
    return best, log

