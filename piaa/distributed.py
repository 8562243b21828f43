"""torch.distributed under torchrun: the process group, sharding, and collectives done by hand.

Used by meta-training (raters of a meta-batch split over processes), the end-to-end consensus
pre-training (piaa.e2e.train: batches split, gradients added) and `features extract` (images split).

DDP cannot carry MAML's double backward (pytorch#63812, #63929), so piaa does the data parallelism
by hand: every rank draws the same meta-batch (same seed, same step), keeps a contiguous share of
its raters, computes that share's full meta-gradient, and `all_reduce` sums the shares weighted by
their size, which is the mean over the whole batch. Every rank then takes the same outer step, so
the meta-parameters stay identical without being broadcast. Rank 0 alone writes checkpoints and the
run. Without torchrun's environment (WORLD_SIZE unset or 1) everything here is a no-op: one process
is the default and the reference.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

from piaa.errors import ConfigError

if TYPE_CHECKING:  # torch is imported where it is used: `piaa adapt` with a numpy method never needs it
    import torch


@dataclass(frozen=True)
class Group:
    """This process's place among the training processes (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = Group()


def current() -> Group:
    """The initialised process group as a `Group`, or the single-process group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return Group(dist.get_rank(), dist.get_world_size())
    return SINGLE


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def env_rank() -> int:
    """This process's rank as torchrun set it (0 without torchrun), also after the group is left."""
    return int(os.environ.get("RANK", "0")) if launched_by_torchrun() else 0


def init_from_env(backend: str = "auto") -> Group:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, MASTER_ADDR/PORT); idempotent.

    backend "auto" is NCCL when this process has a CUDA device, else gloo.
    """
    import torch
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return current()
    if not launched_by_torchrun():
        return SINGLE
    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed; run with one process")
    if backend == "auto":
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend)
    return current()


@contextlib.contextmanager
def session(backend: str = "auto") -> Iterator[Group]:
    """Join torchrun's process group for the duration of a job, and leave it afterwards."""
    import torch.distributed as dist

    joined = not (dist.is_available() and dist.is_initialized())
    group = init_from_env(backend)
    try:
        yield group
    finally:
        if joined and group.active and dist.is_initialized():
            dist.destroy_process_group()


def shard(n: int, group: Group) -> slice:
    """The contiguous slice of `n` items (raters) this rank works on; sizes differ by at most one."""
    base, extra = divmod(n, group.world_size)
    start = group.rank * base + min(group.rank, extra)
    return slice(start, start + base + (1 if group.rank < extra else 0))


def barrier(group: Group) -> None:
    if group.active:
        import torch.distributed as dist

        dist.barrier()


def _device_for_collectives(t: torch.Tensor) -> torch.device:
    import torch
    import torch.distributed as dist

    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else t.device


def weighted_sum(tensors: Mapping[str, torch.Tensor], weight: float, group: Group) -> dict[str, torch.Tensor]:
    """Σ over ranks of weight·tensor, key by key in sorted order (the same on every rank).

    With each rank's weight its share of the batch, a per-rank mean becomes the batch mean.
    """
    import torch

    if not group.active:
        return dict(tensors)
    import torch.distributed as dist

    names = sorted(tensors)
    if not names:
        return {}
    flat = torch.cat([tensors[k].detach().reshape(-1).to(torch.float64) for k in names]) * weight
    device = _device_for_collectives(flat)
    flat = flat.to(device)
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    out, offset = {}, 0
    for k in names:
        t = tensors[k]
        out[k] = flat[offset : offset + t.numel()].reshape(t.shape).to(device=t.device, dtype=t.dtype)
        offset += t.numel()
    return out


def broadcast_floats(values: Any, group: Group) -> Any:
    """Rank 0's 1-D float array (or number, as an array of one) on every rank, as a numpy array."""
    import numpy as np
    import torch

    if not group.active:
        return np.atleast_1d(np.asarray(values, dtype=np.float64))
    import torch.distributed as dist

    data = torch.from_numpy(np.atleast_1d(np.asarray(values, dtype=np.float64)).copy()) if group.is_main else torch.zeros(0, dtype=torch.float64)
    size = torch.tensor([data.numel()], dtype=torch.int64)
    size = size.to(_device_for_collectives(size))
    dist.broadcast(size, src=0)
    buf = data if group.is_main else torch.zeros(int(size.item()), dtype=torch.float64)
    buf = buf.to(_device_for_collectives(buf))
    dist.broadcast(buf, src=0)
    return buf.cpu().numpy()


