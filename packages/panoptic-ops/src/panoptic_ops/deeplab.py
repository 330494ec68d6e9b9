"""Panoptic-DeepLab post-processing, element-for-element equal to detectron2's
``projects/Panoptic-DeepLab/panoptic_deeplab/post_processing.py``, in O(H*W + K) memory.

Semantics (all shared with :mod:`panoptic_ops.reference`):

* ``find_instance_center``: values ``<= threshold`` (compared in the heatmap's dtype) become -1;
  a pixel is a center when it equals the ``nms_kernel`` max-pool of that map (so plateau peaks
  all survive; a NaN anywhere in the window suppresses it) and is > 0. With ``top_k``, only
  centers strictly above the k-th largest value of the map (clamped at 0) are kept, so ties
  at the k-th drop. Centers come in raster (y, x) order. ``top_k`` larger than H*W keeps every
  center (detectron2's ``torch.topk`` raises there).
* ``group_pixels``: each pixel goes to the center nearest to ``(y, x) + offset``; distances are
  ``sqrt(dy*dy + dx*dx)`` in the offsets' dtype with every operation rounded (detectron2's
  ``torch.norm`` rounds differently depending on CPU and memory layout, which can only matter
  when two distances are within one ulp); ties and NaN go to the first center.
* ``merge_semantic_and_instance``: majority vote of the semantic labels inside each instance
  (ties to the smallest label on CPU and CUDA alike; ``torch.mode`` promises nothing there),
  instance ids numbered per class in increasing instance order, stuff kept when its area
  (pixels of the class outside instances) is ``>= stuff_area``, everything else ``void_label``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from panoptic_ops._library import assert_has_ops
from panoptic_ops._validation import INT_TYPES, check_int, check_tensor, check_tensors, check_threshold, int_list

__all__ = [
    "find_instance_center",
    "get_panoptic_segmentation",
    "get_panoptic_segmentation_per_image",
    "group_pixels",
    "merge_semantic_and_instance",
]

_INT64_MAX = (1 << 63) - 1


def _label_args(
    sem_seg: torch.Tensor, label_divisor: object, thing_ids: Iterable[int], stuff_area: object, void_label: object
) -> tuple[int, list[int], int, int]:
    """(label_divisor, thing_ids, stuff_area, void_label) as the op takes them: integers, never
    truncated, that fit int64 (the op checks their ranges: label_divisor >= 1, thing_ids >= 0),
    with ``class * label_divisor + instance`` inside int64 for every class in ``sem_seg``."""
    divisor = check_int("label_divisor", label_divisor, low=-_INT64_MAX - 1, high=_INT64_MAX)
    things = int_list("thing_ids", thing_ids)
    if things and (things[0] < -_INT64_MAX - 1 or things[-1] > _INT64_MAX):
        raise ValueError(f"thing_ids must lie in [0, 2**63), got {things}")
    area = check_int("stuff_area", stuff_area, low=-_INT64_MAX - 1, high=_INT64_MAX)
    void = check_int("void_label", void_label, low=-_INT64_MAX - 1, high=_INT64_MAX)
    if torch.compiler.is_compiling() or sem_seg.numel() == 0 or sem_seg.dtype not in INT_TYPES or divisor < 1:
        # The data-dependent bound below needs eager integer tensors; the op refuses other dtypes
        # and divisors.
        return divisor, things, area, void
    pixels = sem_seg.numel()  # the instance numbers of one [1, H, W] map stay below H * W
    info = torch.iinfo(sem_seg.dtype)
    largest = max(abs(info.min), info.max)
    if largest * divisor + pixels > _INT64_MAX:
        low, high = (int(v) for v in torch.aminmax(sem_seg))  # one pass, only where the dtype allows overflow
        largest = max(abs(low), abs(high), 1)
        bound = (_INT64_MAX - pixels) // largest
        if divisor > bound:
            raise ValueError(
                f"label_divisor = {divisor} overflows int64 in class * label_divisor + instance for class {largest} of "
                f"sem_seg; it must be at most {bound} here"
            )
    return divisor, things, area, void


def find_instance_center(
    center_heatmap: torch.Tensor, threshold: float = 0.1, nms_kernel: int = 3, top_k: int | None = None
) -> torch.Tensor:
    """Find instance centers in a center heatmap.

    Args:
        center_heatmap (Tensor[1, H, W]): raw center heatmap, float32 or float64.
        threshold: values at or below it are never centers.
        nms_kernel: odd max-pool window of the peak test.
        top_k: keep at most the centers strictly above the k-th largest value.

    Returns:
        Tensor[K, 2] int64: (y, x) of each center in raster order.
    """
    assert_has_ops()
    check_tensors(center_heatmap=center_heatmap)
    return torch.ops.panoptic_ops.find_instance_center(
        center_heatmap, check_threshold("threshold", threshold), *_window_args(nms_kernel, top_k)
    )


def _window_args(nms_kernel: object, top_k: object) -> tuple[int, int | None]:
    """nms_kernel and top_k as the op takes them: integers, not bools (the op checks their values)."""
    if not _is_int(nms_kernel):
        raise ValueError(f"nms_kernel must be a positive odd integer (max-pool window), got {nms_kernel!r}")
    if top_k is not None and not _is_int(top_k):
        raise ValueError(f"top_k must be None or a positive integer, got {top_k!r}")
    return int(nms_kernel), None if top_k is None else int(top_k)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def group_pixels(center_points: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Give each pixel the 1-based id of the center its offset points nearest to.

    Args:
        center_points (Tensor[K, 2]): int64 (y, x) centers. With K = 0 every pixel gets 0.
        offsets (Tensor[2, H, W]): (offset_y, offset_x), float32 or float64.

    Returns:
        Tensor[1, H, W] int64 with values in [1, K] (all 0 when K = 0).
    """
    assert_has_ops()
    check_tensors(center_points=center_points, offsets=offsets)
    return torch.ops.panoptic_ops.group_pixels(center_points, offsets)


