"""EINet targets: semantic labels, class-wise scale-adaptive centroid heatmaps and segment maps."""

from __future__ import annotations

import math
from typing import Any

import torch

from ..data.structures import Categories, PanopticTarget
from .common import centroids, draw_centernet_gaussian, gaussian_radius, segment_index_map, subsample

__all__ = ["EINetTargets"]


class EINetTargets:
    """Targets of EINet (embedding interaction between the semantic and instance decoders).

    What EINet's figures use, and nothing else (no center offsets):

    * ``semantic`` (Tensor[H, W] int64) and ``semantic_weights`` (Tensor[H, W] float32), at
      the input size, for ``L_sem`` (the bootstrapped cross entropy of Panoptic-DeepLab, with the
      same values as :class:`PanopticDeepLabTargets` gives).
    * ``class_center`` (Tensor[C_thing, H', W']): one heatmap per thing class with a
      scale-adaptive Gaussian at each instance's mask centroid: radius from the instance's box
      at the map's scale (CornerNet/CenterNet ``gaussian_radius`` with ``min_overlap``), sigma =
      (2r + 1) / 6, peak 1 at ``segment_centers``, as in "Objects as Points", which EINet's
      README credits for its centroid heatmap. Crowd segments get none.
    * ``segment_map`` (Tensor[H', W'] int64): index of each pixel's segment into the
      ragged lists below, -1 on VOID; the masks of the embedding-segment means (ESM).
    * ``segment_classes`` (ragged, Tensor[S] int64): class index of each segment (things,
      stuff and crowd, in annotation order); ``segment_isthing`` / ``segment_iscrowd``
      (ragged, Tensor[S] bool); ``segment_centers`` (ragged, Tensor[S, 2] int64): the (y, x)
      pixel of the H' x W' map holding each segment's centroid, -1 for a segment without pixels.

    The maps are at the decoder's stride (4 by default) rather than the input's: 80 COCO
    heatmaps at full 800 x 1344 size would be 344 MB per image through the DataLoader.
    Key meanings: :data:`~panoptic_core.targets.GLOSSARY`.

    Args:
        categories: the dataset's categories (thing numbering of ``class_center``).
        stride: output stride of the heatmap and segment map (1 = input resolution): the maps
            sample input pixels ``(y s + s // 2, x s + s // 2)``, so H' = ceil((H - s // 2) / s),
            which is H / s for the padded sizes the collate makes. A centroid (y, x) lies in
            map pixel ``(floor(y / s), floor(x / s))`` (clamped to the map).
        min_overlap: CenterNet's IoU bound for the radius (0.7).
        ignore_label, small_instance_area, small_instance_weight, ignore_crowd_in_semantic: the
            semantic targets, as :class:`PanopticDeepLabTargets` (255, 4096, 3, False).
    """

    keys: frozenset[str] = frozenset(
        {
            "semantic",
            "semantic_weights",
            "class_center",
            "segment_map",
            "segment_classes",
            "segment_isthing",
            "segment_iscrowd",
            "segment_centers",
        }
    )
    ragged: frozenset[str] = frozenset({"segment_classes", "segment_isthing", "segment_iscrowd", "segment_centers"})
    per_level: frozenset[str] = frozenset()

    def __init__(
        self,
        categories: Categories,
        stride: int = 4,
        min_overlap: float = 0.7,
        *,
        ignore_label: int = 255,
        small_instance_area: int = 4096,
        small_instance_weight: float = 3.0,
        ignore_crowd_in_semantic: bool = False,
    ) -> None:
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
            raise ValueError(f"EINetTargets: stride must be a positive integer, got {stride!r}")
        if not 0 < min_overlap < 1:
            raise ValueError(f"EINetTargets: min_overlap must be in (0, 1), got {min_overlap}")
        self.categories = categories
        self.stride = stride
        self.min_overlap = min_overlap
        self.ignore_label = ignore_label
        self.small_instance_area = small_instance_area
        self.small_instance_weight = small_instance_weight
        self.ignore_crowd_in_semantic = ignore_crowd_in_semantic

    def __call__(self, target: PanopticTarget) -> dict[str, Any]:
        """The targets of one padded image.

        Args:
            target: the padded target (``ids`` Tensor[H, W] int64, 0 = VOID, and its segments).

        Returns:
            every key of ``keys``, as described above, also for an image without segments.
        """
        segs = target.segments
        n = len(segs)
        s = self.stride
        index = segment_index_map(target.ids, segs)
        center, area = centroids(index, n)
        flat = torch.where(index < 0, n, index)

        label = torch.tensor(
            [self.ignore_label if (self.ignore_crowd_in_semantic and g.iscrowd) else g.class_index for g in segs]
            + [self.ignore_label],
            dtype=torch.int64,
        )
        small = [g.isthing and 0 < int(a) < self.small_instance_area for g, a in zip(segs, area, strict=True)]
        weight = torch.tensor([self.small_instance_weight if m else 1.0 for m in small] + [1.0], dtype=torch.float32)

        segment_map = subsample(index, s).contiguous()
        height, width = segment_map.shape
        heat = torch.zeros(self.categories.num_things, height, width)
        cells = torch.full((n, 2), -1, dtype=torch.int64)
        for k, seg in enumerate(segs):
            if int(area[k]) == 0 or height == 0 or width == 0:
                continue
            cy = min(math.floor(float(center[k, 0]) / s), height - 1)
            cx = min(math.floor(float(center[k, 1]) / s), width - 1)
            cells[k, 0], cells[k, 1] = cy, cx
            if not seg.isthing or seg.iscrowd:
                continue
            size = torch.tensor([seg.bbox[3] / s, seg.bbox[2] / s], dtype=torch.float64)  # CenterNet: float64
            radius = int(max(float(gaussian_radius(size[0], size[1], self.min_overlap)), 0.0))
            draw_centernet_gaussian(heat[self.categories.thing_index[seg.class_index]], cx, cy, radius)
        return {
            "semantic": label[flat],
            "semantic_weights": weight[flat],
            "class_center": heat,
            "segment_map": segment_map,
            "segment_classes": torch.tensor([g.class_index for g in segs], dtype=torch.int64),
            "segment_isthing": torch.tensor([g.isthing for g in segs], dtype=torch.bool),
            "segment_iscrowd": torch.tensor([g.iscrowd for g in segs], dtype=torch.bool),
            "segment_centers": cells,
        }
