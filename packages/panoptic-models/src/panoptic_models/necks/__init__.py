"""Necks: built from a backbone's ``output_shape()``, called on its feature dict."""

from .aspp import ASPP, DeepLabV3PlusDecoder
from .coord_conv import CoordConv2d, add_coords, coord_grid
from .fpn import FPN, LastLevelMaxPool, LastLevelP6P7
from .semantic_fpn import SemanticFPN
from .two_way_fpn import TwoWayFPN

__all__ = [
    "ASPP",
    "FPN",
    "CoordConv2d",
    "DeepLabV3PlusDecoder",
    "LastLevelMaxPool",
    "LastLevelP6P7",
    "SemanticFPN",
    "TwoWayFPN",
    "add_coords",
    "coord_grid",
]
