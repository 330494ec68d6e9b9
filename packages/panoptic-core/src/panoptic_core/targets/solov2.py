"""SOLOv2 targets: grid class targets per level and instance mask targets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..data.structures import Categories, PanopticTarget, segment_moments
from .common import downsample_masks, segment_index_map

__all__ = ["SOLOv2Targets"]


class SOLOv2Targets:
    """Targets of SOLOv2's instance head (Wang et al., NeurIPS 2020), as mmdetection's
    ``SOLOV2Head._get_targets_single`` assigns them; the EfficientPS+SOLOv2 instance head uses it.

    For each level (grid S x S) and each non-crowd thing instance whose sqrt(box area) lies in
    the level's ``scale_ranges`` entry (inclusive, overlapping):

    * the center region is the instance's box scaled by ``sigma`` (0.2) about its mask center
      of mass; the grid cells it covers, limited to the 3 x 3 cells around the center's cell,
      get the instance's class (cell index = trunc(coordinate / image size / (1 / S)), in
      float32 like mmdetection); later instances overwrite earlier class labels.
    * ``location_classes[l]`` (Tensor[S, S] int64): thing index, ``num_things`` for background
      (no ignore value).
    * ``location_pairs[l]`` (ragged, Tensor[P, 2] int64): mmdetection's ``(pos_index, mask
      target)`` pairs: one row ``(y * S + x, n)`` per cell of instance ``n``'s center region,
      instances in order, cells row-major. A cell in the center regions of two instances appears
      twice (two dice targets for one kernel, as upstream), so ``P`` can exceed the number of
      positive cells (``location_classes[l] != num_things``), which mmdetection's loss divides by.
    * ``instance_masks`` (ragged, Tensor[N, ceil(H/s), ceil(W/s)] uint8): each mask rescaled by
      1/s (s = ``mask_stride``, 4) to ``(int(H/s + 0.5), int(W/s + 0.5))`` with bilinear
      interpolation and rounding, pasted top-left into the mask branch's map. For H and W
      multiples of s (the padded sizes SOLOv2 trains on) this is what mmcv's ``imrescale``
      (OpenCV ``INTER_LINEAR``) gives: a pixel is 1 when at least 2 of its 4 bilinear taps are.
    * ``instance_classes`` (ragged, Tensor[N] int64): thing index of each instance.

    Instances are the non-crowd thing segments with pixels, in segment order. Centers of mass
    are computed in float32 as mmdetection's ``center_of_mass`` does, and the grid against the
    padded input size (``featmap size * mask_stride``). The per-level entries (``per_level``)
    are lists over ``num_grids``. Key meanings: :data:`~panoptic_core.targets.GLOSSARY`.
    """

    keys: frozenset[str] = frozenset({"location_classes", "location_pairs", "instance_masks", "instance_classes"})
    ragged: frozenset[str] = frozenset({"location_pairs", "instance_masks", "instance_classes"})
    per_level: frozenset[str] = frozenset({"location_classes", "location_pairs"})

    def __init__(
        self,
        categories: Categories,
        num_grids: Sequence[int] = (40, 36, 24, 16, 12),
        scale_ranges: Sequence[tuple[float, float]] = ((1, 96), (48, 192), (96, 384), (192, 768), (384, 2048)),
        sigma: float = 0.2,
        mask_stride: int = 4,
    ) -> None:
        if len(num_grids) != len(scale_ranges):
            raise ValueError(f"SOLOv2Targets: {len(num_grids)} grids but {len(scale_ranges)} scale ranges")
        self.categories = categories
        self.num_grids = tuple(int(g) for g in num_grids)
        self.scale_ranges = tuple((float(a), float(b)) for a, b in scale_ranges)
        self.sigma = sigma
        self.mask_stride = int(mask_stride)

    def __call__(self, target: PanopticTarget) -> dict[str, Any]:
        """The targets of one padded image.

        Args:
            target: the padded target (``ids`` Tensor[H, W] int64, 0 = VOID, and its segments).

        Returns:
            every key of ``keys``, as described above, also for an image without segments.
        """
        cats = self.categories
        height, width = target.ids.shape
        segs = target.segments
        index = segment_index_map(target.ids, segs)
        moments = segment_moments(index, len(segs))
        instances = [k for k, s in enumerate(segs) if s.isthing and not s.iscrowd and s.area > 0]
        pick = torch.tensor(instances, dtype=torch.int64)
        classes = torch.tensor([cats.thing_index[segs[k].class_index] for k in instances], dtype=torch.int64)
        # float32 throughout, as mmdetection: boxes, sqrt areas, centers of mass, cell arithmetic
        boxes = torch.tensor([segs[k].xyxy for k in instances], dtype=torch.float32).reshape(-1, 4)
        box_w, box_h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        scale = torch.sqrt(box_w * box_h)
        area = moments.area[pick].float()
        center_y = moments.sum_y[pick].float() / area
        center_x = moments.sum_x[pick].float() / area
        half_w, half_h = 0.5 * box_w * self.sigma, 0.5 * box_h * self.sigma
        map_h, map_w = -(-height // self.mask_stride), -(-width // self.mask_stride)
        full_h, full_w = map_h * self.mask_stride, map_w * self.mask_stride

        out: dict[str, Any] = {"location_classes": [], "location_pairs": []}
        for grid, (lo, hi) in zip(self.num_grids, self.scale_ranges, strict=True):
            classes_at = torch.full((grid, grid), cats.num_things, dtype=torch.int64)
            pairs = [torch.zeros(0, 2, dtype=torch.int64)]

            def cell(coord: torch.Tensor, size: int, grid: int = grid) -> torch.Tensor:
                return torch.div(coord / size, 1.0 / grid, rounding_mode="trunc").to(torch.int64)

            cells = torch.stack(
                [
                    cell(center_y, full_h),
                    cell(center_x, full_w),
                    cell(center_y - half_h, full_h),
                    cell(center_y + half_h, full_h),
                    cell(center_x - half_w, full_w),
                    cell(center_x + half_w, full_w),
                ],
                dim=1,
            ).tolist()
            for n, (cy, cx, top_box, down_box, left_box, right_box) in enumerate(cells):
                if not lo <= float(scale[n]) <= hi:
                    continue
                top, down = max(top_box, 0, cy - 1), min(down_box, grid - 1, cy + 1)
                left, right = max(left_box, 0, cx - 1), min(right_box, grid - 1, cx + 1)
                classes_at[top : down + 1, left : right + 1] = classes[n]
                rows = torch.arange(top, down + 1).repeat_interleave(max(right - left + 1, 0))
                cols = torch.arange(left, right + 1).repeat(max(down - top + 1, 0))
                pairs.append(torch.stack([rows * grid + cols, torch.full_like(rows, n)], dim=1))
            out["location_classes"].append(classes_at)
            out["location_pairs"].append(torch.cat(pairs))
        size = (int(height / self.mask_stride + 0.5), int(width / self.mask_stride + 0.5))
        masks = torch.zeros(len(instances), map_h, map_w, dtype=torch.uint8)
        masks[:, : size[0], : size[1]] = downsample_masks(index, pick, size) >= 0.5
        out["instance_masks"] = masks
        out["instance_classes"] = classes
        return out