def broadcast_text(text: str | None, group: Group) -> str:
    """Rank 0's string on every rank (as UTF-8 bytes in a tensor: nothing is unpickled)."""
    import torch

    if not group.active:
        return str(text)
    import torch.distributed as dist

    data = (text or "").encode("utf-8") if group.is_main else b""
    size = torch.tensor([len(data)], dtype=torch.int64)
    size = size.to(_device_for_collectives(size))
    dist.broadcast(size, src=0)
    buf = torch.zeros(int(size.item()), dtype=torch.uint8)
    if group.is_main and data:
        buf = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    buf = buf.to(_device_for_collectives(buf))
    dist.broadcast(buf, src=0)
    return bytes(buf.cpu().tolist()).decode("utf-8")


MetaGradientFn = Callable[..., Any]  # (meta, buffers, task batch, inner state) -> piaa.meta.core.MetaStep


def _flat(tree: Mapping[str, Any], prefix: str = "") -> dict[str, torch.Tensor]:
    import torch

    out: dict[str, torch.Tensor] = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}/"))
        elif isinstance(v, torch.Tensor):
            out[prefix + k] = v
    return out


def _unflat(flat: Mapping[str, torch.Tensor], like: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`like` with its tensors replaced by those in `flat` (non-tensor leaves kept)."""
    return {k: (_unflat(flat, v, f"{prefix}{k}/") if isinstance(v, Mapping) else flat.get(prefix + k, v)) for k, v in like.items()}


def weighted_tree_sum(tree: Mapping[str, Any], weight: float, group: Group) -> dict[str, Any]:
    """`weighted_sum` over every tensor of a nested dict; other leaves (a step count) stay as they are."""
    return _unflat(weighted_sum(_flat(tree), weight, group), tree)


class ShardedMetaGradient:
    """Wraps a meta-gradient function `fn(meta, buffers, batch, inner_state) -> MetaStep` so that
    this rank computes the meta-gradient of its share of the batch's tasks and every rank gets the
    mean over the whole batch, as one process computes it.

    `batch` is a `piaa.meta.core.TaskBatch` (tasks along the first axis, `select(rows)`); the
    result's `grads`, `query_loss` (a mean over tasks) and carried `inner_state` (means over tasks
    of the inner optimiser's moments, BLG-PIAA) are averaged with weights = each rank's share.
    """

    def __init__(self, fn: MetaGradientFn, group: Group):
        self.fn, self.group = fn, group

    def __getattr__(self, name: str) -> Any:  # the wrapped object's attributes
        return getattr(self.fn, name)

    def __call__(self, meta, buffers, batch, inner_state: dict | None = None):
        import dataclasses

        n = len(batch)
        if n < self.group.world_size:
            raise ConfigError(f"a meta-batch of {n} raters cannot be split over {self.group.world_size} processes (raise meta_batch or use fewer processes)")
        part = shard(n, self.group)
        share = (part.stop - part.start) / n
        result = self.fn(meta, buffers, batch.select(part), inner_state)
        grads = weighted_tree_sum(result.grads, share, self.group)
        loss = result.query_loss.detach()
        query_loss = weighted_sum({"q": loss}, share, self.group)["q"]
        carried = result.inner_state
        if carried is not None and carried is not inner_state:  # a state computed from this share's tasks
            carried = weighted_tree_sum(carried, share, self.group)
        return dataclasses.replace(result, grads=grads, query_loss=query_loss, inner_state=carried)


def sharded(fn: MetaGradientFn, group: Group | None = None) -> MetaGradientFn:
    """`fn` split over the process group's ranks, or `fn` itself with one process."""
    group = group or current()
    return ShardedMetaGradient(fn, group) if group.active else fn


def agree(value: int, what: str, group: Group) -> None:
    """Fail on every rank, with one clear line, unless all ranks hold the same integer `value`."""
    import torch

    if not group.active:
        return
    import torch.distributed as dist

    t = torch.tensor([value, -value], dtype=torch.int64)
    t = t.to(_device_for_collectives(t))
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    high, low = int(t[0]), -int(t[1])
    if high != low:
        raise ConfigError(f"processes disagree on the {what} ({low} vs {high}): every rank must see the same files "
                          "(put the data, --out and its checkpoints on a filesystem all machines share)")


def main_computes(fn: Callable[..., Any], group: Group | None = None) -> Callable[..., Any]:
    """`fn` evaluated on rank 0 only and its result (a number or a 1-D float array, e.g. validation
    SROCC per rater) broadcast as a numpy array (validation scores drive model selection and early
    stopping, so every rank must see the same numbers). Attributes of `fn` stay reachable."""
    group = group or current()
    if not group.active:
        return fn

    class _MainOnly:
        def __getattr__(self, name: str) -> Any:
            return getattr(fn, name)

        def __call__(self, *args: Any, **kwargs: Any) -> float:
            return broadcast_floats(fn(*args, **kwargs) if group.is_main else None, group)

    return _MainOnly()
