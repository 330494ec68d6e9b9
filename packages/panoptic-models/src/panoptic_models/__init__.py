"""panoptic-models: backbones, necks, heads and panoptic meta-architectures.

Subpackages:
    panoptic_models.backbones   ResNet-18/34/50/101, EfficientNet-B0..B5 (``build_backbone``)
    panoptic_models.necks       FPN, 2-way FPN, semantic FPN, ASPP + DeepLabV3+ decoder, CoordConv
    panoptic_models.heads       shared head blocks
    panoptic_models.meta_arch   the methods (Panoptic-DeepLab, ...)
"""

from .__about__ import __version__
from .build import METHODS, build_model
from .config import BackboneConfig, PanopticDeepLabConfig, from_dict, to_dict
from .meta_arch import PanopticDeepLab, PanopticModel
from .structures import PanopticResult

__all__ = [
    "METHODS",
    "BackboneConfig",
    "PanopticDeepLab",
    "PanopticDeepLabConfig",
    "PanopticModel",
    "PanopticResult",
    "__version__",
    "build_model",
    "from_dict",
    "to_dict",
]
