"""Box NMS with torchvision's semantics and per-class (batched) NMS (``csrc/nms/``)."""

from __future__ import annotations

import torch

from panoptic_ops._library import assert_has_ops
from panoptic_ops._validation import check_tensors, check_threshold

__all__ = ["batched_nms", "nms"]


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression, exactly torchvision.ops.nms.

    Boxes are (x1, y1, x2, y2) with area (x2 - x1) * (y2 - y1); boxes are visited in stable
    descending score order (equal scores keep index order) and a box suppresses the later ones
    whose IoU with it is strictly greater than ``iou_threshold`` (the IoU is compared in double,
    like torchvision's CPU kernel).

    Args:
        boxes (Tensor[N, 4]): float32/float64 (also float16/bfloat16 on CUDA).
        scores (Tensor[N]): floating scores of the boxes, on the boxes' device.
        iou_threshold: discard boxes with IoU > iou_threshold.

    Returns:
        Tensor[K] int64: indices of the kept boxes in decreasing score order.
    """
    assert_has_ops()
    check_tensors(boxes=boxes, scores=scores)
    return torch.ops.panoptic_ops.nms(boxes, scores, check_threshold("iou_threshold", iou_threshold))


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Per-category NMS in one call: boxes of different ``idxs`` never suppress each other.

    Equal to running :func:`nms` on each category's boxes and listing the survivors in
    decreasing score order (equal scores in index order). torchvision's ``batched_nms`` does the
    same through a per-class loop, or for small inputs by shifting boxes per class (which can
    round coordinates); this op computes every IoU on the original coordinates.

    Args:
        boxes (Tensor[N, 4]), scores (Tensor[N]): as in :func:`nms`.
        idxs (Tensor[N]): integer category of each box.
        iou_threshold: discard boxes with IoU > iou_threshold.

    Returns:
        Tensor[K] int64 indices of the kept boxes in decreasing score order.
    """
    assert_has_ops()
    check_tensors(boxes=boxes, scores=scores, idxs=idxs)
    return torch.ops.panoptic_ops.batched_nms(boxes, scores, idxs, check_threshold("iou_threshold", iou_threshold))
