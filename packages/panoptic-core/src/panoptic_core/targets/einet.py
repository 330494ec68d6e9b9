"""EINet targets: Panoptic-DeepLab's plus class-wise scale-adaptive centroid heatmaps and segment maps."""

from __future__ import annotations

from typing import Any

import torch

from ..data.structures import Categories, PanopticTarget
from .common import centroids, draw_centernet_gaussian, gaussian_radius, segment_index_map, subsample
from .deeplab import PanopticDeepLabTargets

__all__ = ["EINetTargets"]


class EINetTargets:
    """Targets of EINet (embedding interaction between the semantic and instance decoders).

    Everything :class:`PanopticDeepLabTargets` returns, plus:

    * ``class_center`` (Tensor[C_thing, H', W']): one heatmap per thing class with a
      scale-adaptive Gaussian at each instance's mask centroid: radius from the instance's box
      (CornerNet/CenterNet ``gaussian_radius`` with ``min_overlap``), sigma = (2r + 1) / 6,
      as in "Objects as Points", which EINet's README credits for its centroid heatmap.
      Crowd segments get none.
    * ``segment_map`` (Tensor[H', W'] int64): index of each pixel's segment into the
      ragged lists below, -1 on VOID; the masks for pooling segment embeddings.
    * ``segment_classes`` (ragged, Tensor[S] int64): class index of each segment (things,
      stuff and crowd, in annotation order); ``segment_isthing`` / ``segment_iscrowd``
      (ragged, Tensor[S] bool).

    Key meanings: :data:`~panoptic_core.targets.GLOSSARY`.

    Args:
        categories: the dataset's categories (thing numbering of ``class_center``).
        stride: output stride of the heatmap and segment map (1 = input resolution): the maps
            sample input pixels ``(y s + s // 2, x s + s // 2)``, so H' = ceil((H - s // 2) / s),
            which is H / s for the padded sizes the collate makes.
        min_overlap: CenterNet's IoU bound for the radius (0.7).
        **deeplab_kwargs: passed to :class:`PanopticDeepLabTargets`.
    """

    keys: frozenset[str] = PanopticDeepLabTargets.keys | frozenset(
        {"class_center", "segment_map", "segment_classes", "segment_isthing", "segment_iscrowd"}
    )
    ragged: frozenset[str] = PanopticDeepLabTargets.ragged | frozenset(
        {"segment_classes", "segment_isthing", "segment_iscrowd"}
    )
    per_level: frozenset[str] = frozenset()

    def __init__(self, categories: Categories, stride: int = 1, min_overlap: float = 0.7, **deeplab_kwargs: Any):
        self.categories = categories
        self.stride = int(stride)
        self.min_overlap = min_overlap
        self.deeplab = PanopticDeepLabTargets(**deeplab_kwargs)

    def __call__(self, target: PanopticTarget) -> dict[str, Any]:
        """The targets of one padded image.

        Args:
            target: the padded target (``ids`` Tensor[H, W] int64, 0 = VOID, and its segments).

        Returns:
            every key of ``keys``, as described above, also for an image without segments.
        """
        segs = target.segments
        s = self.stride
        index = segment_index_map(target.ids, segs)
        center, area = centroids(index, len(segs))
        out = self.deeplab.from_index(target, index, center, area)
        segment_map = subsample(index, s).contiguous()
        heat = torch.zeros(self.categories.num_things, *segment_map.shape)
        for k, seg in enumerate(segs):
            if not seg.isthing or seg.iscrowd or int(area[k]) == 0:
                continue
            w, h = seg.bbox[2] / s, seg.bbox[3] / s
            size = torch.tensor([h, w], dtype=torch.float64)  # CenterNet computes the radius in float64
            radius = int(max(float(gaussian_radius(size[0], size[1], self.min_overlap)), 0.0))
            cy, cx = float(center[k, 0]) / s, float(center[k, 1]) / s
            channel = self.categories.thing_index[seg.class_index]
            draw_centernet_gaussian(heat[channel], int(cx), int(cy), radius)
        out["class_center"] = heat
        out["segment_map"] = segment_map
        out["segment_classes"] = torch.tensor([g.class_index for g in segs], dtype=torch.int64)
        out["segment_isthing"] = torch.tensor([g.isthing for g in segs], dtype=torch.bool)
        out["segment_iscrowd"] = torch.tensor([g.iscrowd for g in segs], dtype=torch.bool)
        return out
