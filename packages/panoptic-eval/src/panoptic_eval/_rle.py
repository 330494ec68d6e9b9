"""COCO run-length encodings (RLE) of chosen segments of an id map, without one mask per segment.

A COCO RLE lists the lengths of alternating runs of 0s and 1s of a binary mask read column by
column (Fortran order), starting with a run of 0s (possibly of length 0); pycocotools'
``mask.encode`` writes exactly that, ending with the last run of the mask. Here the id map is read
column by column once, cut into runs of equal values (one comparison per pixel, on the map's
device for torch tensors), and every wanted segment's RLE is assembled from its runs: the
per-segment work touches runs, never pixels. The counts are the same numbers ``mask.encode``
counts on ``ids == segment_id``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._confusion import is_torch_tensor


def column_runs(maps: Sequence[Any], id_mask: int | None = None) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Runs of pixels, read column by column, over which none of the maps changes.

    A run starts at the top of every column and wherever a pixel of any map differs from the
    one above it. Those comparisons run on the row-major maps (no transposed copy); only the
    run starts are sorted into column-major order. Several maps share one pass.

    Args:
        maps: id maps of one shape (ndarray or Tensor[H, W], integer; torch tensors are
            compared on their device).
        id_mask: if given, the id of a pixel is ``value & id_mask`` (packed PNG maps).

    Returns:
        (starts, ends, values): int64[R] arrays and one int64[R] per map; run r covers the
        column-major positions ``starts[r] <= i < ends[r]`` and holds id ``values[m][r]`` in map
        m. Consecutive runs may hold the same id in a map (at column tops, where another map
        changes, or where only masked-off bits changed).
    """
    height, width = (int(v) for v in maps[0].shape)
    if height * width == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, [empty for _ in maps]
    if is_torch_tensor(maps[0]):
        import torch

        start = torch.ones((height, width), dtype=torch.bool, device=maps[0].device)
        for ids in maps:
            start[1:] |= ids[1:] != ids[:-1]
        flat_t = torch.nonzero(start.reshape(-1)).reshape(-1)
        values = [ids.reshape(-1)[flat_t].long().cpu().numpy() for ids in maps]
        flat = flat_t.cpu().numpy()
    else:
        maps = [np.asarray(ids) for ids in maps]
        start = np.empty((height, width), dtype=bool)
        start[0] = True
        np.not_equal(maps[0][1:], maps[0][:-1], out=start[1:])
        for ids in maps[1:]:
            start[1:] |= ids[1:] != ids[:-1]
        flat = np.flatnonzero(start)
        values = [ids.reshape(-1)[flat].astype(np.int64) for ids in maps]
    ys, xs = np.divmod(flat, width)
    # Row-major order is sorted by (y, x); a stable sort on x gives (x, y), column-major order
    # (a radix sort when x fits in 16 bits).
    order = np.argsort(xs.astype(np.uint16) if width <= 1 << 16 else xs, kind="stable")
    starts = xs[order].astype(np.int64) * height + ys[order]
    values = [v[order] for v in values]
    if id_mask is not None:
        for v in values:
            v &= id_mask
    ends = np.empty_like(starts)
    ends[:-1] = starts[1:]
    ends[-1] = height * width
    return starts, ends, values


def segment_rles(
    starts: np.ndarray,
    ends: np.ndarray,
    values: np.ndarray,
    seg_ids: np.ndarray,
    wanted: np.ndarray,
    n_pixels: int,
) -> dict[int, np.ndarray]:
    """Uncompressed COCO RLE counts of the wanted segments.

    Args:
        starts, ends, values: runs of the map (:func:`column_runs`).
        seg_ids (int64[S]): the listed segment ids.
        wanted (bool[S]): which segments to encode.
        n_pixels: H * W.

    Returns:
        ``{segment index: uint32 counts}`` for every wanted segment (an absent segment gets
        ``[n_pixels]``, the RLE of an empty mask).
    """
    wanted_idx = np.flatnonzero(wanted)
    out = {int(k): np.array([n_pixels], dtype=np.uint32) for k in wanted_idx}
    if not len(wanted_idx) or not len(values):
        return out
    wanted_ids = seg_ids[wanted_idx]
    order = np.argsort(wanted_ids, kind="stable")
    sorted_ids = wanted_ids[order]
    pos = np.minimum(np.searchsorted(sorted_ids, values), len(sorted_ids) - 1)
    keep = sorted_ids[pos] == values
    seg = wanted_idx[order[pos[keep]]]
    s, e = starts[keep], ends[keep]
    # Stable: runs of one segment stay in column-major order (a radix sort for 16-bit indices).
    by_seg = np.argsort(seg.astype(np.uint16) if len(seg_ids) <= 1 << 16 else seg, kind="stable")
    seg, s, e = seg[by_seg], s[by_seg], e[by_seg]
    # Merge runs of one segment that touch (split only by masked-off bits).
    first = np.ones(len(seg), dtype=bool)
    first[1:] = (seg[1:] != seg[:-1]) | (s[1:] != e[:-1])
    last = np.ones(len(seg), dtype=bool)
    last[:-1] = first[1:]
    seg, s, e = seg[first], s[first], e[last]
    new_seg = np.ones(len(seg), dtype=bool)
    new_seg[1:] = seg[1:] != seg[:-1]
    prev_end = np.empty_like(e)
    prev_end[0] = 0
    prev_end[1:] = e[:-1]
    prev_end[new_seg] = 0
    pairs = np.empty(2 * len(seg), dtype=np.uint32)
    pairs[0::2] = s - prev_end
    pairs[1::2] = e - s
    bounds = [*np.flatnonzero(new_seg).tolist(), len(seg)]
    for a, b in itertools.pairwise(bounds):
        tail = n_pixels - int(e[b - 1])
        counts = pairs[2 * a : 2 * b]
        out[int(seg[a])] = np.append(counts, np.uint32(tail)) if tail else counts.copy()
    return out
