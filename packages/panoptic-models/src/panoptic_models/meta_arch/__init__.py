"""The five meta-architectures (same names as ``panoptic_core.targets``)."""

from .base import PanopticModel, as_categories
from .panoptic_deeplab import PanopticDeepLab, panoptic_deeplab_losses, panoptic_deeplab_postprocess

__all__ = [
    "PanopticDeepLab",
    "PanopticModel",
    "as_categories",
    "panoptic_deeplab_losses",
    "panoptic_deeplab_postprocess",
]
