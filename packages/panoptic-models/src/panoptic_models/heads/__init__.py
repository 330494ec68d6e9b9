"""Head blocks shared by several methods."""

from .deeplab import DeepLabPredictionHead
from .towers import ConvTower, FCOSHead, Scale

__all__ = ["ConvTower", "DeepLabPredictionHead", "FCOSHead", "Scale"]
