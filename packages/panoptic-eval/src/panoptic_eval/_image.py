"""Statistics of one image: parse segments_info, count pixels, check consistency, match."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ._confusion import FIRST_SEGMENT, UNLISTED, VOID, confusion, is_torch_tensor
from ._matching import Segments, image_stats
from .errors import PanopticEvalError

_INT64_MIN, _INT64_END = -(1 << 63), 1 << 63


def _as_int(value: Any, *, where: str, key: str, low: int = _INT64_MIN) -> int:
    """``value`` as an int in [low, 2**63) (the int64 arrays statistics are kept in)."""
    if type(value) is int and low <= value < _INT64_END:  # the common case, without the checks below
        return value
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise PanopticEvalError(f"{where}: {key} must be an integer, got {value!r}")
    if not low <= int(value) < _INT64_END:
        shown = "-2**63" if low == _INT64_MIN else low
        raise PanopticEvalError(f"{where}: {key} = {int(value)} is outside [{shown}, 2**63)")
    return int(value)


def parse_segments(
    segments_info: Any,
    cat_index: Mapping[int, int],
    *,
    where: str,
    is_gt: bool,
    strict: bool,
    scores: bool = False,
) -> Segments:
    """Turn a COCO ``segments_info`` list into :class:`Segments`.

    Args:
        segments_info: list of dicts with ``id`` and ``category_id`` (GT: also ``iscrowd`` and
            ``area``; required when ``strict``, else iscrowd defaults to 0 and areas are counted;
            predictions: optional ``score``, a finite number, read only when ``scores``).
        cat_index: category id -> position in the category list.
        where: names the image and side in error messages.
    """
    if not isinstance(segments_info, Sequence) or isinstance(segments_info, (str, bytes)):
        raise PanopticEvalError(f"{where}: segments_info must be a list, got {type(segments_info).__name__}")
    n = len(segments_info)
    ids = np.empty(n, dtype=np.int64)
    category = np.empty(n, dtype=np.int64)
    iscrowd = np.zeros(n, dtype=bool)
    areas = np.empty(n, dtype=np.int64)
    score = np.full(n, np.nan)
    have_area = is_gt
    seen: set[int] = set()
    for k, seg in enumerate(segments_info):
        if not isinstance(seg, Mapping):
            raise PanopticEvalError(f"{where}: segments_info[{k}] must be an object, got {type(seg).__name__}")
        for key in ("id", "category_id") + (("iscrowd", "area") if is_gt and strict else ()):
            if key not in seg:
                raise PanopticEvalError(f"{where}: segments_info[{k}] has no {key!r}")
        seg_id = _as_int(seg["id"], where=where, key=f"segments_info[{k}].id")
        if seg_id in seen:
            raise PanopticEvalError(f"{where}: duplicate segment id {seg_id} in segments_info")
        seen.add(seg_id)
        cat_id = _as_int(seg["category_id"], where=where, key=f"segment {seg_id} category_id")
        if cat_id not in cat_index:
            raise PanopticEvalError(f"{where}: segment {seg_id} has unknown category_id {cat_id}")
        ids[k], category[k] = seg_id, cat_index[cat_id]
        if scores and "score" in seg:
            score[k] = _as_score(seg["score"], where=where, seg_id=seg_id)
        if is_gt:
            crowd = seg.get("iscrowd", 0)
            if isinstance(crowd, bool):
                crowd = int(crowd)
            if _as_int(crowd, where=where, key=f"segment {seg_id} iscrowd") not in (0, 1):
                raise PanopticEvalError(f"{where}: segment {seg_id} iscrowd must be 0 or 1, got {crowd!r}")
            iscrowd[k] = crowd == 1
            if "area" in seg:
                areas[k] = _as_int(seg["area"], where=where, key=f"segment {seg_id} area", low=0)
            else:
                have_area = False
    have_score = scores and not np.isnan(score).all()
    return Segments(ids=ids, category=category, iscrowd=iscrowd, area=areas if have_area else None,
                    score=score if have_score else None)


def _as_score(value: Any, *, where: str, seg_id: int) -> float:
    number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not number or not np.isfinite(value):
        raise PanopticEvalError(f"{where}: segment {seg_id} score must be a finite number, got {value!r}")
    return float(value)


def _unlisted_ids(ids_map: Any, listed: np.ndarray, void_id: int | None) -> list[int]:
    """Ids present in a map but not listed (error path only: one sort of the map)."""
    if is_torch_tensor(ids_map):
        present = ids_map.unique().cpu().numpy()
    else:
        present = np.unique(ids_map)
    # Python ints: uint64 ids >= 2**63 must not wrap in the message.
    extra = sorted(set(present.tolist()) - set(listed.tolist()))
    return [v for v in extra if void_id is None or v != void_id]


def compute_image_stats(
    gt_ids: Any,
    gt: Segments,
    pred_ids: Any,
    pred: Segments,
    *,
    is_thing: np.ndarray,
    void_id: int | None,
    where: str,
    id_mask: int | None = None,
    with_confusion: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """float64[6, C] PQ statistics of one image; raises on inconsistent predictions.

    ``id_mask``: the maps hold ``id | junk`` and ``value & id_mask`` is the id (packed PNGs).
    ``with_confusion``: return ``(stats, segment confusion matrix)`` (for mIoU).
    """
    conf = confusion(gt_ids, gt.ids, pred_ids, pred.ids, void_id, id_mask)
    if conf[:, UNLISTED].any():
        extra = _unlisted_ids(pred_ids if id_mask is None else pred_ids & id_mask, pred.ids, void_id)
        raise PanopticEvalError(
            f"{where}: segment id(s) {extra[:10]} are in the prediction PNG but not in its segments_info"
        )
    if gt.area is not None:
        # panopticapi takes GT areas from the JSON: an area of 0 on a segment with pixels would
        # make its IoU infinite.
        bad = (gt.area <= 0) & (conf[FIRST_SEGMENT:].sum(axis=1) > 0)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise PanopticEvalError(
                f"{where}: GT segment {int(gt.ids[k])} has area {int(gt.area[k])} in the JSON but has pixels in the "
                "PNG; its area must be its pixel count"
            )
    pred_area = conf[:, FIRST_SEGMENT:].sum(axis=0)
    if (pred_area == 0).any():
        missing = pred.ids[pred_area == 0].tolist()
        raise PanopticEvalError(
            f"{where}: segment id(s) {missing[:10]} are in the prediction segments_info but not in its PNG"
        )
    void_row = VOID
    if void_id is not None:
        hit = np.flatnonzero(gt.ids == void_id)
        if hit.size:
            void_row = FIRST_SEGMENT + int(hit[0])
    stats = image_stats(conf, gt, pred, void_row, is_thing)
    return (stats, conf) if with_confusion else stats
