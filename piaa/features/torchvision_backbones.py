"""torchvision backbones (piaa[vision]): the penultimate layer of ImageNet classifiers as features.

Weights are never fetched silently: a local file (`--weights FILE`, .pth or .safetensors), the
file torchvision keeps in its cache (`$TORCH_HOME/hub/checkpoints`), or — only with `--download` —
torchvision's own download. `weights="random"` builds a seeded random initialisation (tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from piaa.errors import ConfigError
from piaa.features.registry import Backbone, BackboneSpec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def require_torchvision():
    try:
        import torchvision  # noqa: F401
    except Exception as exc:  # ImportError, or a torchvision built for another torch (RuntimeError/OSError)
        raise ConfigError(f"torchvision backbones need the vision extra: pip install 'piaa[vision]' --extra-index-url https://download.pytorch.org/whl/cpu (CPU torch; or `make install-vision`) (torchvision could not be imported: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    return torchvision


def load_state_file(path: Path) -> dict:
    """A state dict from .safetensors or a torch checkpoint (weights only: nothing executes)."""
    import torch

    if not path.is_file():
        raise ConfigError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"weights file {path} cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ConfigError(f"weights file {path} does not hold a state dict")
    return state


def center_crop_array(image: Image.Image, resize: int, crop: int, mean: Sequence[float], std: Sequence[float], resample=Image.BILINEAR) -> np.ndarray:
    """Shorter side to `resize`, centre crop `crop`², scale to [0, 1], normalise: CHW float32."""
    image = image.convert("RGB")
    w, h = image.size
    scale = resize / min(w, h)
    size = (max(crop, round(w * scale)), max(crop, round(h * scale)))
    image = image.resize(size, resample)
    left, top = (size[0] - crop) // 2, (size[1] - crop) // 2
    image = image.crop((left, top, left + crop, top + crop))
    arr = np.asarray(image, dtype=np.float32) / 255.0
    arr = (arr - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


@dataclass(frozen=True)
class _Arch:
    resize: int
    crop: int
    dim: int
    strip_head: Callable[[Any], None]  # replace the classifier by Identity in place
    build_kwargs: dict


def _fc(model) -> None:
    import torch

    model.fc = torch.nn.Identity()


def _classifier_last(model) -> None:
    import torch

    model.classifier[-1] = torch.nn.Identity()


def _classifier(model) -> None:
    import torch

    model.classifier = torch.nn.Identity()


def _heads(model) -> None:
    import torch

    model.heads = torch.nn.Identity()


ARCHS: dict[str, _Arch] = {
    "resnet18": _Arch(256, 224, 512, _fc, {}),
    "resnet34": _Arch(256, 224, 512, _fc, {}),
    "resnet50": _Arch(256, 224, 2048, _fc, {}),
    "resnet101": _Arch(256, 224, 2048, _fc, {}),
    "inception_v3": _Arch(342, 299, 2048, _fc, {"aux_logits": True, "init_weights": True}),
    "vgg16": _Arch(256, 224, 4096, _classifier_last, {}),
    "efficientnet_b0": _Arch(256, 224, 1280, _classifier, {}),
    "mobilenet_v3_large": _Arch(256, 224, 1280, _classifier_last, {}),
    "vit_b_16": _Arch(256, 224, 768, _heads, {}),
}


class TorchvisionBackbone(Backbone):
    def __init__(self, name: str, model, arch: _Arch, weights_info: str):
        self.name, self.model, self.arch, self.dim, self.weights_info = name, model, arch, arch.dim, weights_info

    def prepare(self, image: Image.Image) -> np.ndarray:
        return center_crop_array(image, self.arch.resize, self.arch.crop, IMAGENET_MEAN, IMAGENET_STD)

    def embed(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self.model(torch.from_numpy(np.stack(batch)))
        return out.float().reshape(len(batch), -1).numpy()

    def describe(self) -> dict[str, Any]:
        return {
            "preprocessing": {"resize_shorter_side": self.arch.resize, "resample": "bilinear", "center_crop": self.arch.crop, "mean": IMAGENET_MEAN, "std": IMAGENET_STD},
            "weights": self.weights_info,
            "layer": "penultimate (classifier removed)",
        }


def _published_state(name: str, download: bool) -> tuple[dict, str]:
    """The published ImageNet weights from torchvision's cache, or fetched when `download`."""
    import torch
    import torchvision

    default = torchvision.models.get_model_weights(name).DEFAULT
    filename = Path(default.url).name
    cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if cached.is_file():
        return load_state_file(cached), str(cached)
    if not download:
        raise ConfigError(
            f"no local weights for {name}: pass --weights FILE (torchvision's {filename}, published at {default.url}), "
            f"put that file in {cached.parent}, or add --download to let torchvision fetch it"
        )
    try:
        return default.get_state_dict(progress=True), default.url
    except Exception as exc:
        raise ConfigError(f"cannot fetch weights for {name} from {default.url} ({type(exc).__name__}); download the file elsewhere and pass --weights FILE") from None


def make_torchvision(name: str, *, weights=None, download: bool = False, seed: int = 0) -> Backbone:
    torchvision = require_torchvision()
    from piaa.seeding import torch_seeded

    arch = ARCHS[name]
    kwargs = dict(arch.build_kwargs)
    if name == "inception_v3" and weights != "random":
        kwargs["transform_input"] = True  # how torchvision's published inception weights expect input
    with torch_seeded("backbone", name, seed):
        model = getattr(torchvision.models, name)(weights=None, **kwargs)
    if weights == "random":
        info = f"random (seed {seed})"
    else:
        if weights is None:
            state, info = _published_state(name, download)
        else:
            path = Path(weights)
            state, info = load_state_file(path), str(path.resolve())
        try:
            result = model.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # shape mismatches raise even when not strict
            first = next((l.strip() for l in str(exc).splitlines() if "size mismatch" in l), str(exc).splitlines()[0])
            raise ConfigError(f"weights {info} do not fit {name} ({first})") from None
        missing = [k for k in result.missing_keys if not k.startswith("AuxLogits")]
        if missing or result.unexpected_keys:
            detail = f"missing {missing[:3]}" if missing else f"unexpected {result.unexpected_keys[:3]}"
            raise ConfigError(f"weights {info} do not fit {name} ({detail}{' ...' if len(missing or result.unexpected_keys) > 3 else ''})")
    arch.strip_head(model)
    if hasattr(model, "AuxLogits"):
        model.AuxLogits = None
        model.aux_logits = False
    model.eval()
    return TorchvisionBackbone(name, model, arch, info)


SPECS = {
    name: BackboneSpec(name, make_torchvision, f"torchvision {name}, {arch.dim}-d penultimate layer, {arch.crop}px centre crop", needs="vision", modules=("torchvision",))
    for name, arch in ARCHS.items()
}
