"""Losses of the five methods: pure functions (formula and source in each docstring) and modules."""

from .ciae import CategoryMemory, CIAELoss, ciae_loss, memory_momentum, segment_sums, triplet_log_loss
from .einet import centernet_focal_loss, centroid_alignment_loss, centroid_contrast_loss, dictionary_triplet_loss
from .functional import (
    bootstrapped_cross_entropy,
    centerness_loss,
    dice_loss,
    iou_loss,
    reduce,
    sigmoid_focal_loss,
    weighted_dice_loss,
    weighted_l1_loss,
    weighted_mse_loss,
)
from .modules import (
    BootstrappedCrossEntropy,
    CenternessLoss,
    DiceLoss,
    IoULoss,
    SigmoidFocalLoss,
    WeightedDiceLoss,
    WeightedL1Loss,
    WeightedMSELoss,
)

__all__ = [
    "BootstrappedCrossEntropy",
    "CIAELoss",
    "CategoryMemory",
    "CenternessLoss",
    "DiceLoss",
    "IoULoss",
    "SigmoidFocalLoss",
    "WeightedDiceLoss",
    "WeightedL1Loss",
    "WeightedMSELoss",
    "bootstrapped_cross_entropy",
    "centerness_loss",
    "centernet_focal_loss",
    "centroid_alignment_loss",
    "centroid_contrast_loss",
    "ciae_loss",
    "dice_loss",
    "dictionary_triplet_loss",
    "iou_loss",
    "memory_momentum",
    "reduce",
    "segment_sums",
    "sigmoid_focal_loss",
    "triplet_log_loss",
    "weighted_dice_loss",
    "weighted_l1_loss",
    "weighted_mse_loss",
]
