"""CLIP image encoders via open_clip (piaa[vision]). Features are the L2-normalised image embedding.

Offline use: `--weights FILE` with the open_clip checkpoint for the model. Without it, open_clip
is asked for the published weights only when `--download` is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from piaa.errors import ConfigError
from piaa.features.registry import Backbone, BackboneSpec

# piaa name → (open_clip model name, published pretrained tag, embedding dim)
CLIP_MODELS: dict[str, tuple[str, str, int]] = {
    "clip-vit-b-32": ("ViT-B-32", "openai", 512),
    "clip-vit-b-16": ("ViT-B-16", "openai", 512),
    "clip-vit-l-14": ("ViT-L-14", "openai", 768),
    "clip-rn50": ("RN50", "openai", 1024),
}


def require_open_clip():
    try:
        import open_clip
    except Exception as exc:
        raise ConfigError(f"CLIP backbones need open_clip: pip install 'piaa[vision]' --extra-index-url https://download.pytorch.org/whl/cpu (CPU torch; or `make install-vision`) (open_clip could not be imported: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    return open_clip


class ClipBackbone(Backbone):
    def __init__(self, name: str, model, preprocess, dim: int, weights_info: str):
        self.name, self.model, self.preprocess, self.dim, self.weights_info = name, model, preprocess, dim, weights_info

    def prepare(self, image: Image.Image):
        return self.preprocess(image.convert("RGB"))

    def embed(self, batch: Sequence[Any]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            z = self.model.encode_image(torch.stack(list(batch)))
            z = torch.nn.functional.normalize(z.float(), dim=-1)
        return z.numpy()

    def describe(self) -> dict[str, Any]:
        return {"preprocessing": {"open_clip": repr(self.preprocess)}, "weights": self.weights_info, "layer": "image embedding, L2-normalised"}


def make_clip(name: str, *, weights=None, download: bool = False, seed: int = 0) -> Backbone:
    open_clip = require_open_clip()
    from piaa.seeding import torch_seeded

    model_name, tag, dim = CLIP_MODELS[name]
    if weights == "random":
        pretrained, info = None, f"random (seed {seed})"
    elif weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise ConfigError(f"weights file {path} does not exist")
        pretrained, info = str(path.resolve()), str(path.resolve())
    elif download:
        pretrained, info = tag, f"open_clip {model_name} {tag}"
    else:
        raise ConfigError(f"no local weights for {name}: pass --weights FILE (the open_clip checkpoint for {model_name} '{tag}') or add --download to let open_clip fetch it")
    try:
        with torch_seeded("backbone", name, seed):
            model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=pretrained)
    except Exception as exc:
        raise ConfigError(f"cannot load {name} weights from {info} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    model.eval()
    return ClipBackbone(name, model, preprocess, dim, info)


SPECS = {
    name: BackboneSpec(name, make_clip, f"CLIP {model_name} ({tag}) image embedding, {dim}-d, via open_clip", needs="vision", modules=("open_clip",))
    for name, (model_name, tag, dim) in CLIP_MODELS.items()
}
