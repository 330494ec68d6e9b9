"""Backbones with the detectron2 contract: ``forward(x) -> dict``, ``output_shape()``, ``size_divisibility``.

ResNet-18/34/50/101 and EfficientNet-B0..B5 with torchvision's module names (torchvision state dicts load
with the same keys), returning ``res2``..``res5`` (strides 4, 8, 16, 32); :func:`build_backbone` builds one
by name and loads a local torchvision-format state dict.
"""

from .base import Backbone, ShapeSpec
from .build import BACKBONES, build_backbone, load_backbone_weights
from .efficientnet import EfficientNet
from .resnet import ResNet

__all__ = ["BACKBONES", "Backbone", "EfficientNet", "ResNet", "ShapeSpec", "build_backbone", "load_backbone_weights"]
