"""Run under torchrun: meta-gradients of a fixed batch with each order, sharded over the ranks.

Rank 0 writes `<out>/<order>.safetensors` (gradients, query loss, carried inner moments) for
test_distributed.py to compare with one process. Usage: distributed_worker.py OUT
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from piaa import distributed
from distributed_case import CASES, meta_gradient

torch.set_num_threads(1)
out = Path(sys.argv[1])
with distributed.session("gloo") as group:
    assert group.world_size == 2, group
    for name in CASES:
        tensors = meta_gradient(name, group)
        if group.is_main:
            save_file(tensors, str(out / f"{name}.safetensors"))
