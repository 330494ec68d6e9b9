"""CIAE targets: FCOS per-level detection targets with mask-based positives, embedding maps, boxes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from panoptic_ops import UNBOXED

from ..data.structures import Categories, PanopticTarget
from .common import segment_index_map, subsample

__all__ = ["CIAETargets", "expand_boxes"]

INF = float("inf")


def expand_boxes(boxes: torch.Tensor, factor: float) -> torch.Tensor:
    """Scale (x1, y1, x2, y2) boxes about their centers by ``factor`` (CIAE Sec. IV-B: 1.5 in training).

    Args:
        boxes (Tensor[N, 4]): (x1, y1, x2, y2) boxes.
        factor: the scale of width and height.

    Returns:
        Tensor[N, 4], the scaled boxes.
    """
    center = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) * (factor / 2)
    return torch.cat([center - half, center + half], dim=1)


class CIAETargets:
    """Targets of CIAE (Gao et al., "Learning Category- and Instance-Aware Pixel Embedding for
    Fast Panoptic Segmentation"): an FCOS proposal head on P3-P7 and a pixel-embedding branch.

    Detection (per level l with stride s_l, feature map ceil(H/s_l) x ceil(W/s_l), location
    (x, y) = (j s_l + s_l // 2, i s_l + s_l // 2) as in FCOS):

    * a location is positive for a non-crowd thing instance when it falls *inside the
      instance's mask* (the paper's change to FCOS, Sec. IV-A), strictly inside its box
      (``min(l, t, r, b) > 0``, FCOS's ``is_in_boxes``) and the largest of its box distances
      (l, t, r, b) lies in the level's range (FCOS: [0, 64], [64, 128], ...). Masks do not
      overlap, so a location has at most one instance.
    * ``location_classes[l]`` (Tensor[Hl, Wl] int64): thing index of the instance,
      ``num_things`` for background, also on locations inside crowd regions (FCOS trains on
      detectron2's instances, which drop crowd annotations, so crowd regions are negatives).
    * ``box_targets[l]`` (Tensor[Hl, Wl, 4]): (l, t, r, b) distances in pixels to the box
      edges (box (x, y, x + w, y + h) from the COCO bbox), zero on negatives.
    * ``centerness[l]`` (Tensor[Hl, Wl]): sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b)),
      zero on negatives.
    * ``location_instance[l]`` (Tensor[Hl, Wl] int64): index of the instance (into
      ``instance_boxes`` / ``instance_classes``), -1 on negatives.

    Embedding (at ``embedding_stride``; the paper upsamples its embedding map to the input, 1):

    * ``segment_map`` (Tensor[He, We] int64): s_i of Sec. III-A: stuff pixels get their stuff
      index (0 .. C_st - 1), pixels of the n-th non-crowd thing instance C_st + n; -1 on VOID
      and crowd pixels.
    * ``category_map`` (Tensor[He, We] int64): c_i: stuff index for stuff, and for things
      C_st (all thing classes merged into one, the paper's default) or C_st + thing index
      (``merge_things=False``); -1 on VOID. Crowd pixels keep their thing category: their
      class is annotated, only their instances are not (so they take part in L_CAE, not L_IAE).
    * ``segment_boxes`` (ragged, Tensor[C_st + N_th, 4]): the box filter of each segment:
      :data:`panoptic_ops.UNBOXED` for stuff, the instance box expanded ``box_expand`` (1.5)
      times about its center for things.
    * ``instance_boxes`` (ragged, Tensor[N_th, 4]) and ``instance_classes`` (ragged,
      Tensor[N_th] int64): the non-crowd thing instances (x1, y1, x2, y2) and thing indices,
      in segment order.

    The per-level entries (``per_level``) are lists over ``strides``. Key meanings:
    :data:`~panoptic_core.targets.GLOSSARY`.
    """

    keys: frozenset[str] = frozenset(
        {
            "location_classes",
            "box_targets",
            "centerness",
            "location_instance",
            "segment_map",
            "category_map",
            "segment_boxes",
            "instance_boxes",
            "instance_classes",
        }
    )
    ragged: frozenset[str] = frozenset({"segment_boxes", "instance_boxes", "instance_classes"})
    per_level: frozenset[str] = frozenset({"location_classes", "box_targets", "centerness", "location_instance"})

    def __init__(
        self,
        categories: Categories,
        strides: Sequence[int] = (8, 16, 32, 64, 128),
        size_ranges: Sequence[tuple[float, float]] = ((-1, 64), (64, 128), (128, 256), (256, 512), (512, INF)),
        embedding_stride: int = 1,
        box_expand: float = 1.5,
        merge_things: bool = True,
    ) -> None:
        if len(strides) != len(size_ranges):
            raise ValueError(f"CIAETargets: {len(strides)} strides but {len(size_ranges)} size ranges")
        self.categories = categories
        self.strides = tuple(int(s) for s in strides)
        self.size_ranges = tuple((float(a), float(b)) for a, b in size_ranges)
        self.embedding_stride = int(embedding_stride)
        self.box_expand = box_expand
        self.merge_things = merge_things

    @property
    def num_categories(self) -> int:
        """Size of the category vocabulary of ``category_map`` (the CIAE memory)."""
        cats = self.categories
        return cats.num_stuff + (1 if self.merge_things else cats.num_things)

    def __call__(self, target: PanopticTarget) -> dict[str, Any]:
        """The targets of one padded image.

        Args:
            target: the padded target (``ids`` Tensor[H, W] int64, 0 = VOID, and its segments).

        Returns:
            every key of ``keys``, as described above, also for an image without segments.
        """
        cats = self.categories
        ids = target.ids
        height, width = ids.shape
        segs = target.segments
        index = segment_index_map(ids, segs)
        num_stuff = cats.num_stuff
        instances = [k for k, s in enumerate(segs) if s.isthing and not s.iscrowd]
        seg_value = torch.full((len(segs) + 1,), -1, dtype=torch.int64)
        cat_value = torch.full((len(segs) + 1,), -1, dtype=torch.int64)
        inst_of_seg = torch.full((len(segs) + 1,), -1, dtype=torch.int64)
        for k, s in enumerate(segs):
            if s.isthing:
                cat_value[k] = num_stuff + (0 if self.merge_things else cats.thing_index[s.class_index])
            else:
                cat_value[k] = seg_value[k] = cats.stuff_index[s.class_index]
        for n, k in enumerate(instances):
            seg_value[k] = num_stuff + n
            inst_of_seg[k] = n
        lut = torch.where(index < 0, len(segs), index)

        boxes = torch.tensor([segs[k].xyxy for k in instances], dtype=torch.float32).reshape(-1, 4)
        classes = torch.tensor([cats.thing_index[segs[k].class_index] for k in instances], dtype=torch.int64)
        segment_boxes = torch.cat(
            [torch.tensor(UNBOXED, dtype=torch.float32).expand(num_stuff, 4), expand_boxes(boxes, self.box_expand)]
        )

        out: dict[str, Any] = {"location_classes": [], "box_targets": [], "centerness": [], "location_instance": []}
        for stride, (lo, hi) in zip(self.strides, self.size_ranges, strict=True):
            hl, wl = math.ceil(height / stride), math.ceil(width / stride)
            ys = torch.arange(hl) * stride + stride // 2
            xs = torch.arange(wl) * stride + stride // 2
            inside = (ys < height).view(-1, 1) & (xs < width).view(1, -1)
            at = lut[ys.clamp(max=height - 1)][:, xs.clamp(max=width - 1)]
            at = torch.where(inside, at, len(segs))
            inst = inst_of_seg[at]
            b = boxes[inst.clamp(min=0)] if len(instances) else torch.zeros(hl, wl, 4)
            px, py = xs.view(1, -1).float(), ys.view(-1, 1).float()
            ltrb = torch.stack([px - b[..., 0], py - b[..., 1], b[..., 2] - px, b[..., 3] - py], dim=-1)
            reach = ltrb.max(dim=-1).values
            inside_box = ltrb.min(dim=-1).values > 0
            positive = (inst >= 0) & inside_box & (reach >= lo) & (reach <= hi)
            labels = torch.full((hl, wl), cats.num_things, dtype=torch.int64)
            labels[positive] = classes[inst[positive]]
            ltrb = torch.where(positive[..., None], ltrb, 0.0)
            lr, tb = ltrb[..., [0, 2]], ltrb[..., [1, 3]]
            ratio = (lr.min(-1).values / lr.max(-1).values) * (tb.min(-1).values / tb.max(-1).values)
            out["location_classes"].append(labels)
            out["box_targets"].append(ltrb)
            out["centerness"].append(torch.where(positive, ratio.clamp(min=0).sqrt(), 0.0))
            out["location_instance"].append(torch.where(positive, inst, -1))

        sub = subsample(lut, self.embedding_stride)
        out["segment_map"] = seg_value[sub].contiguous()
        out["category_map"] = cat_value[sub].contiguous()
        out["segment_boxes"] = segment_boxes
        out["instance_boxes"] = boxes
        out["instance_classes"] = classes
        return out
