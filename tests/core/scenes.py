"""PanopticTargets for the target-generator tests: hand-made id maps and synthetic scenes."""

from __future__ import annotations

import numpy as np
import torch

from panoptic_core.data import Categories, PanopticTarget, Segment, make_synthetic_image, segment_stats
from panoptic_core.data.synthetic import synthetic_categories

CATS = Categories.from_list(synthetic_categories())  # things 1, 2, 3, 5; stuff 92, 95, 110, 150


def make_target(ids: np.ndarray, cats: dict[int, int], crowd=(), extra=()) -> PanopticTarget:
    """An id map with segment -> category id; segments in id order, then ``extra``: segments listed
    in the annotation without pixels (cropped away)."""
    t_ids = torch.from_numpy(ids.astype(np.int64))
    present = sorted(int(i) for i in np.unique(ids) if i)
    segs = []
    for i, (area, bbox) in zip(present, segment_stats(t_ids, present), strict=True):
        k = CATS.class_index(cats[i])
        segs.append(Segment(i, cats[i], k, CATS.isthing[k], i in crowd, area, bbox))
    for i in extra:
        k = CATS.class_index(cats[i])
        segs.append(Segment(i, cats[i], k, CATS.isthing[k], False, 0, (0, 0, 0, 0)))
    return PanopticTarget(t_ids, segs, 0, "scene.png")


def synthetic_target(seed: int, h: int = 96, w: int = 128) -> PanopticTarget:
    """A synthetic scene (``make_synthetic_image``) as a target, its crowd segments kept."""
    _, ids, info = make_synthetic_image(np.random.default_rng(seed), h, w)
    return make_target(ids, {s["id"]: s["category_id"] for s in info}, crowd={s["id"] for s in info if s["iscrowd"]})
