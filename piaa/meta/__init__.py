"""Meta-learning for any torch module on any task sampler with any loss (see docs/meta.md).

One algorithm per file around a small functional core:

- `core`: parameter dicts, `TaskBatch`, `MetaStep`, the batched differentiable `inner_loop`;
- `inner`: the inner optimisers (`InnerSGD`, `InnerAdam`);
- `maml` (MAML, first-order MAML), `metasgd` (Meta-SGD), `anil` (ANIL), `reptile` (Reptile, BLG-PIAA);
- `loop`: the training loop (`TrainState`, `run_meta_training`) with validation, early stopping and
  resumable checkpoints; `engines`: what computes a meta-gradient (a hook for other backends);
- `methods`: the registered PIAA presets (`blg-piaa`, `maml`, `fomaml`, `reptile`, `meta-sgd`, `anil`).

Importing `piaa.meta` does not import the PIAA presets (`piaa.meta.methods`).
"""

from piaa.meta.anil import ANIL, last_layer
from piaa.meta.core import Meta, MetaStep, Params, TaskBatch, inner_loop, task_losses, weighted_mse
from piaa.meta.engines import meta_gradient_fn, register_engine
from piaa.meta.inner import InnerAdam, InnerSGD
from piaa.meta.loop import LoopSpec, TrainState, run_meta_training
from piaa.meta.maml import MAML
from piaa.meta.metasgd import MetaSGD
from piaa.meta.reptile import Reptile

__all__ = [
    "ANIL", "MAML", "MetaSGD", "Reptile", "InnerAdam", "InnerSGD", "LoopSpec", "TrainState", "run_meta_training",
    "Meta", "MetaStep", "Params", "TaskBatch", "inner_loop", "task_losses", "weighted_mse", "last_layer",
    "meta_gradient_fn", "register_engine",
]
