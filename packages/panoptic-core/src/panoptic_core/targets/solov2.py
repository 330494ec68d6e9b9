"""SOLOv2 targets: grid category targets per level and instance mask targets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..data.structures import Categories, PanopticTarget
from .common import centroids, segment_index_map, subsample

__all__ = ["SOLOv2Targets"]


class SOLOv2Targets:
    """Targets of SOLOv2's instance head (Wang et al., NeurIPS 2020), as mmdetection's
    ``SOLOV2Head._get_targets_single`` assigns them; the EfficientPS+SOLOv2 instance head uses it.

    For each level (grid S x S) and each non-crowd thing instance whose sqrt(box area) lies in
    the level's ``scale_ranges`` entry (inclusive, overlapping):

    * the centre region is the instance's box scaled by ``sigma`` (0.2) about its mask centre
      of mass; the grid cells it covers, limited to the 3 x 3 cells around the centre's cell,
      get the instance's class (cell index = floor(coordinate / image size * S));
      later instances overwrite earlier ones.
    * ``category[l]`` (Tensor[S, S] int64): thing index, ``num_things`` for background.
    * ``cell_instance[l]`` (Tensor[S * S] int64): the instance whose mask is the target of each
      cell (index into ``instance_masks``), -1 for negative cells.
    * ``instance_masks`` (ragged, Tensor[N, H/s, W/s] uint8): instance masks at the mask
      branch's stride (4), sampled at pixel centres.
    * ``instance_classes`` (ragged, Tensor[N]).

    The grid coordinates are computed against the padded input size, as mmdetection does.
    """

    ragged = frozenset({"instance_masks", "instance_classes"})

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
        cats = self.categories
        height, width = target.ids.shape
        segs = target.segments
        index = segment_index_map(target.ids, segs)
        centre, area = centroids(index, len(segs))
        instances = [k for k, s in enumerate(segs) if s.isthing and not s.iscrowd and int(area[k]) > 0]
        classes = [cats.thing_index[segs[k].class_index] for k in instances]
        out: dict[str, Any] = {"category": [], "cell_instance": []}
        for grid, (lo, hi) in zip(self.num_grids, self.scale_ranges, strict=True):
            category = torch.full((grid, grid), cats.num_things, dtype=torch.int64)
            owner = torch.full((grid, grid), -1, dtype=torch.int64)
            cell = 1.0 / grid
            for n, k in enumerate(instances):
                _, _, bw, bh = segs[k].bbox
                if not lo <= (bw * bh) ** 0.5 <= hi:
                    continue
                half_w, half_h = 0.5 * bw * self.sigma, 0.5 * bh * self.sigma
                cy, cx = float(centre[k, 0]), float(centre[k, 1])
                coord_w = int((cx / width) // cell)
                coord_h = int((cy / height) // cell)
                top_box = max(0, int(((cy - half_h) / height) // cell))
                down_box = min(grid - 1, int(((cy + half_h) / height) // cell))
                left_box = max(0, int(((cx - half_w) / width) // cell))
                right_box = min(grid - 1, int(((cx + half_w) / width) // cell))
                top, down = max(top_box, coord_h - 1), min(down_box, coord_h + 1)
                left, right = max(coord_w - 1, left_box), min(right_box, coord_w + 1)
                category[top : down + 1, left : right + 1] = classes[n]
                owner[top : down + 1, left : right + 1] = n
            out["category"].append(category)
            out["cell_instance"].append(owner.reshape(-1))
        sub = subsample(index, self.mask_stride)
        masks = (sub[None] == torch.tensor(instances, dtype=torch.int64).view(-1, 1, 1)).to(torch.uint8)
        out["instance_masks"] = masks
        out["instance_classes"] = torch.tensor(classes, dtype=torch.int64)
        return out
