"""Streaming Panoptic Quality for training and evaluation loops."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ._confusion import TABLE_LIMIT, check_id_map, is_torch_tensor
from ._image import compute_image_stats, parse_segments
from ._matching import N_STATS, Segments
from ._miou_ap import ImageExtras, MiouApState, image_extras, parse_metrics
from .categories import parse_categories
from .errors import PanopticEvalError
from .metrics import bootstrap_ci, per_image_pq, summarize, summarize_pq_dagger


class PanopticQuality:
    """Accumulates PQ statistics image by image; O(number of categories) state.

    Example::

        metric = PanopticQuality(categories)          # COCO category dicts
        for batch in loader:
            metric.update(gt_ids, gt_segments, pred_ids, pred_segments)
        metric.compute()["All"]["pq"]

    Each ``update`` gives exactly the statistics panopticapi computes for that image
    (see :mod:`panoptic_eval._matching`), so the result equals ``pq_compute`` on the same data.
    Under ``torch.distributed`` :meth:`compute` sums the statistics of all ranks (a collective:
    every rank must call it).

    Args:
        categories: COCO category dicts with ``id`` and ``isthing``, or :class:`Category` objects
            (checked by :func:`parse_categories`; the order defines the order of the per-class
            averages, as the GT JSON does for panopticapi).
        keep_per_image: also keep each image's statistics (6 x C floats per image) for
            :meth:`per_image` and :meth:`bootstrap`.
        sync_dist: all-reduce over the default process group in :meth:`compute` when one is
            initialised.
        metrics: any of ``"pq"``, ``"miou"``, ``"ap"`` (or ``"pq,miou,ap"``), all counted in the
            same pass over each image (see :mod:`panoptic_eval._miou_ap`); ``"ap"`` needs
            pycocotools and a ``score`` in the predictions' segments_info.
    """

    def __init__(
        self, categories: Any, *, keep_per_image: bool = False, sync_dist: bool = True, metrics: Any = ("pq",)
    ) -> None:
        self.categories = parse_categories(categories)
        #: category id -> its position in ``categories`` (the column of the statistics)
        self.category_index = {c.id: k for k, c in enumerate(self.categories)}
        self._is_thing = np.array([c.isthing for c in self.categories], dtype=bool)
        self.keep_per_image = keep_per_image
        self.sync_dist = sync_dist
        self.metrics = parse_metrics(metrics)
        self._extra = MiouApState(self.metrics, self.categories)
        self.reset()

    def reset(self) -> None:
        """Forget every image seen so far."""
        self._stats = np.zeros((N_STATS, len(self.categories)), dtype=np.float64)
        self._image_stats: list[np.ndarray] = []
        self._image_ids: list[Any] = []
        self.num_images = 0
        self._extra.reset()

    # ------------------------------------------------------------------ updates
    def update(
        self,
        gt_ids: Any,
        gt_segments_info: Sequence[Mapping[str, Any]],
        pred_ids: Any,
        pred_segments_info: Sequence[Mapping[str, Any]],
        *,
        image_id: Any = None,
    ) -> None:
        """Add one image given its id maps and COCO ``segments_info`` lists.

        Args:
            gt_ids (ndarray or Tensor[H, W], integer): GT segment ids; 0 is VOID.
            gt_segments_info: dicts with ``id``, ``category_id``, optional ``iscrowd`` (default
                0) and ``area`` (used when every segment has one, as panopticapi uses the JSON
                area; otherwise the pixel count).
            pred_ids (same kind and shape as ``gt_ids``): predicted ids; 0 pixels are VOID.
            pred_segments_info: dicts with ``id`` and ``category_id``.
            image_id: label for error messages and :meth:`per_image`.

        Torch tensors are counted on their device; only a small matrix is copied to the host.
        """
        where = f"image {image_id if image_id is not None else self.num_images}"
        gt_ids = check_id_map(_signed_torch(gt_ids, name=f"{where}: gt_ids"), name=f"{where}: gt_ids")
        pred_ids = check_id_map(_signed_torch(pred_ids, name=f"{where}: pred_ids"), name=f"{where}: pred_ids")
        gt = parse_segments(gt_segments_info, self.category_index, where=f"{where} (GT)", is_gt=True, strict=False)
        pred = parse_segments(pred_segments_info, self.category_index, where=f"{where} (prediction)",
                              is_gt=False, strict=False, scores="ap" in self.metrics)
        stats, extras = self.measure_image(gt_ids, gt, pred_ids, pred, void_id=0, where=where)
        self.add_image_stats(stats, image_id=image_id, extras=extras)

    def measure_image(
        self, gt_ids: Any, gt: Segments, pred_ids: Any, pred: Segments, *, void_id: int | None, where: str,
        id_mask: int | None = None,
    ) -> tuple[np.ndarray, ImageExtras | None]:
        """PQ statistics and (when mIoU or AP is asked for) the extras of one image; adds nothing."""
        if self.metrics == ("pq",):
            stats = compute_image_stats(gt_ids, gt, pred_ids, pred, is_thing=self._is_thing, void_id=void_id,
                                        where=where, id_mask=id_mask)
            return stats, None
        stats, conf = compute_image_stats(gt_ids, gt, pred_ids, pred, is_thing=self._is_thing, void_id=void_id,
                                          where=where, id_mask=id_mask, with_confusion=True)
        extras = image_extras(self.metrics, conf, gt_ids, gt, pred_ids, pred, categories=self.categories,
                              is_thing=self._is_thing, id_mask=id_mask)
        return stats, extras

    def update_label_divisor(
        self,
        gt_labels: Any,
        pred_labels: Any,
        *,
        label_divisor: int,
        void_label: int = -1,
        thing_instance_zero_is_crowd: bool = True,
        image_id: Any = None,
        pred_scores: Mapping[int, float] | None = None,
    ) -> None:
        """Add one image given label-divisor encoded maps (Panoptic-DeepLab, Cityscapes style).

        Every pixel holds ``category_id * label_divisor + instance`` or ``void_label``. Each
        distinct value is one segment; stuff categories normally use instance 0. With
        ``thing_instance_zero_is_crowd``, GT pixels of a thing category with instance 0 form
        that category's crowd region (as cityscapesScripts' conversion makes thing pixels
        without an instance id ``iscrowd=1``); predicted segments are never crowd. Areas are
        pixel counts.

        Args:
            gt_labels, pred_labels (ndarray or Tensor[H, W], integer): encoded maps.
            label_divisor: e.g. 1000 (Cityscapes) or 256 * 256.
            void_label: the value of VOID pixels (e.g. -1, or ``255 * label_divisor``).
            pred_scores: {predicted label: confidence}, for mask AP (labels left out carry no score).
        """
        where = f"image {image_id if image_id is not None else self.num_images}"
        if isinstance(label_divisor, bool) or not isinstance(label_divisor, (int, np.integer)) or label_divisor < 1:
            raise PanopticEvalError(f"label_divisor must be a positive integer, got {label_divisor!r}")
        gt_labels = check_id_map(_signed_torch(gt_labels, name=f"{where}: gt_labels"), name=f"{where}: gt_labels",
                                 allow_negative=True)
        pred_labels = check_id_map(_signed_torch(pred_labels, name=f"{where}: pred_labels"),
                                   name=f"{where}: pred_labels", allow_negative=True)
        shift = max(0, -int(void_label))
        void_id = int(void_label) + shift
        gt_map, gt_values, gt_counts = _shifted_values(gt_labels, shift, void_label, name=f"{where}: gt_labels")
        pred_map, pred_values, _ = _shifted_values(pred_labels, shift, void_label, name=f"{where}: pred_labels")
        gt = self._label_segments(gt_values, gt_counts, shift, void_id, label_divisor,
                                  crowd=thing_instance_zero_is_crowd, where=f"{where} (GT)")
        pred = self._label_segments(pred_values, None, shift, void_id, label_divisor,
                                    crowd=False, where=f"{where} (prediction)")
        if pred_scores is not None and "ap" in self.metrics:
            pred = _with_scores(pred, pred_scores, shift, where=f"{where} (prediction)")
        stats, extras = self.measure_image(gt_map, gt, pred_map, pred, void_id=void_id, where=where)
        self.add_image_stats(stats, image_id=image_id, extras=extras)

    def _label_segments(
        self, values: np.ndarray, counts: np.ndarray | None, shift: int, void_id: int, divisor: int,
        *, crowd: bool, where: str,
    ) -> Segments:
        """Segments of a shifted label map from its distinct values (and pixel counts)."""
        keep = values != void_id
        ids = values[keep]
        labels = ids - shift
        category = np.empty(len(ids), dtype=np.int64)
        for k, label in enumerate(labels.tolist()):
            cat = label // divisor
            if cat not in self.category_index:
                raise PanopticEvalError(
                    f"{where}: label {label} has unknown category {cat} (label_divisor {divisor})"
                )
            category[k] = self.category_index[cat]
        iscrowd = (labels % divisor == 0) & self._is_thing[category] if crowd else np.zeros(len(ids), bool)
        return Segments(ids=ids, category=category, iscrowd=iscrowd, area=None if counts is None else counts[keep])

    def add_image_stats(self, stats: np.ndarray, *, image_id: Any = None, extras: ImageExtras | None = None) -> None:
        """Add precomputed per-image statistics (float64[6, C]), e.g. from worker processes.

        ``extras``: the image's mIoU / AP part from :meth:`measure_image` (needed when those
        metrics are asked for).
        """
        stats = np.asarray(stats, dtype=np.float64)
        if stats.shape != self._stats.shape:
            raise PanopticEvalError(f"image statistics must have shape {self._stats.shape}, got {stats.shape}")
        if self.metrics != ("pq",):
            if extras is None:
                raise PanopticEvalError(f"add_image_stats: metrics {self.metrics} need the image's extras")
            self._extra.add(extras)
        self._stats += stats
        if self.keep_per_image:
            self._image_stats.append(stats)
            self._image_ids.append(image_id if image_id is not None else self.num_images)
        self.num_images += 1

    def merge(self, other: PanopticQuality) -> PanopticQuality:
        """Add another accumulator's images to this one (same categories); returns self."""
        if [(c.id, c.isthing) for c in other.categories] != [(c.id, c.isthing) for c in self.categories]:
            raise PanopticEvalError("merge: the two accumulators have different categories")
        self._extra.merge(other._extra)
        self._stats += other._stats
        if self.keep_per_image:
            if not other.keep_per_image and other.num_images:
                raise PanopticEvalError("merge: the other accumulator kept no per-image statistics")
            self._image_stats.extend(other._image_stats)
            self._image_ids.extend(other._image_ids)
        self.num_images += other.num_images
        return self

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """Plain, picklable state (for checkpoints or gathering)."""
        return {
            "categories": [(c.id, c.name, c.isthing) for c in self.categories],
            "stats": self._stats.copy(),
            "num_images": self.num_images,
            "image_stats": [s.copy() for s in self._image_stats],
            "image_ids": list(self._image_ids),
            "extra_metrics": self._extra.state_dict() if self.metrics != ("pq",) else None,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if [next(iter(c)) for c in state["categories"]] != [c.id for c in self.categories]:
            raise PanopticEvalError("load_state_dict: the state was saved with other categories")
        self._stats = np.asarray(state["stats"], dtype=np.float64).copy()
        self.num_images = int(state["num_images"])
        self._image_stats = [np.asarray(s, dtype=np.float64) for s in state["image_stats"]]
        self._image_ids = list(state["image_ids"])
        if self.metrics != ("pq",):
            self._extra.load_state_dict(state.get("extra_metrics"))

    @property
    def stats(self) -> np.ndarray:
        """float64[6, C]: summed IoU, TP, FP, FN, PQ-dagger IoU, PQ-dagger GT count per category."""
        return self._stats

    def _global_stats(self) -> np.ndarray:
        dist = _initialised_dist() if self.sync_dist else None
        if dist is None:
            return self._stats
        import torch

        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
        tensor = torch.from_numpy(self._stats.copy()).to(device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor.cpu().numpy()

    def _global_images(self) -> tuple[np.ndarray, list]:
        if not self.keep_per_image:
            raise PanopticEvalError("per-image results need PanopticQuality(..., keep_per_image=True)")
        stats, ids = list(self._image_stats), list(self._image_ids)
        dist = _initialised_dist() if self.sync_dist else None
        if dist is not None:
            gathered: list = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, (stats, ids))
            stats = [s for part in gathered for s in part[0]]
            ids = [i for part in gathered for i in part[1]]
        array = np.stack(stats) if stats else np.zeros((0, N_STATS, len(self.categories)))
        return array, ids

    # ------------------------------------------------------------------ results
    def compute(self) -> dict:
        """``{"All"|"Things"|"Stuff": {"pq","sq","rq","n"}, "per_class": {cat_id: {"pq","sq","rq"}}}``.

        With ``"miou"`` in the metrics also ``"mIoU"`` and ``"per_class_iou"`` ({cat_id: IoU});
        with ``"ap"`` also ``"AP"``, ``"AP50"``, ``"AP75"``; without ``"pq"`` only those. Fractions
        in 0..1; None where the value is undefined (no GT pixels / no GT instance).
        """
        out = summarize(self._global_stats(), self.categories) if "pq" in self.metrics else {}
        if self.metrics != ("pq",):
            out.update(self._extra.compute(_initialised_dist() if self.sync_dist else None))
        return out

    def compute_pq_dagger(self) -> dict:
        """PQ-dagger; see :func:`panoptic_eval.metrics.summarize_pq_dagger`."""
        return summarize_pq_dagger(self._global_stats(), self.categories)

    def per_image(self) -> list[dict]:
        """Per-image PQ, worst first; needs ``keep_per_image=True``."""
        stats, ids = self._global_images()
        return per_image_pq(stats, ids, self.categories)

    def bootstrap(self, samples: int = 1000, confidence: float = 0.95, seed: int = 0) -> dict:
        """Bootstrap confidence intervals over images; needs ``keep_per_image=True``."""
        stats, _ = self._global_images()
        return bootstrap_ci(stats, self.categories, samples=samples, confidence=confidence, seed=seed)


def _with_scores(segs: Segments, scores: Mapping[int, float], shift: int, *, where: str) -> Segments:
    """``segs`` with the scores of their labels (ids minus ``shift``); NaN where none is given."""
    if not isinstance(scores, Mapping):
        raise PanopticEvalError(f"{where}: pred_scores must map labels to scores, got {type(scores).__name__}")
    values = np.full(len(segs.ids), np.nan)
    for k, label in enumerate((segs.ids - shift).tolist()):
        if label in scores:
            value = scores[label]
            number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
            if not number or not np.isfinite(value):
                raise PanopticEvalError(f"{where}: score of label {label} must be a finite number, got {value!r}")
            values[k] = float(value)
    return dataclasses.replace(segs, score=None if np.isnan(values).all() else values)


def _initialised_dist():
    # A process group exists only if torch was imported already: never import torch here.
    if sys.modules.get("torch") is None:
        return None
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist
    return None


def _signed_torch(ids: Any, *, name: str) -> Any:
    """torch uint16 / uint32 / uint64 maps as int64 (torch has no min, max or unique for them).

    numpy unsigned maps are counted as they are. A torch uint64 value >= 2**63 cannot be an id
    (segment ids are int64): refused, naming the map.
    """
    if not is_torch_tensor(ids):
        return ids
    import torch

    if ids.dtype in (torch.uint16, torch.uint32):
        return ids.to(torch.int64)
    if ids.dtype == torch.uint64:
        signed = ids.view(torch.int64)
        if signed.numel() and bool((signed < 0).any()):
            raise PanopticEvalError(f"{name}: uint64 values >= 2**63 are not valid segment ids (ids are int64)")
        return signed
    return ids


def _shifted_values(labels: Any, shift: int, void_label: int, *, name: str):
    """Shift a label map so that every value is >= 0; return (map, distinct values, counts)."""
    if is_torch_tensor(labels):
        import torch

        if labels.numel() == 0:
            return labels, np.zeros(0, np.int64), np.zeros(0, np.int64)
        lo, hi = (int(v) for v in torch.stack([labels.min().long(), labels.max().long()]).tolist())
        if lo < 0 and bool(((labels < 0) & (labels != void_label)).any()):
            raise PanopticEvalError(f"{name}: negative labels other than void_label {void_label}")
        shifted = labels.long() + shift if shift else labels
        if hi + shift < TABLE_LIMIT:
            counts = torch.bincount(shifted.reshape(-1).long(), minlength=1).cpu().numpy()
            values = np.flatnonzero(counts)
            return shifted, values.astype(np.int64), counts[values].astype(np.int64)
        values_t, counts_t = torch.unique(shifted, return_counts=True)
        return shifted, values_t.cpu().numpy().astype(np.int64), counts_t.cpu().numpy().astype(np.int64)
    if labels.size == 0:
        return labels, np.zeros(0, np.int64), np.zeros(0, np.int64)
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 and ((labels < 0) & (labels != void_label)).any():
        raise PanopticEvalError(f"{name}: negative labels other than void_label {void_label}")
    shifted = labels.astype(np.int64) + shift if shift else labels
    if hi + shift < TABLE_LIMIT:
        counts = np.bincount(shifted.reshape(-1))
        values = np.flatnonzero(counts)
        return shifted, values.astype(np.int64), counts[values].astype(np.int64)
    values, counts = np.unique(shifted, return_counts=True)
    return shifted, values.astype(np.int64), counts.astype(np.int64)