def merge_semantic_and_instance(
    sem_seg: torch.Tensor,
    ins_seg: torch.Tensor,
    semantic_thing_seg: torch.Tensor,
    label_divisor: int,
    thing_ids: Iterable[int],
    stuff_area: int,
    void_label: int,
) -> torch.Tensor:
    """Merge semantic labels and class-agnostic instances into panoptic ids.

    Args:
        sem_seg (Tensor[1, H, W]): integer semantic labels.
        ins_seg (Tensor[1, H, W]): integer instance ids, 0 = no instance.
        semantic_thing_seg (Tensor[1, H, W]): foreground mask (bool or integer, > 0 = thing).
        label_divisor: panoptic id = class * label_divisor + instance number.
        thing_ids: contiguous class ids of thing classes.
        stuff_area: stuff regions smaller than this become ``void_label``.
        void_label: id of pixels without a confident prediction.

    Returns:
        Tensor[1, H, W] int64 panoptic ids.
    """
    assert_has_ops()
    check_tensors(sem_seg=sem_seg, ins_seg=ins_seg, semantic_thing_seg=semantic_thing_seg)
    divisor, things, area, void = _label_args(sem_seg, label_divisor, thing_ids, stuff_area, void_label)
    return torch.ops.panoptic_ops.merge_semantic_and_instance(
        sem_seg, ins_seg, semantic_thing_seg, divisor, things, area, void
    )


