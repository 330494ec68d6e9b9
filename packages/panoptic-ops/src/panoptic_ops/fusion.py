"""Duplicate removal through dense pairwise matrices (``csrc/fusion/``): SOLOv2's Matrix NMS of
masks and Panoptic FCN's kernel fusion of generated kernels. Both are one device-agnostic ATen
implementation, op for op the computation of the originals."""

from __future__ import annotations

import torch

from panoptic_ops._library import assert_has_ops
from panoptic_ops._validation import check_tensors, check_threshold

__all__ = ["kernel_fusion", "matrix_nms"]


def matrix_nms(
    masks: torch.Tensor,
    labels: torch.Tensor,
    scores: torch.Tensor,
    kernel: str = "gaussian",
    sigma: float = 2.0,
    filter_thr: float = -1.0,
    nms_pre: int = -1,
    max_num: int = -1,
    mask_area: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Matrix NMS of SOLOv2, mmdetection's ``mask_matrix_nms`` op for op.

    Scores are sorted (stably, so equal scores keep index order; mmdetection's sort is not
    stable), the top ``nms_pre`` kept, each score decayed by its IoU with higher-scored masks of
    the same label (``gaussian``: exp(-sigma * iou^2) / exp(-sigma * comp^2); ``linear``:
    (1 - iou) / (1 - comp), comp being the decaying mask's own largest IoU), scores below
    ``filter_thr`` dropped (when > 0), and the top ``max_num`` returned.

    Args:
        masks (Tensor[N, H, W]): binary masks (bool, integer or float 0/1).
        labels (Tensor[N]): integer labels.
        scores (Tensor[N]): float32/float64 mask scores.
        mask_area (Tensor[N], optional): precomputed areas (default: sum of each mask).

    Returns:
        (scores Tensor[K], labels Tensor[K], masks Tensor[K, H, W], keep_inds Tensor[K] int64),
        sorted by decayed score; keep_inds index the inputs.
    """
    assert_has_ops()
    check_tensors(masks=masks, labels=labels, scores=scores)
    if mask_area is not None:
        check_tensors(mask_area=mask_area)
    if not isinstance(kernel, str):  # the op checks the name; the schema would answer a RuntimeError
        raise ValueError(f"kernel must be 'gaussian' or 'linear', got {kernel!r}")
    # The op returns (scores, labels, keep) and the masks are gathered here: an op output may not
    # alias an input, so returning masks from the op would mean a K x H x W copy inside it for
    # every caller, while mmdetection's 4-tuple is kept for users of its signature.
    out_scores, out_labels, keep = torch.ops.panoptic_ops.matrix_nms(
        masks, labels, scores, kernel, float(sigma), float(filter_thr), int(nms_pre), int(max_num), mask_area
    )
    return out_scores, out_labels, masks[keep], keep


def kernel_fusion(
    kernels: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, threshold: float = 0.9
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Panoptic FCN's class-aware kernel fusion (``thing_kernel_fusion``) as one op.

    Kernels are ordered by score (stable, descending). Two kernels are similar when their cosine
    similarity (norms clamped at 1e-8) is ``>= threshold`` and their labels are equal. With
    ``same`` the upper-triangular similarity relation, a kernel is kept when the running column
    sum of ``same`` on its diagonal is < 2 (no earlier kernel claimed it); each kept kernel
    becomes the equal-weight average of the kernels it is the first to claim.

    Edge case: a kernel not similar to itself (an all-zero kernel, whose cosine similarity is 0,
    or any kernel when threshold > 1) claims nothing, which makes Panoptic FCN's average 0/0 =
    NaN; here it keeps its own kernel unchanged.

    Args:
        kernels (Tensor[N, D]): float32/float64 generated kernels (one per thing candidate).
        scores (Tensor[N]): candidate scores.
        labels (Tensor[N]): integer categories.
        threshold: cosine-similarity threshold (Panoptic FCN: 0.9).

    Returns:
        (kernels Tensor[M, D], scores Tensor[M], labels Tensor[M], keep Tensor[M] int64), in
        decreasing score order; keep indexes the inputs.
    """
    assert_has_ops()
    check_tensors(kernels=kernels, scores=scores, labels=labels)
    return torch.ops.panoptic_ops.kernel_fusion(kernels, scores, labels, check_threshold("threshold", threshold))
