"""Per-image PQ statistics from a confusion matrix, following panopticapi's rules exactly.

panopticapi's ``pq_compute_single_core`` (cocodataset/panopticapi ``evaluation.py``):

- a GT / predicted pair of the same category is a true positive when
  ``IoU = |g ∩ p| / (|p| + |g| - |g ∩ p| - |p ∩ VOID|) > 0.5`` (strict), with the GT area
  taken from the JSON and the predicted area counted in the PNG; crowd GT never matches;
- every unmatched, non-crowd GT segment is a false negative;
- an unmatched prediction is ignored when more than half of it lies on VOID plus the crowd
  region of its category (the last crowd segment of a category in JSON order), otherwise it is
  a false positive.

All pairs are evaluated at once on the small matrix; no loop over pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._confusion import FIRST_SEGMENT

# Rows of the per-image / accumulated statistics array.
IOU, TP, FP, FN, DAGGER_IOU, DAGGER_N = range(6)
N_STATS = 6


@dataclass(frozen=True)
class Segments:
    """The listed segments of one id map, as parallel arrays.

    Attributes:
        ids (int64[S]): segment ids.
        category (int64[S]): compact category index (position in the category list).
        iscrowd (bool[S]): crowd flag (GT only; all False for predictions).
        area (int64[S] or None): GT areas from the JSON; None to use the pixel counts.
        score (float64[S] or None): prediction confidences (NaN where a segment has none);
            None when no segment has one. Only mask AP reads it.
    """

    ids: np.ndarray
    category: np.ndarray
    iscrowd: np.ndarray
    area: np.ndarray | None = None
    score: np.ndarray | None = None


def image_stats(
    conf: np.ndarray,
    gt: Segments,
    pred: Segments,
    void_row: int,
    is_thing: np.ndarray,
) -> np.ndarray:
    """PQ statistics of one image.

    Args:
        conf (int64[G + 2, P + 2]): confusion matrix (layout in ``_confusion``).
        gt, pred: the listed segments, in JSON order.
        void_row: the row holding GT VOID pixels (``VOID``, or a listed segment whose id is
            the void id, which panopticapi then treats as both a segment and VOID).
        is_thing (bool[C]): per category.

    Returns:
        float64[6, C]: rows IOU, TP, FP, FN (PQ), DAGGER_IOU, DAGGER_N (PQ-dagger stuff terms).
    """
    n_cat = len(is_thing)
    stats = np.zeros((N_STATS, n_cat), dtype=np.float64)
    g0, p0 = FIRST_SEGMENT, FIRST_SEGMENT
    inter = conf[g0:, p0:]
    pred_area = conf[:, p0:].sum(axis=0)
    pred_void = conf[void_row, p0:]
    gt_area = inter.sum(axis=1) if gt.area is None else gt.area

    # All candidate pairs: same category, non-crowd GT, non-empty intersection.
    gi, pj = np.nonzero(inter)
    keep = (gt.category[gi] == pred.category[pj]) & ~gt.iscrowd[gi]
    gi, pj = gi[keep], pj[keep]
    pair_inter = inter[gi, pj]
    union = pred_area[pj] + gt_area[gi] - pair_inter - pred_void[pj]
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = pair_inter / union
    matched = iou > 0.5
    cat = gt.category[gi]
    stats[TP] = np.bincount(cat[matched], minlength=n_cat)
    stats[IOU] = np.bincount(cat[matched], weights=iou[matched], minlength=n_cat)

    gt_matched = np.zeros(len(gt.ids), dtype=bool)
    gt_matched[gi[matched]] = True
    pred_matched = np.zeros(len(pred.ids), dtype=bool)
    pred_matched[pj[matched]] = True

    missed = ~gt_matched & ~gt.iscrowd
    stats[FN] = np.bincount(gt.category[missed], minlength=n_cat)

    # Crowd region per category: the last crowd segment in JSON order wins.
    crowd_row = np.full(n_cat, -1, dtype=np.int64)
    for k in np.flatnonzero(gt.iscrowd).tolist():
        crowd_row[gt.category[k]] = k
    unmatched = np.flatnonzero(~pred_matched)
    ignored_area = pred_void[unmatched].copy()
    crowd_k = crowd_row[pred.category[unmatched]]
    has_crowd = crowd_k >= 0
    ignored_area[has_crowd] += inter[crowd_k[has_crowd], unmatched[has_crowd]]
    is_fp = ~(ignored_area / pred_area[unmatched] > 0.5)
    stats[FP] = np.bincount(pred.category[unmatched[is_fp]], minlength=n_cat)

    # PQ-dagger (Porzi et al.; torchmetrics' ModifiedPanopticQuality) for stuff: every
    # overlapping same-category pair adds its IoU, every non-crowd GT segment counts once.
    stuff_pair = ~is_thing[cat] & (union > 0)
    stats[DAGGER_IOU] = np.bincount(cat[stuff_pair], weights=iou[stuff_pair], minlength=n_cat)
    stuff_gt = ~gt.iscrowd & ~is_thing[gt.category]
    stats[DAGGER_N] = np.bincount(gt.category[stuff_gt], minlength=n_cat)
    return stats