def get_panoptic_segmentation(
    sem_seg: torch.Tensor,
    center_heatmap: torch.Tensor,
    offsets: torch.Tensor,
    thing_ids: Iterable[int],
    label_divisor: int,
    stuff_area: int,
    void_label: int,
    threshold: float = 0.1,
    nms_kernel: int = 7,
    top_k: int | None = 200,
    foreground_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Panoptic-DeepLab post-processing of one image (detectron2's signature and defaults).

    Args:
        sem_seg (Tensor[1, H, W]): integer semantic labels (argmax of the semantic head).
        center_heatmap (Tensor[1, H, W]): raw center heatmap, float32 or float64.
        offsets (Tensor[2, H, W]): (offset_y, offset_x), float32 or float64.
        thing_ids: contiguous class ids of thing classes (integers >= 0).
        label_divisor: panoptic id = class * label_divisor + instance number (an integer >= 1;
            ``class * label_divisor + H * W`` must fit in int64).
        stuff_area: stuff regions smaller than this become ``void_label``.
        void_label: id of pixels without a confident prediction.
        threshold, nms_kernel, top_k: center selection, see :func:`find_instance_center`.
            ``top_k=None`` keeps every peak above ``threshold`` and grouping costs O(H * W * K)
            for K peaks: a noise heatmap of 1024 x 2048 has K ~ 1.9 M and takes minutes, so
            keep ``top_k`` bounded (detectron2's default 200) unless the heatmap is clean.
        foreground_mask (Tensor[1, H, W], optional): binary thing mask (bool or 0/1 integers);
            by default pixels whose label is in ``thing_ids``.

    Returns:
        (panoptic Tensor[1, H, W] int64, centers Tensor[1, K, 2] int64).
    """
    assert_has_ops()
    check_tensors(sem_seg=sem_seg, center_heatmap=center_heatmap, offsets=offsets)
    if foreground_mask is not None:
        check_tensors(foreground_mask=foreground_mask)
    divisor, things, area, void = _label_args(sem_seg, label_divisor, thing_ids, stuff_area, void_label)
    return torch.ops.panoptic_ops.get_panoptic_segmentation(
        sem_seg, center_heatmap, offsets, things, divisor, area, void, check_threshold("threshold", threshold),
        *_window_args(nms_kernel, top_k), foreground_mask,
    )  # fmt: skip


def get_panoptic_segmentation_per_image(
    sem_seg: torch.Tensor,
    center_heatmap: torch.Tensor,
    offsets: torch.Tensor,
    thing_ids: Iterable[int],
    label_divisor: int,
    stuff_area: int,
    void_label: int,
    threshold: float = 0.1,
    nms_kernel: int = 7,
    top_k: int | None = 200,
    foreground_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """:func:`get_panoptic_segmentation` applied to each image of a batch: one op call per image
    (not a batched kernel; the images' center counts differ, and each call is already parallel
    over pixels), for callers holding ``[B, ...]`` head outputs.

    Args:
        sem_seg (Tensor[B, H, W]): integer semantic labels.
        center_heatmap (Tensor[B, 1, H, W]): raw center heatmaps.
        offsets (Tensor[B, 2, H, W]): (offset_y, offset_x).
        foreground_mask (Tensor[B, H, W], optional): binary thing masks.

    Returns:
        (panoptic Tensor[B, H, W] int64, list of B centers Tensor[K_b, 2] int64).
    """
    assert_has_ops()
    # The batch shapes; each image's call checks dtypes, devices and values.
    check_tensor("sem_seg", sem_seg, dims=3)
    batch, height, width = sem_seg.shape
    check_tensor("center_heatmap", center_heatmap, shape=(batch, 1, height, width))
    check_tensor("offsets", offsets, shape=(batch, 2, height, width))
    if foreground_mask is not None:
        check_tensor("foreground_mask", foreground_mask, shape=(batch, height, width))
    panoptic = torch.empty((batch, height, width), dtype=torch.int64, device=sem_seg.device)
    centers = []
    for b in range(batch):
        pan, ctr = get_panoptic_segmentation(
            sem_seg[b : b + 1], center_heatmap[b], offsets[b], thing_ids, label_divisor, stuff_area, void_label,
            threshold, nms_kernel, top_k, None if foreground_mask is None else foreground_mask[b : b + 1],
        )  # fmt: skip
        panoptic[b] = pan[0]
        centers.append(ctr[0])
    return panoptic, centers
