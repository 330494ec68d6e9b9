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
from panoptic_ops._validation import FLOAT_TYPES, check_tensors

__all__ = ["UNBOXED", "box_filtered_assign", "box_filtered_similarity", "box_mask"]

UNBOXED = (-math.inf, -math.inf, math.inf, math.inf)


def _prepare(embeddings, queries, boxes, stride):
    """Half-precision inputs (autocast) cast to what the kernels compute in: float32, or float64
    for both when embeddings and queries differ in precision; boxes in float64. The op checks
    shapes, dtypes (integer inputs are refused there), devices and the stride's value."""
    check_tensors(embeddings=embeddings, queries=queries, boxes=boxes)
    if isinstance(stride, bool) or not isinstance(stride, int):
        raise ValueError(f"stride must be a positive integer (image pixels per embedding pixel), got {stride!r}")
    embeddings, queries = _computed(embeddings, torch.float32), _computed(queries, torch.float32)
    if embeddings.dtype in FLOAT_TYPES and queries.dtype in FLOAT_TYPES and embeddings.dtype != queries.dtype:
        embeddings, queries = embeddings.double(), queries.double()
    return embeddings, queries, _computed(boxes, torch.float64)


def _computed(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return t.to(dtype) if t.is_floating_point() and t.dtype not in FLOAT_TYPES else t


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
    return torch.ops.panoptic_ops.box_filtered_assign(e, q, b, stride)


def box_mask(boxes: torch.Tensor, height: int, width: int, stride: int) -> torch.Tensor:
    """Tensor[B, N, H, W] bool: which pixels of an H x W map with ``stride`` lie in each box."""
    ys = (torch.arange(height, dtype=torch.float64, device=boxes.device) + 0.5) * stride
    xs = (torch.arange(width, dtype=torch.float64, device=boxes.device) + 0.5) * stride
    b = boxes.to(torch.float64)
    inside_x = (xs >= b[..., 0:1]) & (xs <= b[..., 2:3])  # [B, N, W]
    inside_y = (ys >= b[..., 1:2]) & (ys <= b[..., 3:4])  # [B, N, H]
    return inside_y.unsqueeze(-1) & inside_x.unsqueeze(-2)
