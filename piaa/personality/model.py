"""The multi-task network: a shared trunk over image features (or, end to end, over a trainable
backbone's features of the pixels), two heads.

aesthetics head → softmax over the score bins (its mean is the generic score);
personality head → five tanh outputs in O, C, E, A, N order, read as "the Big-Five of the people
who like this image"; optional attribute head → the image's mean attribute scores (PARA's quality,
composition, ...), standardised, an auxiliary task that shapes the shared trunk.
No BatchNorm, so the network behaves the same in train and eval apart from dropout.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from piaa.e2e.model import PixelRows
from piaa.nn import FeatureStandardizer, as_tensor


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with `n` torch intra-op threads (0: leave torch's setting), restoring the setting afterwards.

    Networks this small train and predict fastest on one thread; more threads only add
    synchronisation, which gets much worse when other processes compete for the cores.
    """
    if n <= 0 or n == torch.get_num_threads():
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class PersonalityAssistedNet(nn.Module):
    def __init__(self, in_dim: int, bins: Sequence[float], trunk: Sequence[int] = (256, 128), dropout: float = 0.2,
                 backbone: nn.Module | None = None, n_attributes: int = 0):
        """`backbone` (end to end): input rows are pixels, turned into `in_dim` features by it.
        `n_attributes` > 0: an extra head predicting per-image attribute scores (PARA's)."""
        super().__init__()
        if not trunk:
            raise ValueError("the shared trunk needs at least one hidden layer")
        self.backbone = backbone
        self.standardize = FeatureStandardizer(in_dim) if backbone is None else PixelRows()
        layers: list[nn.Module] = []
        last = in_dim
        for width in trunk:
            layers += [nn.Linear(last, int(width)), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            last = int(width)
        self.trunk = nn.Sequential(*layers)
        self.aesthetics = nn.Linear(last, len(bins))
        self.personality = nn.Linear(last, 5)
        self.register_buffer("bins", torch.as_tensor(np.asarray(bins, dtype=np.float32)))
        self.attributes: nn.Linear | None = None
        if n_attributes > 0:
            self.attributes = nn.Linear(last, n_attributes)
            # the head predicts z-scores; these map them back to the attributes' own scale
            self.register_buffer("attribute_mean", torch.zeros(n_attributes))
            self.register_buffer("attribute_std", torch.ones(n_attributes))

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The shared trunk's output."""
        return self.trunk(self.features(x))

    def heads(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.softmax(self.aesthetics(h), dim=-1), torch.tanh(self.personality(h))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(score distribution [n, bins] summing to one, personality [n, 5] in [-1, 1])."""
        return self.heads(self.hidden(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """What the trunk sees: standardised feature rows, or the backbone's features of pixel rows."""
        if self.backbone is None:
            return self.standardize(x)
        side = math.isqrt(x.shape[-1] // 3)
        return self.backbone(x.reshape(-1, 3, side, side))

    def generic_score(self, dist: torch.Tensor) -> torch.Tensor:
        """Mean of a predicted distribution, on the dataset's score scale."""
        return dist @ self.bins


@torch.no_grad()
def predict_heads(net: PersonalityAssistedNet, x: np.ndarray, batch: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(generic score [n], distribution [n, bins], personality [n, 5]) as float64 numpy, in eval mode.

    `x` is anything row-sliceable (pixel rows are decoded one batch at a time, 256 images each)."""
    batch = batch or (65536 if net.backbone is None else 256)
    device = net.bins.device
    was_training = net.training
    net.eval()
    scores, dists, pers = [], [], []
    for i in range(0, len(x), batch):
        dist, p = net(as_tensor(np.asarray(x[i : i + batch])).to(device))
        scores.append(net.generic_score(dist).double().cpu().numpy())
        dists.append(dist.double().cpu().numpy())
        pers.append(p.double().cpu().numpy())
    net.train(was_training)
    if not scores:
        return np.zeros(0), np.zeros((0, len(net.bins))), np.zeros((0, 5))
    return np.concatenate(scores), np.concatenate(dists), np.concatenate(pers)


@torch.no_grad()
def predict_attributes(net: PersonalityAssistedNet, x: np.ndarray, batch: int = 65536) -> np.ndarray:
    """The attribute head's predictions [n, n_attributes] on the attributes' own scale (eval mode)."""
    if net.attributes is None:
        raise ValueError("this network has no attribute head")
    was_training = net.training
    net.eval()
    out = [(net.attributes(net.hidden(as_tensor(np.asarray(x[i : i + batch])))) * net.attribute_std + net.attribute_mean).double().numpy()
           for i in range(0, len(x), batch)]
    net.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, net.attributes.out_features))
