"""What a model predicts for one image."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from panoptic_core.data import lookup_segments, segment_moments
from panoptic_eval import write_id_png

__all__ = ["PanopticResult"]


@dataclass
class PanopticResult:
    """The panoptic prediction of one image, at its original size.

    Attributes:
        ids (Tensor[H, W] int64): segment id per pixel, 1..N; 0 = VOID (no prediction).
        segments_info: one dict per segment with ``id``, ``category_id`` (the dataset's id),
            ``isthing`` (bool) and ``score`` (the method's confidence), in id order. This is COCO's
            ``segments_info``, so ``PanopticQuality.update(gt_ids, gt_segments, r.ids,
            r.segments_info)`` scores it without writing a PNG.
        semantic (Tensor[H, W] int64, optional): the semantic prediction (contiguous class
            index per pixel) when the method makes one, for semantic-segmentation metrics.
    """

    ids: torch.Tensor
    segments_info: list[dict[str, Any]]
    semantic: torch.Tensor | None = field(default=None, repr=False)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.ids.shape[-2]), int(self.ids.shape[-1])

    @classmethod
    def from_label_map(
        cls,
        labels: torch.Tensor,
        category_ids: Sequence[int],
        thing_classes: Sequence[int],
        label_divisor: int,
        void_label: int = -1,
        scores: dict[int, float] | None = None,
        unique: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> PanopticResult:
        """Build a result from a ``class * label_divisor + instance`` map (Panoptic-DeepLab's output).

        Args:
            labels (Tensor[H, W] integer): encoded map with contiguous class indices.
            category_ids: dataset category id of each contiguous class.
            thing_classes: contiguous indices of thing classes.
            label_divisor: the encoding's divisor.
            void_label: the value of unpredicted pixels.
            scores: optional score per encoded label (default 1.0).
            unique: ``torch.unique(labels, sorted=True, return_inverse=True)`` where the caller
                has it already (one sort of the map instead of two).

        Segment ids are 1..N in increasing label order.
        """
        values, inverse = unique if unique is not None else torch.unique(labels, sorted=True, return_inverse=True)
        keep = values != void_label
        # new id of each distinct value: 0 for void, 1..N for the others in order
        new_ids = torch.cumsum(keep.long(), 0) * keep
        ids = new_ids[inverse].reshape(labels.shape)
        things = set(int(t) for t in thing_classes)
        info = []
        for k, value in enumerate(values[keep].tolist()):
            cls_index = value // label_divisor
            if not 0 <= cls_index < len(category_ids):
                raise ValueError(f"label {value} encodes class {cls_index}, outside 0..{len(category_ids) - 1}")
            info.append(
                {
                    "id": k + 1,
                    "category_id": int(category_ids[cls_index]),
                    "isthing": cls_index in things,
                    "score": float(scores.get(value, 1.0)) if scores else 1.0,
                }
            )
        return cls(ids, info)

    def to(self, device: torch.device | str) -> PanopticResult:
        semantic = None if self.semantic is None else self.semantic.to(device)
        return PanopticResult(self.ids.to(device), [dict(s) for s in self.segments_info], semantic)

    def to_coco(self, image_id: Any, file_name: str) -> dict[str, Any]:
        """The COCO panoptic annotation of this prediction (write ``ids`` as ``file_name`` with :meth:`write_png`).

        ``segments_info`` entries get ``area`` and ``bbox`` (x, y, w, h) measured on ``ids``,
        ``iscrowd`` 0, and keep ``score`` and ``isthing``.
        """
        seg_ids = [s["id"] for s in self.segments_info]
        m = segment_moments(lookup_segments(self.ids.cpu(), seg_ids), len(seg_ids))
        segments = []
        for seg, (area, bbox) in zip(self.segments_info, m.areas_and_boxes(), strict=True):
            segments.append({**seg, "iscrowd": 0, "area": int(area), "bbox": list(bbox)})
        return {"image_id": image_id, "file_name": file_name, "segments_info": segments}

    def write_png(self, path: str | os.PathLike) -> None:
        """Write ``ids`` as a COCO panoptic RGB PNG (atomically)."""
        write_id_png(path, self.ids.cpu().numpy())

    def to_label_divisor(self, label_divisor: int, void_label: int = -1) -> torch.Tensor:
        """Tensor[H, W] int64: ``category_id * label_divisor + instance`` per pixel, ``void_label`` on VOID.

        Thing segments of a category are numbered 1, 2, ... in id order; stuff gets instance 0.
        """
        n = len(self.segments_info)
        table = torch.full((n + 1,), void_label, dtype=torch.int64)
        counts: dict[int, int] = {}
        seg_ids = [s["id"] for s in self.segments_info]
        for k, seg in enumerate(self.segments_info):
            instance = 0
            if seg["isthing"]:
                counts[seg["category_id"]] = instance = counts.get(seg["category_id"], 0) + 1
            if instance >= label_divisor:
                raise ValueError(f"label_divisor {label_divisor} is too small for {instance} instances")
            table[k] = seg["category_id"] * label_divisor + instance
        index = lookup_segments(self.ids, seg_ids)
        return table.to(self.ids.device)[torch.where(index < 0, n, index)]
