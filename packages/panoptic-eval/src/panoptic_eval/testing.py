"""Random COCO panoptic GT / prediction sets that exercise every PQ rule.

For testing and benchmarking evaluators (ours, or a user's pipeline against ours).

GT: textured stuff regions, overlapping thing instances, VOID patches, several crowd
segments per category, tiny segments, ids equal to category ids, listed-but-absent and
present-but-unlisted GT ids, JSON areas that disagree with the PNG. Predictions: kept,
relabelled, shifted, split, merged, re-categorised and dropped segments, plus false positives
placed on VOID and crowd regions.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .formats import write_id_png

THINGS = [1, 2, 3, 7, 90]
STUFF = [100, 101, 150, 200]


def categories() -> list[dict]:
    return [{"id": c, "name": f"thing{c}", "isthing": 1, "supercategory": "t"} for c in THINGS] + [
        {"id": c, "name": f"stuff{c}", "isthing": 0, "supercategory": "s"} for c in STUFF
    ]


def _blobs(rng: np.random.Generator, h: int, w: int, n: int, cell: int) -> np.ndarray:
    """Irregular regions: a coarse random label grid, upsampled, with jittered boundaries."""
    gh, gw = -(-h // cell), -(-w // cell)
    coarse = rng.integers(0, n, size=(gh, gw))
    full = np.kron(coarse, np.ones((cell, cell), dtype=coarse.dtype))[:h, :w]
    jitter = rng.random((h, w)) < 0.08
    shifted = np.roll(full, rng.integers(-2, 3, size=2), axis=(0, 1))
    return np.where(jitter, shifted, full)


def _new_id(rng: np.random.Generator, used: set[int], small: int | None = None) -> int:
    if small is not None and small not in used and small > 0:
        used.add(small)
        return small
    while True:
        v = int(rng.integers(1, 1 << 24))
        if v not in used:
            used.add(v)
            return v


def make_gt(rng: np.random.Generator, h: int, w: int, max_things: int = 8):
    """One GT image: (id map uint32[H, W], segments_info list) with up to ``max_things`` things."""
    ids = np.zeros((h, w), dtype=np.uint32)
    used: set[int] = set()
    segs: dict[int, dict] = {}
    stuff_layout = _blobs(rng, h, w, len(STUFF) + 1, cell=int(rng.integers(4, 12)))
    for k, cat in enumerate(STUFF):
        mask = stuff_layout == k
        if mask.any() and rng.random() < 0.9:
            sid = _new_id(rng, used, small=cat if rng.random() < 0.3 else None)
            ids[mask] = sid
            segs[sid] = {"id": sid, "category_id": cat, "iscrowd": 0}
    # stuff_layout == len(STUFF) stays VOID; add VOID patches too
    for _ in range(int(rng.integers(0, 3))):
        y, x = rng.integers(0, h), rng.integers(0, w)
        ids[y : y + int(rng.integers(2, h // 3)), x : x + int(rng.integers(2, w // 3))] = 0
    for _ in range(int(rng.integers(1, max_things + 1))):
        cat = int(rng.choice(THINGS))
        y0, x0 = int(rng.integers(0, h)), int(rng.integers(0, w))
        size = int(rng.choice([1, 2, 4, 8, 16, 32]))
        hh, ww = max(1, size + int(rng.integers(-1, 3))), max(1, size + int(rng.integers(-1, 3)))
        yy, xx = np.ogrid[:h, :w]
        if rng.random() < 0.5:
            mask = (yy >= y0) & (yy < y0 + hh) & (xx >= x0) & (xx < x0 + ww)
        else:
            mask = ((yy - y0) / max(hh / 2, 0.5)) ** 2 + ((xx - x0) / max(ww / 2, 0.5)) ** 2 <= 1
        sid = _new_id(rng, used, small=cat if rng.random() < 0.2 else None)
        ids[mask] = sid
        segs[sid] = {"id": sid, "category_id": cat, "iscrowd": int(rng.random() < 0.2)}
    present, counts = np.unique(ids, return_counts=True)
    area = dict(zip(present.tolist(), counts.tolist()))
    info = []
    for sid, seg in segs.items():
        if sid not in area:
            continue  # fully occluded
        seg["area"] = area[sid]
        if rng.random() < 0.05:
            seg["area"] = max(1, seg["area"] + int(rng.integers(-3, 4)))  # JSON area wins over the PNG
        ys, xs = np.nonzero(ids == sid)
        seg["bbox"] = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
        info.append(seg)
    if rng.random() < 0.15 and info:  # a present id left out of segments_info: ignored
        info.pop(int(rng.integers(0, len(info))))
    if rng.random() < 0.1:  # a listed segment absent from the PNG: a false negative
        sid = _new_id(rng, used)
        info.append({"id": sid, "category_id": int(rng.choice(THINGS)), "iscrowd": 0, "area": 5, "bbox": [0, 0, 1, 1]})
    order = rng.permutation(len(info))
    return ids, [info[i] for i in order]


def make_pred(rng: np.random.Generator, gt_ids: np.ndarray, gt_info: list[dict], scores: bool = False):
    """A prediction derived from a GT image by random edits.

    ``scores``: give every segment a ``score`` in [0, 1) (for mask AP), drawn after the map is made
    so that the map does not depend on it.
    """
    h, w = gt_ids.shape
    cat_of = {s["id"]: s["category_id"] for s in gt_info}
    labels = np.zeros((h, w), dtype=np.int64)  # temporary label space
    label_cat: dict[int, int] = {}
    next_label = 1
    for sid in np.unique(gt_ids).tolist():
        if sid == 0 or sid not in cat_of:
            continue
        mask = gt_ids == sid
        cat = cat_of[sid]
        action = rng.choice(["keep", "keep", "shift", "split", "recat", "drop", "erode"])
        if action == "drop":
            continue
        if action == "shift":
            mask = np.roll(mask, tuple(rng.integers(-3, 4, size=2)), axis=(0, 1))
        if action == "erode":
            mask = mask & np.roll(mask, 1, axis=0) & np.roll(mask, 1, axis=1)
        if action == "recat":
            cat = int(rng.choice(THINGS + STUFF))
        if action == "split":
            _ys, xs = np.nonzero(mask)
            cut = np.zeros_like(mask)
            if len(xs):
                cut[:, : int(np.median(xs))] = True
            for part in (mask & cut, mask & ~cut):
                if part.any():
                    labels[part] = next_label
                    label_cat[next_label] = cat
                    next_label += 1
            continue
        if mask.any():
            labels[mask] = next_label
            label_cat[next_label] = cat
            next_label += 1
    # merge: two labels of one category become one
    by_cat: dict[int, list[int]] = {}
    for lab, cat in label_cat.items():
        by_cat.setdefault(cat, []).append(lab)
    for labs in by_cat.values():
        if len(labs) >= 2 and rng.random() < 0.3:
            labels[labels == labs[1]] = labs[0]
            del label_cat[labs[1]]
    # false positives on VOID / crowd / anywhere
    for _ in range(int(rng.integers(0, 4))):
        y, x = int(rng.integers(0, h)), int(rng.integers(0, w))
        hh, ww = int(rng.integers(1, 10)), int(rng.integers(1, 10))
        labels[y : y + hh, x : x + ww] = next_label
        label_cat[next_label] = int(rng.choice(THINGS + STUFF))
        next_label += 1
    crowd = [s for s in gt_info if s["iscrowd"]]
    if crowd and rng.random() < 0.7:
        seg = crowd[int(rng.integers(0, len(crowd)))]
        mask = gt_ids == seg["id"]
        if mask.any():
            labels[mask] = next_label
            label_cat[next_label] = seg["category_id"]
            next_label += 1
    if rng.random() < 0.3:  # a prediction mostly on VOID
        void = gt_ids == 0
        if void.any():
            labels[void & (rng.random((h, w)) < 0.8)] = next_label
            label_cat[next_label] = int(rng.choice(THINGS))
            next_label += 1
    # relabel with random 24-bit ids (sometimes equal to the category id)
    used: set[int] = set()
    out = np.zeros((h, w), dtype=np.uint32)
    info = []
    for lab in np.unique(labels).tolist():
        if lab == 0:
            continue
        cat = label_cat[lab]
        pid = _new_id(rng, used, small=cat if rng.random() < 0.2 else None)
        out[labels == lab] = pid
        info.append({"id": pid, "category_id": cat})
    order = rng.permutation(len(info))
    if scores:
        for seg, score in zip(info, rng.random(len(info))):
            seg["score"] = float(score)
    return out, [info[i] for i in order]


def upscale_pair(gt_ids: np.ndarray, gt_info: list[dict], pred_ids: np.ndarray, factor: int):
    """Enlarge a GT / prediction pair by pixel repetition; GT areas and bboxes are scaled in place."""
    grow = np.ones((factor, factor), dtype=np.uint32)
    for seg in gt_info:
        seg["area"] *= factor * factor
        seg["bbox"] = [v * factor for v in seg["bbox"]]
    return np.kron(gt_ids, grow), np.kron(pred_ids, grow)


def write_set(
    root: str | Path, seed: int, n_images: int, h: int = 40, w: int = 56, upscale: int = 1, max_things: int = 8,
    scores: bool = False,
) -> dict[str, Path]:
    """Write a GT and a prediction set under ``root``; returns the JSON and folder paths.

    Every third image is transposed (``w`` x ``h``) so that sizes vary. ``upscale`` > 1 enlarges
    every map by pixel repetition after generation (areas scale by ``upscale**2``), which gives
    COCO-like segment sizes at COCO-like resolutions quickly. ``scores``: predictions carry a
    ``score`` (for mask AP).
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    paths = {
        "gt_json": root / "gt.json", "gt_folder": root / "gt",
        "pred_json": root / "pred.json", "pred_folder": root / "pred",
    }
    paths["gt_folder"].mkdir(parents=True, exist_ok=True)
    paths["pred_folder"].mkdir(parents=True, exist_ok=True)
    gt_anns, pred_anns, images = [], [], []
    for i in range(n_images):
        gh, gw = (h, w) if i % 3 else (w, h)
        gt_ids, gt_info = make_gt(rng, gh, gw, max_things)
        pred_ids, pred_info = make_pred(rng, gt_ids, gt_info, scores=scores)
        if upscale > 1:
            gt_ids, pred_ids = upscale_pair(gt_ids, gt_info, pred_ids, upscale)
            gh, gw = gh * upscale, gw * upscale
        name = f"{i:06d}.png"
        write_id_png(paths["gt_folder"] / name, gt_ids)
        write_id_png(paths["pred_folder"] / name, pred_ids)
        images.append({"id": i, "file_name": f"{i:06d}.jpg", "height": gh, "width": gw})
        gt_anns.append({"image_id": i, "file_name": name, "segments_info": gt_info})
        pred_anns.append({"image_id": i, "file_name": name, "segments_info": pred_info})
    cats = categories()
    paths["gt_json"].write_text(json.dumps({"images": images, "annotations": gt_anns, "categories": cats}))
    paths["pred_json"].write_text(json.dumps({"annotations": pred_anns, "categories": cats}))
    return paths
