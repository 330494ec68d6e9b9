"""The five meta-architectures (same names as ``panoptic_core.targets``)."""

from .base import PanopticModel, as_categories
from .ciae import CIAE, ciae_postprocess
from .efficientps import EfficientPS, efficientps_losses, efficientps_postprocess
from .einet import EINet, einet_oracle_outputs, einet_postprocess
from .panoptic_deeplab import PanopticDeepLab, panoptic_deeplab_losses, panoptic_deeplab_postprocess
from .panoptic_fcn import PanopticFCN, panoptic_fcn_losses, panoptic_fcn_postprocess

__all__ = [
    "CIAE",
    "EINet",
    "EfficientPS",
    "PanopticDeepLab",
    "PanopticFCN",
    "PanopticModel",
    "as_categories",
    "ciae_postprocess",
    "efficientps_losses",
    "efficientps_postprocess",
    "einet_oracle_outputs",
    "einet_postprocess",
    "panoptic_deeplab_losses",
    "panoptic_deeplab_postprocess",
    "panoptic_fcn_losses",
    "panoptic_fcn_postprocess",
]
