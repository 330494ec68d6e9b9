"""One target generator per method: ``generator(PanopticTarget) -> dict`` of tensors.

Each generator has a ``ragged`` attribute naming the keys whose values differ in size between
images; :class:`~panoptic_core.data.PanopticCollate` keeps those as per-image lists and stacks
the rest.
"""

from .ciae import CIAETargets, expand_boxes
from .common import (
    centroids,
    downsample_masks,
    draw_centernet_gaussian,
    gaussian_radius,
    segment_index_map,
    subsample,
)
from .deeplab import PanopticDeepLabTargets, deeplab_gaussian
from .einet import EINetTargets
from .panoptic_fcn import PanopticFCNTargets, guided_positions
from .reference import detectron2_deeplab_targets, panoptic_fcn_generate_gt
from .solov2 import SOLOv2Targets

__all__ = [
    "CIAETargets",
    "EINetTargets",
    "PanopticDeepLabTargets",
    "PanopticFCNTargets",
    "SOLOv2Targets",
    "centroids",
    "deeplab_gaussian",
    "detectron2_deeplab_targets",
    "downsample_masks",
    "draw_centernet_gaussian",
    "expand_boxes",
    "gaussian_radius",
    "guided_positions",
    "panoptic_fcn_generate_gt",
    "segment_index_map",
    "subsample",
]
