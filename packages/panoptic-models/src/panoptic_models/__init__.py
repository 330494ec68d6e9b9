"""panoptic-models: backbones, necks, heads and panoptic meta-architectures.

Subpackages:
    panoptic_models.backbones   ResNet-18/34/50/101, EfficientNet-B0..B5 (``build_backbone``)
    panoptic_models.necks       FPN, 2-way FPN, semantic FPN, ASPP + DeepLabV3+ decoder, CoordConv
    panoptic_models.heads       shared head blocks
    panoptic_models.meta_arch   the methods (Panoptic-DeepLab, ...)
"""

from .__about__ import __version__
from .build import METHODS, build_model
from .config import (
    BackboneConfig,
    CIAEConfig,
    EfficientPSConfig,
    EINetConfig,
    PanopticDeepLabConfig,
    PanopticFCNConfig,
    from_dict,
    to_dict,
)
from .meta_arch import CIAE, EfficientPS, EINet, PanopticDeepLab, PanopticFCN, PanopticModel
from .structures import PanopticResult

__all__ = [
    "CIAE",
    "METHODS",
    "BackboneConfig",
    "CIAEConfig",
    "EINet",
    "EINetConfig",
    "EfficientPS",
    "EfficientPSConfig",
    "PanopticDeepLab",
    "PanopticDeepLabConfig",
    "PanopticFCN",
    "PanopticFCNConfig",
    "PanopticModel",
    "PanopticResult",
    "__version__",
    "build_model",
    "from_dict",
    "to_dict",
]
