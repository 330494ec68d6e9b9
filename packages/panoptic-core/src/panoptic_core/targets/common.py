"""Building blocks shared by the target generators."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data.structures import Segment, lookup_segments, segment_moments

__all__ = [
    "centroids",
    "downsample_masks",
    "draw_centernet_gaussian",
    "gaussian_radius",
    "segment_index_map",
    "subsample",
]


def segment_index_map(ids: torch.Tensor, segments: Sequence[Segment]) -> torch.Tensor:
    """Tensor[H, W] int64: index into ``segments`` of each pixel's segment, -1 for VOID or unlisted ids."""
    return lookup_segments(ids, [s.id for s in segments])


def centroids(index: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask centroids and areas of segments 0..count-1 of an index map.

    Returns:
        (Tensor[count, 2] float64 (y, x) means of pixel indices, NaN for empty segments;
        Tensor[count] int64 areas). Sums of integer coordinates are exact in float64, so the
        means equal ``numpy.mean`` of the pixel indices.
    """
    m = segment_moments(index, count)
    n = m.area.double()
    return torch.stack([m.sum_y / n, m.sum_x / n], dim=1), m.area


def subsample(ids: torch.Tensor, stride: int) -> torch.Tensor:
    """Nearest sampling of a label map at 1/stride: output pixel (y, x) reads input pixel
    (y*stride + stride//2, x*stride + stride//2), the center convention of panoptic_ops."""
    if stride == 1:
        return ids
    off = stride // 2
    return ids[..., off::stride, off::stride]


def downsample_masks(labels: torch.Tensor, values: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear downsampling (``align_corners=False``, no antialias) of the masks ``labels == v``.

    Equals ``F.interpolate((labels == values[:, None, None]).float()[None], size, mode="bilinear")[0]``
    element for element. When ``size`` divides the map, each output pixel samples one or two rows
    and one or two columns at fixed offsets with equal weights (exact in float32), so the masks
    are read from at most four subsampled label maps instead of K full-size float masks.

    Args:
        labels (Tensor[H, W] int64); values (Tensor[K] int64); size: (h, w).

    Returns:
        Tensor[K, h, w] float32.
    """
    height, width = labels.shape
    h, w = size
    values = values.view(-1, 1, 1).to(labels)
    if height % h or width % w:
        full = (labels[None] == values).float()
        return F.interpolate(full[None], size=size, mode="bilinear", align_corners=False)[0]

    def taps(factor: int) -> list[int]:  # source offsets of output pixel 0: (i + 0.5) * factor - 0.5
        return [factor // 2 - 1, factor // 2] if factor % 2 == 0 else [factor // 2]

    rows, cols = taps(height // h), taps(width // w)
    weight = 1.0 / (len(rows) * len(cols))
    out = torch.zeros(len(values), h, w, device=labels.device)
    for dy in rows:
        for dx in cols:
            out += labels[dy :: height // h, dx :: width // w][None] == values
    return out.mul_(weight)


def gaussian_radius(height: torch.Tensor, width: torch.Tensor, min_overlap: float = 0.7) -> torch.Tensor:
    """CornerNet's Gaussian radius for boxes of the given size (as CenterNet and Panoptic FCN use it):
    the smallest of the three radii keeping a corner-shifted box at IoU >= ``min_overlap``.

    Computed in the inputs' dtype (Panoptic FCN works in float32, CenterNet in float64), with
    the operations in the order of those implementations.
    """
    b1 = height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + torch.sqrt(b1**2 - 4 * c1)) / 2
    b2 = 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + torch.sqrt(b2**2 - 16 * c2)) / 2
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + torch.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return torch.minimum(r1, torch.minimum(r2, r3))


def draw_centernet_gaussian(heatmap: torch.Tensor, cx: int, cy: int, radius: int, sigma_factor: float = 6.0) -> None:
    """Max a (2r+1)^2 Gaussian with sigma = (2r+1)/sigma_factor into ``heatmap`` (Tensor[H, W]) at (cx, cy).

    Values below float64 eps times the peak are zeroed, as in CenterNet's ``gaussian2D``.
    """
    radius = max(int(radius), 0)
    diameter = 2 * radius + 1
    sigma = diameter / sigma_factor
    y, x = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    g = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    g[g < np.finfo(g.dtype).eps * g.max()] = 0
    height, width = heatmap.shape
    left, right = min(cx, radius), min(width - cx, radius + 1)
    top, bottom = min(cy, radius), min(height - cy, radius + 1)
    if min(left + right, top + bottom) <= 0:
        return
    window = heatmap[cy - top : cy + bottom, cx - left : cx + right]
    patch = torch.from_numpy(g[radius - top : radius + bottom, radius - left : radius + right]).to(heatmap)
    torch.maximum(window, patch, out=window)


def round_half_even(value: float) -> int:
    """Python's round(): ties to even, as detectron2's ``int(round(x))``."""
    return round(value)
