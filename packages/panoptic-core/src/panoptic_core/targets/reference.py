"""Plain per-segment references of target generators, for tests and benchmarks."""

from __future__ import annotations

import numpy as np

from ..data.structures import PanopticTarget

__all__ = ["detectron2_deeplab_targets"]


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
