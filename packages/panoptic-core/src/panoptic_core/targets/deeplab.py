"""Panoptic-DeepLab targets: semantic labels and weights, center heatmap, offsets."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..data.structures import PanopticTarget
from .common import centroids, round_half_even, segment_index_map

__all__ = ["PanopticDeepLabTargets", "deeplab_gaussian"]


def deeplab_gaussian(sigma: float) -> np.ndarray:
    """The (6 sigma + 3)^2 Gaussian kernel (peak 1 at its center 3 sigma + 1) Panoptic-DeepLab draws."""
    size = int(6 * sigma + 3)
    x = np.arange(0, size, 1, float)
    y = x[:, None]
    x0 = y0 = 3 * sigma + 1
    return np.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * sigma**2))


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _check(value: Any, name: str, expected: str, ok: Any) -> None:
    if not ok(value):
        raise ValueError(f"PanopticDeepLabTargets: {name} must be {expected}, got {value!r}")


class PanopticDeepLabTargets:
    """Targets of Panoptic-DeepLab (Cheng et al., CVPR 2020), as detectron2's
    ``PanopticDeepLabTargetGenerator`` computes them, element for element.

    * ``semantic`` (Tensor[H, W] int64): class index per pixel, ``ignore_label`` on VOID
      (and on crowd when ``ignore_crowd_in_semantic``).
    * ``semantic_weights`` (Tensor[H, W]): ``small_instance_weight`` (3) on pixels of thing
      segments smaller than ``small_instance_area`` (4096 px), else 1.
    * ``center`` (Tensor[1, H, W]): max over thing segments of a Gaussian (sigma 8) at the mask
      centroid rounded to the nearest pixel (ties to even).
    * ``center_weights`` (Tensor[1, H, W]): 1 on labelled non-crowd pixels, 0 on VOID and crowd.
    * ``offset`` (Tensor[2, H, W]): (dy, dx) from each thing pixel to its segment's centroid.
    * ``offset_weights`` (Tensor[1, H, W]): 1 on non-crowd thing pixels (stuff too unless
      ``ignore_stuff_in_offset``).
    * ``center_points`` (ragged, Tensor[K, 2] float64): the (y, x) centroids.

    Crowd thing segments get a center and offsets as in detectron2, with zero center and offset
    weights. Segments of thing classes with no pixels (cropped away) are skipped. Key meanings:
    :data:`~panoptic_core.targets.GLOSSARY`.
    """

    keys: frozenset[str] = frozenset(
        {"semantic", "semantic_weights", "center", "center_weights", "offset", "offset_weights", "center_points"}
    )
    ragged: frozenset[str] = frozenset({"center_points"})
    per_level: frozenset[str] = frozenset()

    def __init__(
        self,
        sigma: float = 8,
        ignore_label: int = 255,
        small_instance_area: int = 4096,
        small_instance_weight: float = 3,
        ignore_stuff_in_offset: bool = True,
        ignore_crowd_in_semantic: bool = False,
    ) -> None:
        _check(sigma, "sigma", "a finite number > 0", lambda v: _is_number(v) and 0 < v < float("inf"))
        _check(ignore_label, "ignore_label", "an integer", _is_int)
        _check(small_instance_area, "small_instance_area", "an integer >= 0", lambda v: _is_int(v) and v >= 0)
        _check(small_instance_weight, "small_instance_weight", "a finite number >= 0",
               lambda v: _is_number(v) and 0 <= v < float("inf"))
        _check(ignore_stuff_in_offset, "ignore_stuff_in_offset", "a bool", lambda v: isinstance(v, bool))
        _check(ignore_crowd_in_semantic, "ignore_crowd_in_semantic", "a bool", lambda v: isinstance(v, bool))
        self.sigma = sigma
        self.ignore_label = ignore_label
        self.small_instance_area = small_instance_area
        self.small_instance_weight = small_instance_weight
        self.ignore_stuff_in_offset = ignore_stuff_in_offset
        self.ignore_crowd_in_semantic = ignore_crowd_in_semantic
        self.gaussian = deeplab_gaussian(sigma)

    def __call__(self, target: PanopticTarget) -> dict[str, Any]:
        """The targets of one padded image.

        Args:
            target: the padded target (``ids`` Tensor[H, W] int64, 0 = VOID, and its segments).

        Returns:
            every key of ``keys``, as described above, also for an image without segments.
        """
        index = segment_index_map(target.ids, target.segments)
        return self.from_index(target, index, *centroids(index, len(target.segments)))

    def from_index(
        self, target: PanopticTarget, index: torch.Tensor, center: torch.Tensor, area: torch.Tensor
    ) -> dict[str, Any]:
        """The targets given the segment index map and the centroids / areas of :func:`centroids`.

        Args:
            target: the padded target (``ids`` Tensor[H, W]).
            index (Tensor[H, W] int64): index of each pixel's segment, -1 on VOID
                (:func:`~panoptic_core.targets.segment_index_map`).
            center (Tensor[S, 2] float64): (y, x) centroid of each segment.
            area (Tensor[S] int64): pixel count of each segment.

        Returns:
            the dict described in the class docstring (the keys of ``keys``).
        """
        height, width = target.ids.shape
        segs = target.segments
        n = len(segs)

        label = torch.tensor(
            [self.ignore_label if (self.ignore_crowd_in_semantic and s.iscrowd) else s.class_index for s in segs]
            + [self.ignore_label],
            dtype=torch.int64,
        )
        small = [s.isthing and 0 < int(a) < self.small_instance_area for s, a in zip(segs, area, strict=True)]
        sem_w = torch.tensor([self.small_instance_weight if m else 1.0 for m in small] + [1.0], dtype=torch.float32)
        ctr_w = torch.tensor([0.0 if s.iscrowd else 1.0 for s in segs] + [0.0], dtype=torch.float32)
        off_w = torch.tensor(
            [float(not s.iscrowd and (s.isthing or not self.ignore_stuff_in_offset)) for s in segs] + [0.0],
            dtype=torch.float32,
        )
        # Every per-pixel output is a per-segment table read through the index map; the extra
        # last entry of each table is VOID.
        flat = torch.where(index < 0, n, index).reshape(-1)

        def per_pixel(table: torch.Tensor) -> torch.Tensor:
            return table.index_select(0, flat).view(height, width)

        # As in detectron2, crowd things still get a center and offsets; their weights are 0.
        heat = np.zeros((height, width), dtype=np.float32)
        g = self.gaussian
        s3 = 3 * self.sigma
        points = []
        has_offset = torch.zeros(n + 1, dtype=torch.bool)
        center_y = torch.zeros(n + 1, dtype=torch.float64)
        center_x = torch.zeros(n + 1, dtype=torch.float64)
        for k, seg in enumerate(segs):
            if not seg.isthing or int(area[k]) == 0:
                continue
            cy, cx = float(center[k, 0]), float(center[k, 1])
            points.append((cy, cx))
            has_offset[k] = True
            center_y[k], center_x[k] = cy, cx
            y, x = round_half_even(cy), round_half_even(cx)
            ul = int(np.round(x - s3 - 1)), int(np.round(y - s3 - 1))
            br = int(np.round(x + s3 + 2)), int(np.round(y + s3 + 2))
            gx0, gx1 = max(0, -ul[0]), min(br[0], width) - ul[0]
            gy0, gy1 = max(0, -ul[1]), min(br[1], height) - ul[1]
            hx0, hx1 = max(0, ul[0]), min(br[0], width)
            hy0, hy1 = max(0, ul[1]), min(br[1], height)
            if hx1 > hx0 and hy1 > hy0:
                heat[hy0:hy1, hx0:hx1] = np.maximum(heat[hy0:hy1, hx0:hx1], g[gy0:gy1, gx0:gx1])

        # detectron2 subtracts in float64 and stores float32: same rounding here.
        offset = torch.empty(2, height, width)
        offset[0] = per_pixel(center_y).sub_(torch.arange(height, dtype=torch.float64).view(-1, 1))
        offset[1] = per_pixel(center_x).sub_(torch.arange(width, dtype=torch.float64).view(1, -1))
        offset.masked_fill_(~per_pixel(has_offset), 0.0)
        return {
            "semantic": per_pixel(label),
            "semantic_weights": per_pixel(sem_w),
            "center": torch.from_numpy(heat)[None],
            "center_weights": per_pixel(ctr_w)[None],
            "offset": offset,
            "offset_weights": per_pixel(off_w)[None],
            "center_points": torch.tensor(points, dtype=torch.float64).reshape(-1, 2),
        }
