"""From accumulated statistics to PQ / SQ / RQ, PQ-dagger, per-image PQ and bootstrap CIs.

Formulas, per category c with matched pairs TP_c, false positives FP_c, false negatives FN_c:

- ``PQ_c = sum_{(g,p) in TP_c} IoU(g,p) / (|TP_c| + |FP_c|/2 + |FN_c|/2)``
- ``SQ_c = sum IoU / |TP_c|`` (0 when |TP_c| = 0), ``RQ_c = |TP_c| / (|TP_c| + |FP_c|/2 + |FN_c|/2)``
- All / Things / Stuff: plain means of the per-class values over the categories (in the
  GT JSON's order) with ``TP_c + FP_c + FN_c > 0``; ``n`` is their number. Where no category
  qualifies (panopticapi divides by zero there), pq, sq and rq are 0.0 and n is 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._matching import DAGGER_IOU, DAGGER_N, FN, FP, IOU, TP
from .categories import Category
from .errors import PanopticEvalError

GROUPS = (("All", None), ("Things", True), ("Stuff", False))


def summarize(stats: np.ndarray, categories: Sequence[Category]) -> dict:
    """The pq_compute structure from a float64[6, C] statistics array.

    Returns:
        ``{"All"|"Things"|"Stuff": {"pq", "sq", "rq", "n"}, "per_class": {id: {"pq", "sq", "rq"}}}``
        with fractions in 0..1, computed in the same order of operations as panopticapi.
    """
    results: dict = {}
    for name, isthing in GROUPS:
        pq = sq = rq = 0.0
        n = 0
        per_class = {}
        for k, cat in enumerate(categories):
            if isthing is not None and cat.isthing != isthing:
                continue
            iou, tp, fp, fn = float(stats[IOU, k]), int(stats[TP, k]), int(stats[FP, k]), int(stats[FN, k])
            if tp + fp + fn == 0:
                per_class[cat.id] = {"pq": 0.0, "sq": 0.0, "rq": 0.0}
                continue
            n += 1
            pq_class = iou / (tp + 0.5 * fp + 0.5 * fn)
            sq_class = iou / tp if tp != 0 else 0.0
            rq_class = tp / (tp + 0.5 * fp + 0.5 * fn)
            per_class[cat.id] = {"pq": pq_class, "sq": sq_class, "rq": rq_class}
            pq += pq_class
            sq += sq_class
            rq += rq_class
        if n:
            results[name] = {"pq": pq / n, "sq": sq / n, "rq": rq / n, "n": n}
        else:
            results[name] = {"pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 0}
        if isthing is None:
            results["per_class"] = per_class
    return results


def summarize_pq_dagger(stats: np.ndarray, categories: Sequence[Category]) -> dict:
    """PQ-dagger (Porzi et al., "Seamless Scene Segmentation", CVPR 2019).

    Things keep ``PQ_c``. For a stuff category c, matching is dropped: every GT segment counts
    once and every predicted segment of c overlapping it adds its IoU (same VOID-excluded union
    as PQ), ``PQdagger_c = sum IoU / #GT segments of c``; unmatched stuff predictions are not
    penalised. This is torchmetrics' ``ModifiedPanopticQuality`` rule. Categories with no
    GT segment (stuff) or no TP/FP/FN (things) are left out of the means.

    Returns:
        ``{"All"|"Things"|"Stuff": {"pq", "n"}, "per_class": {id: pq}}``.
    """
    per_class: dict[int, float] = {}
    for k, cat in enumerate(categories):
        if cat.isthing:
            denom = stats[TP, k] + 0.5 * stats[FP, k] + 0.5 * stats[FN, k]
            if denom > 0:
                per_class[cat.id] = float(stats[IOU, k] / denom)
        elif stats[DAGGER_N, k] > 0:
            per_class[cat.id] = float(stats[DAGGER_IOU, k] / stats[DAGGER_N, k])
    results: dict = {}
    for name, isthing in GROUPS:
        values = [v for cat in categories if (v := per_class.get(cat.id)) is not None
                  and (isthing is None or cat.isthing == isthing)]
        results[name] = {"pq": float(np.mean(values)) if values else 0.0, "n": len(values)}
    results["per_class"] = per_class
    return results


def _group_means(stats: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """Vectorised PQ/SQ/RQ means over categories for a batch of statistics [..., 6, C]."""
    iou, tp, fp, fn = stats[..., IOU, :], stats[..., TP, :], stats[..., FP, :], stats[..., FN, :]
    denom = tp + 0.5 * fp + 0.5 * fn
    valid = (tp + fp + fn > 0) & mask
    with np.errstate(divide="ignore", invalid="ignore"):
        pq = np.where(valid, iou / denom, 0.0)
        sq = np.where(valid & (tp > 0), iou / tp, 0.0)
        rq = np.where(valid, tp / denom, 0.0)
    n = valid.sum(axis=-1)
    safe_n = np.maximum(n, 1)
    return {"pq": pq.sum(-1) / safe_n, "sq": sq.sum(-1) / safe_n, "rq": rq.sum(-1) / safe_n, "n": n}


def per_image_pq(image_stats: np.ndarray, image_ids: Sequence, categories: Sequence[Category]) -> list[dict]:
    """PQ / SQ / RQ of every image on its own (means over the categories present in it).

    Args:
        image_stats (float64[I, 6, C]): per-image statistics.
        image_ids: I image ids.

    Returns:
        One ``{"image_id", "pq", "sq", "rq", "n"}`` per image, worst PQ first (ties keep order).
    """
    if len(image_ids) == 0:
        return []
    means = _group_means(image_stats, np.ones(len(categories), dtype=bool))
    rows = [
        {"image_id": image_id, "pq": float(means["pq"][i]), "sq": float(means["sq"][i]),
         "rq": float(means["rq"][i]), "n": int(means["n"][i])}
        for i, image_id in enumerate(image_ids)
    ]
    order = np.argsort([r["pq"] for r in rows], kind="stable")
    return [rows[i] for i in order]


def bootstrap_ci(
    image_stats: np.ndarray,
    categories: Sequence[Category],
    *,
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict:
    """Percentile bootstrap confidence intervals of PQ / SQ / RQ over images.

    Each of ``samples`` resamples draws I images with replacement, sums their statistics and
    computes All / Things / Stuff PQ, SQ and RQ as :func:`summarize` does; the interval is the
    ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` percentiles of those values.

    Returns:
        ``{"All"|"Things"|"Stuff": {"pq"|"sq"|"rq": [low, high]}, "samples", "confidence", "seed"}``.
    """
    if not 0 < confidence < 1:
        raise PanopticEvalError(f"confidence must lie in (0, 1), got {confidence}")
    if samples < 1:
        raise PanopticEvalError(f"bootstrap samples must be >= 1, got {samples}")
    n_images = image_stats.shape[0]
    if n_images == 0:
        raise PanopticEvalError("bootstrap needs at least one image")
    rng = np.random.default_rng(seed)
    flat = image_stats.reshape(n_images, -1)
    lo_q, hi_q = 100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2
    out: dict = {"samples": samples, "confidence": confidence, "seed": seed}
    chunks = []
    for start in range(0, samples, 256):
        count = min(256, samples - start)
        weights = rng.multinomial(n_images, np.full(n_images, 1.0 / n_images), size=count)
        chunks.append((weights.astype(np.float64) @ flat).reshape(count, *image_stats.shape[1:]))
    resampled = np.concatenate(chunks)
    thing = np.array([c.isthing for c in categories], dtype=bool)
    for name, isthing in GROUPS:
        mask = np.ones_like(thing) if isthing is None else (thing == isthing)
        means = _group_means(resampled, mask)
        out[name] = {
            key: [float(np.percentile(means[key], lo_q)), float(np.percentile(means[key], hi_q))]
            for key in ("pq", "sq", "rq")
        }
    return out
