"""Writing tiny hand-made COCO panoptic sets for rule and error tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from panoptic_eval import write_id_png

CATS = [
    {"id": 1, "name": "person", "isthing": 1},
    {"id": 2, "name": "car", "isthing": 1},
    {"id": 10, "name": "sky", "isthing": 0},
    {"id": 11, "name": "road", "isthing": 0},
]


def gt_seg(seg_id, cat, area, iscrowd=0):
    return {"id": seg_id, "category_id": cat, "area": area, "iscrowd": iscrowd, "bbox": [0, 0, 1, 1]}


def write_pair(root: Path, images, categories=CATS) -> dict[str, Path]:
    """images: list of (gt_ids, gt_segments, pred_ids, pred_segments)."""
    root = Path(root)
    (root / "gt").mkdir(parents=True, exist_ok=True)
    (root / "pred").mkdir(parents=True, exist_ok=True)
    gt_anns, pred_anns = [], []
    for i, (gt_ids, gt_segs, pred_ids, pred_segs) in enumerate(images):
        name = f"{i}.png"
        write_id_png(root / "gt" / name, np.asarray(gt_ids))
        write_id_png(root / "pred" / name, np.asarray(pred_ids))
        gt_anns.append({"image_id": i, "file_name": name, "segments_info": gt_segs})
        pred_anns.append({"image_id": i, "file_name": name, "segments_info": pred_segs})
    (root / "gt.json").write_text(json.dumps({"annotations": gt_anns, "categories": categories}))
    (root / "pred.json").write_text(json.dumps({"annotations": pred_anns}))
    return {"gt_json": root / "gt.json", "pred_json": root / "pred.json",
            "gt_folder": root / "gt", "pred_folder": root / "pred"}
