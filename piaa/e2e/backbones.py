"""Trainable image backbones for end-to-end training, by name.

`small-cnn` is built in (plain torch, GroupNorm, ~25k parameters): for tests and CPU runs.
`resnet18` and `inception-v3` are torchvision's (the vision extra), their BatchNorm layers switched to batch statistics
(`torch.func.replace_all_batch_norm_modules_`): running statistics cannot be updated inside a
differentiated inner loop. Weights come only from a local file; none given means a seeded random
initialisation, which `notes` says out loud.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from piaa.errors import ConfigError
from piaa.plugins import Registry

# name -> a function building (module, feature dim); other packages add theirs through the entry-point
# group `piaa.trainable_backbones` (see piaa.plugins)
TRAINABLE_BACKBONES: "Registry[Callable[[], tuple[nn.Module, int]]]" = Registry("trainable backbone", group="piaa.trainable_backbones")


@dataclass(frozen=True)
class BuiltBackbone:
    module: nn.Module  # images [n, 3, H, W] -> features [n, dim]
    dim: int
    note: str  # where the weights came from, one line


class SmallCNN(nn.Module):
    """Three strided 3x3 conv blocks with GroupNorm, global average pooling: 64-d features."""

    def __init__(self, width: int = 16):
        super().__init__()
        chans = [3, width, 2 * width, 4 * width]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(chans, chans[1:])):
            layers += [nn.Conv2d(a, b, 3, stride=1 if i == 0 else 2, padding=1), nn.GroupNorm(4, b), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.dim = chans[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(-2, -1))


@TRAINABLE_BACKBONES.register("small-cnn")
def small_cnn() -> tuple[nn.Module, int]:
    net = SmallCNN()
    return net, net.dim


@TRAINABLE_BACKBONES.register("resnet18")
def resnet18() -> tuple[nn.Module, int]:
    from piaa.features.torchvision_backbones import require_torchvision

    tv = require_torchvision()
    net = tv.models.resnet18(weights=None)  # never downloads: weights come from backbone_weights
    net.fc = nn.Identity()
    torch.func.replace_all_batch_norm_modules_(net)
    return net, 512


@TRAINABLE_BACKBONES.register("inception-v3")
def inception_v3() -> tuple[nn.Module, int]:
    """torchvision's Inception-v3 (PA-IAA's trunk in the paper): 2048-d pooled features, no auxiliary
    classifier (its tensors in a weights file are ignored). Images must be at least 75x75 (299 as trained)."""
    from piaa.features.torchvision_backbones import require_torchvision

    tv = require_torchvision()
    net = tv.models.inception_v3(weights=None, aux_logits=False, init_weights=True, transform_input=False)
    net.fc = nn.Identity()
    torch.func.replace_all_batch_norm_modules_(net)
    return net, 2048


def build_backbone(name: str, weights: str = "") -> BuiltBackbone:
    """The named backbone, with `weights` (a local .safetensors or .pth state dict) or random init.

    Call under a seeded context (`piaa.seeding.torch_seeded`) for a reproducible random init.
    """
    module, dim = TRAINABLE_BACKBONES.get(name)()
    if not weights:
        return BuiltBackbone(module, dim, f"backbone {name} started from a random initialisation (no backbone_weights file given)")
    from piaa.features.torchvision_backbones import load_state_file

    path = Path(weights).expanduser()
    state = {k.removeprefix("module."): v for k, v in load_state_file(path).items() if not k.startswith(("fc.", "classifier."))}
    own = module.state_dict()
    missing = [k for k in own if k not in state and not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    if missing:
        raise ConfigError(f"weights file {path} does not fit backbone {name}: no tensor {missing[0]!r} ({len(missing)} missing)")
    for k, v in state.items():
        if k in own and own[k].shape != v.shape:
            raise ConfigError(f"weights file {path}: tensor {k!r} has shape {tuple(v.shape)}, backbone {name} expects {tuple(own[k].shape)}")
    module.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    return BuiltBackbone(module, dim, f"backbone {name} starts from {path}")
