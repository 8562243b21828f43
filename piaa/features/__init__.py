"""Image features: backbones by name and a resumable extractor writing a feature store.

`handcrafted` needs only numpy/PIL/scipy; torchvision and CLIP backbones need `pip install 'piaa[vision]'`.
"""

from piaa.features.registry import BACKBONES, Backbone, BackboneSpec, create_backbone, list_backbones, register_backbone

__all__ = ["BACKBONES", "Backbone", "BackboneSpec", "create_backbone", "list_backbones", "register_backbone"]
