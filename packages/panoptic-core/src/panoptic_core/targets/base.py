"""The contract between target generators, the collate and the methods' heads and losses.

A target generator turns one padded :class:`~panoptic_core.data.PanopticTarget` into a dict of
tensors (:class:`TargetGenerator`); every key it can return is named in :data:`GLOSSARY`, the
one table of target key names shared by all methods.

Conventions of the glossary:

* Sizes: H x W is the padded input size (what :class:`~panoptic_core.data.PanopticCollate`
  hands the generator); H' x W' a map at the generator's stated stride s (it samples input
  pixel ``(y s + s // 2, x s + s // 2)``); Hl x Wl = ceil(H / s_l) x ceil(W / s_l) the feature
  map of pyramid level l with stride s_l; h x w a mask map at 1/4 of the input.
* Classes: a *class* is the contiguous class index over all categories (the order of
  :class:`~panoptic_core.data.Categories`, ``Segment.class_index``); the *thing index* and
  *stuff index* number the thing and the stuff classes on their own (``Categories.thing_index``
  / ``stuff_index``); ``category_id`` is the dataset's id and never appears in targets.
  *Category* names only CIAE's memory categories (the paper's c_i, ``category_map``).
* C, C_thing, C_stuff: numbers of classes, thing classes, stuff classes.
* Segments and instances: a *segment* is an entry of the annotation (thing, stuff or crowd);
  an *instance* is a non-crowd thing segment. ``instance_*`` entries list the instances in
  segment order; ``segment_*`` entries are indexed by ``segment_map``.
* "center" is spelled the American way (detectron2's) in every key and identifier.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from ..data.structures import PanopticTarget

__all__ = ["GLOSSARY", "TargetGenerator"]


@runtime_checkable
class TargetGenerator(Protocol):
    """What a method's target generator is: ``generator(target) -> dict`` of tensors.

    The generators of this package (:class:`~panoptic_core.targets.PanopticDeepLabTargets`,
    :class:`~panoptic_core.targets.CIAETargets`, :class:`~panoptic_core.targets.PanopticFCNTargets`,
    :class:`~panoptic_core.targets.SOLOv2Targets`, :class:`~panoptic_core.targets.EINetTargets`)
    satisfy it structurally; ``isinstance(gen, TargetGenerator)`` checks that the members exist.
    A plain callable without the three attributes still works with the collate, which then
    infers how to batch each entry (tensors stacked, lists of tensors stacked level by level).

    Attributes:
        keys: every key the generator returns, all of them for every image (an image without
            segments or instances gets empty tensors, never missing keys). Each is a key of
            :data:`GLOSSARY`.
        ragged: entries whose size differs between images (per-image lists of instances or
            segments); :class:`~panoptic_core.data.PanopticCollate` keeps them as a list over
            the batch. A subset of ``keys``.
        per_level: entries that are lists with one tensor per pyramid level (same number of
            levels for every image); the collate stacks them level by level into a list of
            Tensor[B, ...]. A subset of ``keys``; a key that is also ragged stays a list over the
            batch of per-level lists.
    """

    keys: frozenset[str]
    ragged: frozenset[str]
    per_level: frozenset[str]

    def __call__(self, target: PanopticTarget) -> dict[str, Any]:
        """The targets of one image.

        Args:
            target: a padded target (``ids`` Tensor[H, W] int64, 0 = VOID, with its segments).

        Returns:
            a dict with exactly the keys of ``keys``: tensors at the padded input size H x W or
            at the generator's stated stride, lists of per-level tensors for ``per_level``.
        """
        ...


GLOSSARY: dict[str, str] = {
    # Panoptic-DeepLab (EINet returns semantic and semantic_weights)
    "semantic": (
        "Tensor[H, W] int64: class of each pixel (0..C-1); the ignore label (255) on VOID and padding, "
        "and on crowd with ignore_crowd_in_semantic. Panoptic-DeepLab, EINet."
    ),
    "semantic_weights": (
        "Tensor[H, W] float32: weight of each pixel in the semantic loss: small_instance_weight (3) on pixels "
        "of thing segments smaller than small_instance_area (4096 px), else 1. Panoptic-DeepLab, EINet."
    ),
    "center": (
        "Tensor[1, H, W] float32: center heatmap, the maximum over thing segments (crowd included) of a "
        "Gaussian (sigma 8, peak 1) at the mask centroid rounded to the nearest pixel. Panoptic-DeepLab."
    ),
    "center_weights": (
        "Tensor[1, H, W] float32: 1 on pixels of non-crowd segments, 0 on VOID, padding and crowd. "
        "Panoptic-DeepLab."
    ),
    "offset": (
        "Tensor[2, H, W] float32: (dy, dx) from each thing pixel to its segment's centroid, 0 elsewhere. "
        "Panoptic-DeepLab."
    ),
    "offset_weights": (
        "Tensor[1, H, W] float32: 1 on pixels of non-crowd thing segments (and stuff unless "
        "ignore_stuff_in_offset), else 0. Panoptic-DeepLab."
    ),
    "center_points": (
        "ragged, Tensor[K, 2] float64: (y, x) centroids of the K thing segments with pixels (crowd "
        "included, as detectron2), in segment order. Panoptic-DeepLab."
    ),
    # per location, per pyramid level
    "location_classes": (
        "per level, int64: thing index of each location's instance. CIAE: Tensor[Hl, Wl] over FCOS "
        "locations, background C_thing, -1 (ignored) inside crowd regions. SOLOv2: Tensor[S, S] over "
        "grid cells, background C_thing, no ignore value."
    ),
    "location_instance": (
        "per level, Tensor[Hl, Wl] int64: index into the instance_* entries of each location's instance, -1 on "
        "negatives. CIAE."
    ),
    "location_pairs": (
        "per level, ragged, Tensor[P, 2] int64: SOLOv2's (cell, instance) mask-target pairs, mmdetection's order "
        "(instances in order, each one's center-region cells row-major): flat cell y * S + x and index into the "
        "instance_* entries; a cell in two instances' center regions appears twice (two dice targets). SOLOv2."
    ),
    "box_targets": (
        "per level, Tensor[Hl, Wl, 4] float32: FCOS (l, t, r, b) distances in pixels from each location "
        "to its instance's box edges, 0 on negatives. CIAE."
    ),
    "centerness": (
        "per level, Tensor[Hl, Wl] float32: FCOS center-ness sqrt(min(l, r) / max(l, r) * min(t, b) / "
        "max(t, b)) of positive locations, 0 on negatives. CIAE."
    ),
    # per instance (non-crowd things)
    "instance_classes": (
        "ragged, Tensor[N] int64: thing index of each instance. CIAE, Panoptic FCN, SOLOv2 (SOLOv2 "
        "leaves out instances without pixels)."
    ),
    "instance_boxes": (
        "ragged, Tensor[N, 4] float32: (x1, y1, x2, y2) box of each instance, the COCO bbox (x, y, x + w, y + h). CIAE."
    ),
    "instance_masks": (
        "ragged, Tensor[N, h, w]: mask of each instance at 1/4 of the input. Panoptic FCN: float32 bilinear "
        "masks, h x w = int(H / 4 + 0.5) x int(W / 4 + 0.5). SOLOv2: uint8 0/1, h x w = ceil(H / 4) x "
        "ceil(W / 4), holding top-left the int(H / 4 + 0.5) x int(W / 4 + 0.5) rescaled mask (mmcv imrescale)."
    ),
    # per segment (things, stuff and crowd), indexed by segment_map
    "segment_map": (
        "Tensor[H', W'] int64 at the generator's stride: index of each pixel's segment into the "
        "segment_* entries, -1 where none. EINet: the annotation's segments in order, -1 on VOID. CIAE "
        "(the paper's s_i): stuff pixels their stuff index, pixels of instance n C_stuff + n, -1 on VOID "
        "and crowd."
    ),
    "segment_classes": "ragged, Tensor[S] int64: class of each segment. EINet.",
    "segment_isthing": "ragged, Tensor[S] bool: whether each segment is a thing. EINet.",
    "segment_iscrowd": "ragged, Tensor[S] bool: whether each segment is a crowd region. EINet.",
    "segment_centers": (
        "ragged, Tensor[S, 2] int64: (y, x) pixel of the generator's stride map holding each segment's mask "
        "centroid (floor of the centroid / stride), the peak of its class_center Gaussian; -1 for segments "
        "without pixels. EINet."
    ),
    "segment_boxes": (
        "ragged, Tensor[C_stuff + N, 4] float32: (x1, y1, x2, y2) box filter of each segment of "
        "segment_map: panoptic_ops.UNBOXED for the stuff classes, each instance's box expanded "
        "box_expand (1.5) times about its center. CIAE."
    ),
    "category_map": (
        "Tensor[H', W'] int64 at embedding_stride: CIAE memory category (the paper's c_i) of each pixel: "
        "stuff index on stuff, C_stuff on things (all thing classes merged, the default) or C_stuff + thing "
        "index (merge_things=False), -1 on VOID. CIAE."
    ),
    # Panoptic FCN
    "thing_heatmap": (
        "per level, Tensor[C_thing, Hl, Wl] float32: CenterNet Gaussians (peak 1) of the instances "
        "assigned to the level, at their mass centers, in their class's channel. Panoptic FCN."
    ),
    "stuff_heatmap": (
        "per level, Tensor[C', Hl, Wl] float32: stuff_masks resized (bilinear) to the level, clamped at 1, "
        "values below 0.5 set to 0. Panoptic FCN."
    ),
    "stuff_masks": (
        "Tensor[C', h, w] float32: bilinear 1/4 downsampling of the one-hot stuff map, h x w = "
        "int(H / 4 + 0.5) x int(W / 4 + 0.5); C' = 1 + C_stuff with channel 0 for all things (with_thing), "
        "else C_stuff. Panoptic FCN."
    ),
    "level_instances": (
        "per level, ragged, Tensor[n_l] int64: indices into the instance_* entries of the instances "
        "assigned to the level (by sqrt box area). Panoptic FCN."
    ),
    "level_centers": (
        "per level, ragged, Tensor[n_l] int64: flat position y * Wl + x of each assigned instance's center "
        "on the level. Panoptic FCN."
    ),
    # EINet
    "class_center": (
        "Tensor[C_thing, H', W'] float32 at the generator's stride: per thing class, scale-adaptive "
        "CenterNet Gaussians (radius from the box, sigma (2r + 1) / 6) at the centroids of its instances. "
        "EINet."
    ),
}
