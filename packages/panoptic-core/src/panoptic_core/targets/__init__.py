"""One target generator per method: ``generator(PanopticTarget) -> dict`` of tensors.

Every generator follows :class:`TargetGenerator`: it declares ``keys`` (all it returns, for
every image), ``ragged`` (entries that differ in size between images, which
:class:`~panoptic_core.data.PanopticCollate` keeps as per-image lists) and ``per_level``
(lists with one tensor per pyramid level, stacked level by level). :data:`GLOSSARY` is the one
table of target key names and their meaning.
"""

from .base import GLOSSARY, TargetGenerator
from .ciae import CIAETargets, expand_boxes
from .combined import CombinedTargets
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
    "GLOSSARY",
    "CIAETargets",
    "CombinedTargets",
    "EINetTargets",
    "PanopticDeepLabTargets",
    "PanopticFCNTargets",
    "SOLOv2Targets",
    "TargetGenerator",
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
