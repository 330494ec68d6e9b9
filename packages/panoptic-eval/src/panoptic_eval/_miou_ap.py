"""mIoU and mask AP next to PQ, from the same decoded id maps and the same pixel counts.

mIoU (detectron2's ``SemSegEvaluator``, things and stuff together): a category x category
confusion matrix, summed from the segment confusion matrix PQ already counts (no pixel work).
Index C (the last) stands for VOID and unlisted ids on either side: GT pixels there are ignored;
predicted VOID or unlisted pixels on a labelled GT pixel count as a miss of that GT category.
``IoU_c = TP_c / (GT_c + Pred_c - TP_c)`` with ``GT_c`` every GT pixel of c (missed ones
included) and ``Pred_c`` the pixels predicted c on labelled GT; ``mIoU`` is the mean over the
categories with GT pixels.

Mask AP (COCO, pycocotools' ``COCOeval`` with segm IoUs): GT instances are the thing segments
of the GT (crowd ones as ``iscrowd=1``, which COCOeval ignores and lets absorb detections);
detections are the thing segments of the predictions that carry a ``score``. A mask IoU needs
only the two areas and the intersection, and PQ's segment confusion matrix already counts every
(GT segment, predicted segment) intersection. So no mask or RLE is made: each image keeps its
thing instances (category, iscrowd or score, area) and their intersection counts, and COCOeval's
``computeIoU`` is given the IoUs pycocotools' ``maskUtils.iou`` computes from RLEs, the same
doubles (``i / u`` of the same integers; ``u`` the detection's area for a crowd GT). The state
grows with the thing segments only.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._confusion import FIRST_SEGMENT
from ._matching import Segments
from .categories import Category
from .errors import PanopticEvalError

METRICS = ("pq", "miou", "ap")
_INSTALL_HINT = "mask AP needs pycocotools: pip install 'panoptic-eval[coco]' (or pip install pycocotools)"


def parse_metrics(metrics: Any) -> tuple[str, ...]:
    """``"pq,miou"`` or ``("pq", "miou")`` -> a tuple of known metric names, in METRICS order."""
    names = metrics.split(",") if isinstance(metrics, str) else metrics
    if not isinstance(names, Sequence) or isinstance(names, bytes):
        raise PanopticEvalError(f"metrics must be a sequence of names from {METRICS}, got {metrics!r}")
    chosen = set()
    for name in names:
        key = name.strip().lower() if isinstance(name, str) else name
        if key not in METRICS:
            raise PanopticEvalError(f"unknown metric {name!r}; choose from {', '.join(METRICS)}")
        chosen.add(key)
    if not chosen:
        raise PanopticEvalError(f"metrics must name at least one of {', '.join(METRICS)}")
    return tuple(m for m in METRICS if m in chosen)


def _pycocotools():
    try:
        from pycocotools import mask as mask_utils
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise PanopticEvalError(_INSTALL_HINT) from None
    return mask_utils, COCO, COCOeval


def require_pycocotools() -> None:
    """Raise a :class:`PanopticEvalError` that says how to install pycocotools if it is missing."""
    _pycocotools()


@dataclass
class ImageExtras:
    """What one image adds to the mIoU and AP state.

    Attributes:
        category_confusion (int64[C + 1, C + 1] or None): GT category x predicted category
            pixel counts, index C = VOID / unlisted.
        size: (height, width).
        gt_instances: (category id, iscrowd, area) per GT thing segment, in segments_info order.
        pred_instances: (category id, score, area) per scored predicted thing segment, in order.
        intersections (int64[G, P]): pixels shared by GT instance g and predicted instance p.
        n_scored: predicted segments (any category) that carry a score.
    """

    category_confusion: np.ndarray | None
    size: tuple[int, int] = (0, 0)
    gt_instances: list = field(default_factory=list)
    pred_instances: list = field(default_factory=list)
    intersections: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int64))
    n_scored: int = 0


def category_confusion(conf: np.ndarray, gt: Segments, pred: Segments, n_cat: int) -> np.ndarray:
    """Sum a segment confusion matrix (layout in ``_confusion``) into int64[C + 1, C + 1]."""
    rows = np.full(conf.shape[0], n_cat, dtype=np.int64)
    rows[FIRST_SEGMENT:] = gt.category
    cols = np.full(conf.shape[1], n_cat, dtype=np.int64)
    cols[FIRST_SEGMENT:] = pred.category
    key = (rows[:, None] * (n_cat + 1) + cols[None, :]).reshape(-1)
    counts = np.bincount(key, weights=conf.reshape(-1), minlength=(n_cat + 1) ** 2)
    return counts.astype(np.int64).reshape(n_cat + 1, n_cat + 1)


def image_extras(
    metrics: tuple[str, ...],
    conf: np.ndarray,
    gt_ids: Any,
    gt: Segments,
    pred_ids: Any,
    pred: Segments,
    *,
    categories: Sequence[Category],
    is_thing: np.ndarray,
    id_mask: int | None = None,
) -> ImageExtras:
    """mIoU counts and AP instances of one image (only those the metrics need), from the segment
    confusion matrix ``conf`` (int64[G + 2, P + 2], layout in ``_confusion``) of the two maps."""
    extras = ImageExtras(category_confusion(conf, gt, pred, len(categories)) if "miou" in metrics else None)
    if "ap" not in metrics:
        return extras
    require_pycocotools()
    extras.size = (int(gt_ids.shape[0]), int(gt_ids.shape[1]))
    scored = np.zeros(len(pred.ids), dtype=bool) if pred.score is None else ~np.isnan(pred.score)
    extras.n_scored = int(scored.sum())
    rows = FIRST_SEGMENT + np.flatnonzero(is_thing[gt.category])
    cols = FIRST_SEGMENT + np.flatnonzero(is_thing[pred.category] & scored)
    # Every pixel is counted once in conf, so a segment's area is its row (GT) or column sum.
    gt_area, pred_area = conf[rows].sum(axis=1).tolist(), conf[:, cols].sum(axis=0).tolist()
    extras.intersections = conf[np.ix_(rows, cols)].astype(np.int64)
    for k, area in zip((rows - FIRST_SEGMENT).tolist(), gt_area):
        extras.gt_instances.append((categories[int(gt.category[k])].id, int(gt.iscrowd[k]), int(area)))
    for k, area in zip((cols - FIRST_SEGMENT).tolist(), pred_area):
        extras.pred_instances.append((categories[int(pred.category[k])].id, float(pred.score[k]), int(area)))
    return extras


class MiouApState:
    """Accumulated mIoU confusion matrix and AP instances of the images seen so far."""

    def __init__(self, metrics: tuple[str, ...], categories: Sequence[Category]) -> None:
        self.metrics = metrics
        self.categories = list(categories)
        if "ap" in metrics:
            require_pycocotools()
        self.reset()

    def reset(self) -> None:
        n = len(self.categories) + 1
        self.confusion = np.zeros((n, n), dtype=np.int64)
        self.sizes: list[tuple[int, int]] = []
        self.gt_instances: list[list] = []
        self.pred_instances: list[list] = []
        self.intersections: list[np.ndarray] = []
        self.n_scored = 0

    def add(self, extras: ImageExtras) -> None:
        if extras.category_confusion is not None:
            self.confusion += extras.category_confusion
        if "ap" in self.metrics:
            self.sizes.append(extras.size)
            self.gt_instances.append(extras.gt_instances)
            self.pred_instances.append(extras.pred_instances)
            self.intersections.append(extras.intersections)
            self.n_scored += extras.n_scored

    def merge(self, other: MiouApState) -> None:
        if other.metrics != self.metrics:
            raise PanopticEvalError(f"merge: metrics differ ({self.metrics} vs {other.metrics})")
        self.confusion += other.confusion
        self.sizes.extend(other.sizes)
        self.gt_instances.extend(other.gt_instances)
        self.pred_instances.extend(other.pred_instances)
        self.intersections.extend(other.intersections)
        self.n_scored += other.n_scored

    def state_dict(self) -> dict:
        return {"metrics": list(self.metrics), "confusion": self.confusion.copy(), "sizes": list(self.sizes),
                "gt_instances": [list(x) for x in self.gt_instances],
                "pred_instances": [list(x) for x in self.pred_instances],
                "intersections": [x.copy() for x in self.intersections], "n_scored": self.n_scored}

    def load_state_dict(self, state: dict | None) -> None:
        if state is None or tuple(state["metrics"]) != self.metrics:
            saved = None if state is None else tuple(state["metrics"])
            raise PanopticEvalError(f"load_state_dict: the state was saved with metrics {saved}, not {self.metrics}")
        self.confusion = np.asarray(state["confusion"], dtype=np.int64).copy()
        self.sizes = [tuple(s) for s in state["sizes"]]
        self.gt_instances = [list(x) for x in state["gt_instances"]]
        self.pred_instances = [list(x) for x in state["pred_instances"]]
        self.intersections = [np.asarray(x, dtype=np.int64).copy() for x in state["intersections"]]
        self.n_scored = int(state["n_scored"])

    def compute(self, dist: Any = None) -> dict:
        """``{"mIoU", "per_class_iou"}`` and/or ``{"AP", "AP50", "AP75"}``; sums over ranks if ``dist``."""
        out: dict = {}
        if "miou" in self.metrics:
            out.update(summarize_miou(self._global_confusion(dist), self.categories))
        if "ap" in self.metrics:
            sizes, gt, pred, inter = self.sizes, self.gt_instances, self.pred_instances, self.intersections
            n_scored = self.n_scored
            if dist is not None:
                parts: list = [None] * dist.get_world_size()
                dist.all_gather_object(parts, (sizes, gt, pred, inter, n_scored))
                sizes = [s for p in parts for s in p[0]]
                gt = [g for p in parts for g in p[1]]
                pred = [d for p in parts for d in p[2]]
                inter = [x for p in parts for x in p[3]]
                n_scored = sum(p[4] for p in parts)
            if n_scored == 0:
                raise PanopticEvalError(
                    "mask AP needs prediction segments with a 'score' in segments_info; none has one"
                )
            out.update(mask_ap(sizes, gt, pred, inter, [c for c in self.categories if c.isthing]))
        return out

    def _global_confusion(self, dist: Any) -> np.ndarray:
        if dist is None:
            return self.confusion
        import torch

        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
        tensor = torch.from_numpy(self.confusion.copy()).to(device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor.cpu().numpy()


def summarize_miou(confusion: np.ndarray, categories: Sequence[Category]) -> dict:
    """``{"mIoU": float or None, "per_class_iou": {cat_id: float or None}}`` from int64[C + 1, C + 1].

    None where detectron2 has NaN: a category without GT pixels (and mIoU when no category has any).
    """
    n = len(categories)
    tp = np.diagonal(confusion)[:n].astype(np.float64)
    pos_gt = confusion[:n, :].sum(axis=1).astype(np.float64)  # predicted VOID / unlisted: a miss
    pos_pred = confusion[:n, :n].sum(axis=0).astype(np.float64)  # on GT VOID / unlisted: ignored
    union = pos_gt + pos_pred - tp
    valid = (pos_gt > 0) & (union > 0)
    iou = np.divide(tp, union, out=np.zeros(n), where=valid)
    per_class = {c.id: (float(iou[k]) if valid[k] else None) for k, c in enumerate(categories)}
    miou = float(iou[valid].sum() / valid.sum()) if valid.any() else None
    return {"mIoU": miou, "per_class_iou": per_class}


def mask_ap(
    sizes: Sequence[tuple[int, int]],
    gt_instances: Sequence[Sequence],
    pred_instances: Sequence[Sequence],
    intersections: Sequence[np.ndarray],
    thing_categories: Sequence[Category],
) -> dict:
    """COCO mask AP through pycocotools' COCOeval (segm IoUs, area "all", 100 detections per image).

    Args:
        sizes: (height, width) per image.
        gt_instances: per image, (category id, iscrowd, pixel area) tuples.
        pred_instances: per image, (category id, score, pixel area) tuples.
        intersections: per image, int64[G, P] pixel counts shared by GT and predicted instances.
        thing_categories: the categories AP is averaged over.

    Returns:
        ``{"AP", "AP50", "AP75"}`` as fractions; None where COCOeval reports -1 (no GT instance
        to score, detectron2's NaN).
    """
    _, COCO, COCOeval = _pycocotools()

    class MaskIoUFromCounts(COCOeval):
        """COCOeval whose segm IoUs come from the counted areas and intersections."""

        def computeIoU(self, imgId, catId):  # COCOeval's name
            # COCOeval.computeIoU's selection: detections by descending score (mergesort),
            # at most maxDets[-1]; then maskUtils.iou(d, g, iscrowd), a [D, G] array or [].
            gt, dt = self._gts[imgId, catId], self._dts[imgId, catId]
            order = np.argsort([-d["score"] for d in dt], kind="mergesort")
            dt = [dt[i] for i in order][: self.params.maxDets[-1]]
            if not gt or not dt:
                return []
            inter = intersections[imgId][np.ix_([g["_index"] for g in gt], [d["_index"] for d in dt])].T  # [D, G]
            d_area = np.array([d["area"] for d in dt], dtype=np.float64)[:, None]
            g_area = np.array([g["area"] for g in gt], dtype=np.float64)[None, :]
            crowd = np.array([bool(g["iscrowd"]) for g in gt])[None, :]
            union = np.where(crowd, d_area, d_area + g_area - inter)
            # maskUtils' rleIou: i / u, with u = 1 where i = 0.
            return np.where(inter > 0, inter / np.where(inter > 0, union, 1.0), 0.0)

    images = [{"id": i, "height": h, "width": w} for i, (h, w) in enumerate(sizes)]
    cats = [{"id": c.id, "name": c.name} for c in thing_categories]
    gt_anns, dt_anns = [], []
    for image_id, instances in enumerate(gt_instances):
        for index, (cat_id, iscrowd, area) in enumerate(instances):
            gt_anns.append({"id": len(gt_anns) + 1, "image_id": image_id, "category_id": cat_id, "iscrowd": iscrowd,
                            "area": float(area), "_index": index})
    for image_id, instances in enumerate(pred_instances):
        for index, (cat_id, score, area) in enumerate(instances):
            dt_anns.append({"id": len(dt_anns) + 1, "image_id": image_id, "category_id": cat_id, "iscrowd": 0,
                            "score": score, "area": float(area), "_index": index})
    if not cats or not gt_anns:
        return {"AP": None, "AP50": None, "AP75": None}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt, coco_dt = COCO(), COCO()
        coco_gt.dataset = {"images": images, "annotations": gt_anns, "categories": cats}
        coco_dt.dataset = {"images": images, "annotations": dt_anns, "categories": cats}
        coco_gt.createIndex()
        coco_dt.createIndex()
        # iouType "bbox" only so that COCOeval._prepare does not decode segmentations (there are
        # none); the IoUs are the masks' (computeIoU above), and the bbox and segm evaluations
        # share every other step and parameter.
        evaluator = MaskIoUFromCounts(coco_gt, coco_dt, iouType="bbox")
        # Only the "all" area range at 100 detections enters AP / AP50 / AP75: leaving the other
        # ranges and limits out changes no number and saves most of COCOeval's time.
        params = evaluator.params
        params.areaRng, params.areaRngLbl, params.maxDets = params.areaRng[:1], params.areaRngLbl[:1], [100]
        evaluator.evaluate()
        evaluator.accumulate()
    precision = evaluator.eval["precision"][:, :, :, 0, 0]  # [IoU threshold, recall, category]
    out = {}
    for key, threshold in (("AP", None), ("AP50", 0.5), ("AP75", 0.75)):
        # COCOeval.summarize: the mean over the defined (> -1) precision values.
        values = precision if threshold is None else precision[np.flatnonzero(params.iouThrs == threshold)]
        values = values[values > -1]
        out[key] = float(np.mean(values)) if values.size else None
    return out
