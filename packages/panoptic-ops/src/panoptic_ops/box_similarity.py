"""CIAE box-filtered similarity between pixel embeddings and query embeddings (``csrc/box_similarity/``).

Coordinates: pixel (y, x) of an embedding map with stride ``s`` stands for the image point
``((x + 0.5) * s, (y + 0.5) * s)`` (the center of its s x s footprint). It is inside the box
(x1, y1, x2, y2), given in image coordinates, when ``x1 <= (x + 0.5) * s <= x2`` and
``y1 <= (y + 0.5) * s <= y2``: both edges included, compared in double. Unboxed (stuff)
queries use :data:`UNBOXED` = (-inf, -inf, inf, inf), which contains every pixel; a box with a
NaN coordinate contains none.
"""

from __future__ import annotations

import math

import torch

from panoptic_ops._library import assert_has_ops
from panoptic_ops._validation import check_same_device, check_tensor

__all__ = ["UNBOXED", "box_filtered_assign", "box_filtered_similarity", "box_mask"]

UNBOXED = (-math.inf, -math.inf, math.inf, math.inf)
_COMPUTE_TYPES = (torch.float32, torch.float64)


def _prepare(embeddings, queries, boxes, stride):
    check_tensor("embeddings", embeddings, dims=4)
    batch, dim = embeddings.shape[:2]
    check_tensor("queries", queries, shape=(batch, None, dim))
    check_tensor("boxes", boxes, shape=(batch, queries.shape[1], 4))
    for name, t in (("embeddings", embeddings), ("queries", queries), ("boxes", boxes)):
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating tensor, got {t.dtype}")
    check_same_device(embeddings=embeddings, queries=queries, boxes=boxes)
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride must be a positive integer (image pixels per embedding pixel), got {stride!r}")
    # Half-precision inputs (autocast) are computed in float32.
    dtype = torch.promote_types(embeddings.dtype, queries.dtype)
    if dtype not in _COMPUTE_TYPES:
        dtype = torch.float32
    if boxes.dtype not in _COMPUTE_TYPES:
        boxes = boxes.to(torch.float64)
    return embeddings.to(dtype), queries.to(dtype), boxes


def box_filtered_similarity(
    embeddings: torch.Tensor, queries: torch.Tensor, boxes: torch.Tensor, stride: int
) -> torch.Tensor:
    """Similarity of every pixel to every query, zero outside the query's box (CIAE Sec. IV-B).

    ``S[b, n, y, x] = sum_d E[b, d, y, x] * Q[b, n, d]`` inside box ``n``, else 0; with
    L2-normalised embeddings and queries this is the cosine similarity. Differentiable with
    respect to ``embeddings`` and ``queries``.

    Args:
        embeddings (Tensor[B, D, H, W]): pixel embeddings at 1/stride of the image.
        queries (Tensor[B, N, D]): query embeddings (instances and stuff classes).
        boxes (Tensor[B, N, 4]): (x1, y1, x2, y2) in image pixels; :data:`UNBOXED` for stuff.
        stride: image pixels per embedding pixel.

    Returns:
        Tensor[B, N, H, W] in the embeddings' dtype (float32 for half inputs).
    """
    assert_has_ops()
    e, q, b = _prepare(embeddings, queries, boxes, stride)
    return torch.ops.panoptic_ops.box_filtered_similarity(e, q, b, stride)


def box_filtered_assign(
    embeddings: torch.Tensor, queries: torch.Tensor, boxes: torch.Tensor, stride: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel argmax of :func:`box_filtered_similarity` without materialising it (inference).

    The argmax runs over all N similarities of a pixel, the zeros outside boxes included, so a
    pixel whose in-box similarities are all negative goes to the first query whose box does not
    contain it. Ties go to the first query.

    Args:
        embeddings (Tensor[B, D, H, W]), queries (Tensor[B, N, D]), boxes (Tensor[B, N, 4]),
        stride: as in :func:`box_filtered_similarity`; N must be >= 1.

    Returns:
        (ids Tensor[B, H, W] int64 query index, scores Tensor[B, H, W] its similarity).
    """
    assert_has_ops()
    e, q, b = _prepare(embeddings, queries, boxes, stride)
    if q.shape[1] == 0 and e.shape[2] * e.shape[3] > 0:
        raise ValueError("box_filtered_assign needs at least one query: queries has shape [B, 0, D]")
    return torch.ops.panoptic_ops.box_filtered_assign(e, q, b, stride)


def box_mask(boxes: torch.Tensor, height: int, width: int, stride: int) -> torch.Tensor:
    """Tensor[B, N, H, W] bool: which pixels of an H x W map with ``stride`` lie in each box."""
    ys = (torch.arange(height, dtype=torch.float64, device=boxes.device) + 0.5) * stride
    xs = (torch.arange(width, dtype=torch.float64, device=boxes.device) + 0.5) * stride
    b = boxes.to(torch.float64)
    inside_x = (xs >= b[..., 0:1]) & (xs <= b[..., 2:3])  # [B, N, W]
    inside_y = (ys >= b[..., 1:2]) & (ys <= b[..., 3:4])  # [B, N, H]
    return inside_y.unsqueeze(-1) & inside_x.unsqueeze(-2)
