"""Plain per-segment references of target generators, for tests and benchmarks."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data.structures import Categories, PanopticTarget

__all__ = ["detectron2_deeplab_targets", "panoptic_fcn_generate_gt"]


def detectron2_deeplab_targets(
    target: PanopticTarget,
    sigma: float = 8,
    ignore_label: int = 255,
    small_instance_area: int = 4096,
    small_instance_weight: float = 3,
) -> dict[str, np.ndarray]:
    """detectron2's ``PanopticDeepLabTargetGenerator`` (defaults: stuff ignored in the offsets,
    crowd kept in the semantic labels) as it computes the targets: one full-image mask and
    ``np.where`` per segment, centroid by ``np.mean``, Gaussian window pasted per instance.

    :class:`~panoptic_core.targets.PanopticDeepLabTargets` must equal it element for element.

    Returns:
        numpy arrays under the keys of :class:`~panoptic_core.targets.PanopticDeepLabTargets`
        (``semantic``, ``semantic_weights``, ``center``, ``center_weights``, ``offset``,
        ``offset_weights``, ``center_points``), without the leading channel of the 1-channel maps.
    """
    panoptic = target.ids.cpu().numpy()
    h, w = panoptic.shape
    size = int(6 * sigma + 3)
    x = np.arange(0, size, 1, float)
    y = x[:, None]
    g = np.exp(-((x - 3 * sigma - 1) ** 2 + (y - 3 * sigma - 1) ** 2) / (2 * sigma**2))
    semantic = np.full((h, w), ignore_label, np.int64)
    center = np.zeros((h, w), np.float32)
    offset = np.zeros((2, h, w), np.float32)
    yc, xc = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    sem_w = np.ones((h, w), np.float32)
    ctr_w = np.zeros((h, w), np.float32)
    off_w = np.zeros((h, w), np.float32)
    points = []
    for seg in target.segments:
        m = panoptic == seg.id
        semantic[m] = seg.class_index
        if not seg.iscrowd:
            ctr_w[m] = 1
            if seg.isthing:
                off_w[m] = 1
        if seg.isthing:
            idx = np.where(m)
            if len(idx[0]) == 0:
                continue
            if len(idx[0]) < small_instance_area:
                sem_w[m] = small_instance_weight
            cy, cx = np.mean(idx[0]), np.mean(idx[1])
            points.append((cy, cx))
            yy, xx = round(cy), round(cx)  # ties to even, like detectron2's int(round(x))
            ul = int(np.round(xx - 3 * sigma - 1)), int(np.round(yy - 3 * sigma - 1))
            br = int(np.round(xx + 3 * sigma + 2)), int(np.round(yy + 3 * sigma + 2))
            gx0, gx1 = max(0, -ul[0]), min(br[0], w) - ul[0]
            gy0, gy1 = max(0, -ul[1]), min(br[1], h) - ul[1]
            c0, c1 = max(0, ul[0]), min(br[0], w)
            r0, r1 = max(0, ul[1]), min(br[1], h)
            if c1 > c0 and r1 > r0:
                center[r0:r1, c0:c1] = np.maximum(center[r0:r1, c0:c1], g[gy0:gy1, gx0:gx1])
            offset[0][idx] = cy - yc[idx]
            offset[1][idx] = cx - xc[idx]
    return {
        "semantic": semantic,
        "semantic_weights": sem_w,
        "center": center,
        "center_weights": ctr_w,
        "offset": offset,
        "offset_weights": off_w,
        "center_points": np.array(points, np.float64).reshape(-1, 2),
    }


def panoptic_fcn_generate_gt(
    target: PanopticTarget,
    categories: Categories,
    strides: Sequence[int] = (8, 16, 32, 64, 128),
    instance_scales: Sequence[tuple[float, float]] = ((1, 64), (32, 128), (64, 256), (128, 512), (256, 2048)),
    min_overlap: float = 0.7,
    sigma_factor: float = 3.0,
    common_stride: int = 4,
) -> dict[str, object]:
    """Panoptic FCN's ``GenerateGT`` for one (padded) image, computed its way: full-size float
    masks resized with ``F.interpolate``, float32 mass centers, rescaling and CornerNet radii
    over all instances of a level at once, Gaussians drawn one instance after another.

    Instances whose mask vanishes at 1/4 are left out (upstream takes the mean of no pixels, NaN).
    :class:`~panoptic_core.targets.PanopticFCNTargets` must equal it element for element.

    Returns:
        the keys of :class:`~panoptic_core.targets.PanopticFCNTargets`.
    """
    ids = target.ids.cpu()
    height, width = ids.shape
    new_h, new_w = int(height / common_stride + 0.5), int(width / common_stride + 0.5)
    segs = target.segments
    semantic = torch.full((height, width), categories.num_stuff + 1, dtype=torch.int64)  # VOID: a dropped channel
    for s in segs:
        semantic[ids == s.id] = 0 if s.isthing else 1 + categories.stuff_index[s.class_index]
    onehot = F.one_hot(semantic, categories.num_stuff + 2).permute(2, 0, 1)[:-1].float()
    stuff_masks = F.interpolate(onehot[None], size=(new_h, new_w), mode="bilinear", align_corners=False)[0]

    things = [s for s in segs if s.isthing and not s.iscrowd]
    full = torch.stack([ids == s.id for s in things]) if things else torch.zeros(0, height, width, dtype=torch.bool)
    masks = F.interpolate(full.float()[None], size=(new_h, new_w), mode="bilinear", align_corners=False)[0]
    visible = masks.flatten(1).any(1)
    centers = torch.zeros(len(things), 2)
    for n in range(len(things)):
        if visible[n]:
            centers[n] = torch.nonzero(masks[n]).float().mean(0).flip(0)  # (x, y)
    classes = torch.tensor([categories.thing_index[s.class_index] for s in things], dtype=torch.int64)
    boxes = torch.tensor([s.xyxy for s in things], dtype=torch.float32).reshape(-1, 4)
    scale = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).sqrt()

    out: dict[str, object] = {"thing_heatmap": [], "stuff_heatmap": [], "level_instances": [], "level_centers": []}
    for stride, (lo, hi) in zip(strides, instance_scales, strict=True):
        hl, wl = math.ceil(height / stride), math.ceil(width / stride)
        chosen = torch.nonzero((scale >= lo) & (scale <= hi) & visible).flatten()
        center = centers[chosen].clone()
        center[:, 0] *= wl / new_w
        center[:, 1] *= hl / new_h
        center = center.to(torch.int64)
        w = (boxes[chosen, 2] - boxes[chosen, 0]) * (wl / width)
        h = (boxes[chosen, 3] - boxes[chosen, 1]) * (hl / height)
        # CornerNet: the three radii for a box of size (h, w) at IoU min_overlap, smallest wins
        b1, c1 = h + w, w * h * (1 - min_overlap) / (1 + min_overlap)
        b2, c2 = 2 * (h + w), (1 - min_overlap) * w * h
        a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * (h + w), (min_overlap - 1) * w * h
        radii = torch.min(
            (b1 + torch.sqrt(b1**2 - 4 * c1)) / 2,
            torch.min((b2 + torch.sqrt(b2**2 - 4 * 4 * c2)) / 2, (b3 + torch.sqrt(b3**2 - 4 * a3 * c3)) / 2),
        )
        radii = radii.clamp_min(0).to(torch.int32)
        heat = torch.zeros(categories.num_things, hl, wl)
        for (x, y), r, cls in zip(center.tolist(), radii.tolist(), classes[chosen].tolist(), strict=True):
            sigma = (2 * r + 1) / sigma_factor
            yy, xx = np.ogrid[-r : r + 1, -r : r + 1]
            g = np.exp(-(xx * xx + yy * yy) / (2 * sigma * sigma))
            g[g < np.finfo(g.dtype).eps * g.max()] = 0
            x0, x1 = max(x - r, 0), min(x + r + 1, wl)
            y0, y1 = max(y - r, 0), min(y + r + 1, hl)
            if x1 > x0 and y1 > y0:
                patch = torch.tensor(g[y0 - y + r : y1 - y + r, x0 - x + r : x1 - x + r], dtype=torch.float32)
                heat[cls, y0:y1, x0:x1] = torch.max(heat[cls, y0:y1, x0:x1], patch)
        stuff = F.interpolate(stuff_masks[None], size=(hl, wl), mode="bilinear", align_corners=False)[0]
        stuff = stuff.clamp(max=1.0)
        stuff[stuff < 0.5] = 0.0
        out["thing_heatmap"].append(heat)
        out["stuff_heatmap"].append(stuff)
        out["level_instances"].append(chosen)
        out["level_centers"].append(center[:, 1] * wl + center[:, 0])
    out["instance_masks"] = masks
    out["instance_classes"] = classes
    out["stuff_masks"] = stuff_masks
    return out
