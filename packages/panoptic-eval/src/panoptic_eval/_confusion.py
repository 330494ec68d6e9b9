"""Pixel counting: the confusion matrix between the segments of a GT and a predicted id map.

This is the only per-pixel work of PQ; everything after it runs on a matrix of
(segments + 2) x (segments + 2) counts. Layout of the matrix, rows for GT, columns for
predictions:

- index 0: pixels whose id is neither listed nor the void id ("unlisted");
- index 1: pixels whose id is the void id and not listed;
- index 2 + i: pixels of the i-th listed segment.

Segmentation maps are made of long horizontal runs, so both maps are first cut into runs of
pixels where neither id changes (two comparisons per pixel); everything after that touches one
element per run. Maps with short runs (noise) skip this step. Ids are turned into slots through
a lookup table indexed by id (one gather per element, no sort), reused between calls and reset
after each; listed ids too large for a table fall back to a sort (``unique``). The numpy path
and the torch path (any device; only the small matrix leaves the device) compute the same counts.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from .errors import PanopticEvalError

# Listed ids below this use a lookup table (64 MiB of int32 at most); larger ones are sorted.
TABLE_LIMIT = 1 << 24
# Run-length step only when it shrinks the work at least this much.
MIN_MEAN_RUN = 4
UNLISTED, VOID, FIRST_SEGMENT = 0, 1, 2


class _NumpyTables(threading.local):
    def __init__(self) -> None:
        self.by_side: dict[str, np.ndarray] = {}


_numpy_tables = _NumpyTables()


def _table_slots(seg_ids: np.ndarray, void_id: int | None, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """The (ids, slot values) to write into a table; listed ids override the void id (written after it)."""
    first = 0 if void_id is None else 1
    ids = np.empty(len(seg_ids) + first, dtype=np.int64)
    ids[first:] = seg_ids
    slots = np.arange(FIRST_SEGMENT - first, len(seg_ids) + FIRST_SEGMENT, dtype=np.int64)
    if first:
        ids[0], slots[0] = void_id, VOID
    slots *= scale
    return ids, slots


@contextlib.contextmanager
def _slot_lookup(
    side: str, seg_ids: np.ndarray, void_id: int | None, scale: int, id_mask: int | None, dtype: np.dtype
):
    """Yields a function from id values (a non-negative array of ``dtype``) to their slots times ``scale``.

    The table holds the listed ids and one more entry, which is never written (0, UNLISTED):
    ``take(mode="clip")`` sends every larger id there, so the id map's maximum is never needed.
    """
    keys, values = _table_slots(seg_ids, void_id, scale)
    keep = keys >= 0  # a negative listed id cannot be in a non-negative map
    keys, values = keys[keep], values[keep]
    size = int(keys.max()) + 2 if len(keys) else 1
    if size > TABLE_LIMIT:
        lut = dict(zip(keys.tolist(), values.tolist()))

        def sorted_lookup(ids: np.ndarray) -> np.ndarray:
            uniq, inverse = np.unique(ids if id_mask is None else ids & id_mask, return_inverse=True)
            return np.array([lut.get(u, UNLISTED) for u in uniq.tolist()], dtype=np.int64)[inverse.reshape(-1)]

        yield sorted_lookup
        return
    table = _numpy_tables.by_side.get(side)
    if table is None or len(table) < size:
        # np.zeros is calloc: untouched pages of a big table cost nothing.
        table = _numpy_tables.by_side[side] = np.zeros(max(size, 1 << 16), dtype=np.int32)
    table[keys] = values
    view = table[:size]
    if id_mask is None and dtype != np.uint64:
        lookup = functools.partial(view.take, mode="clip")
    else:

        def lookup(ids: np.ndarray) -> np.ndarray:
            if id_mask is not None:
                ids = ids & id_mask
            if ids.dtype == np.uint64:
                ids = np.minimum(ids, size - 1)  # take() would wrap values >= 2**63 to negative indices
            return view.take(ids, mode="clip")

    try:
        yield lookup
    finally:
        table[keys] = 0


# Pixels per block of the run-length step: a block's maps and comparison results (2.5 MiB for
# uint32 maps) stay in the CPU cache; smaller blocks cost more in per-block call overhead than
# they gain (measured on 1024 x 2048 maps).
RUN_BLOCK = 1 << 18


class _RunBuffers(threading.local):
    change: np.ndarray | None = None
    other: np.ndarray | None = None


_run_buffers = _RunBuffers()


def _run_counts(
    gt_flat: np.ndarray,
    pred_flat: np.ndarray,
    gt_slot: Callable[[np.ndarray], np.ndarray],
    pred_slot: Callable[[np.ndarray], np.ndarray],
    n_keys: int,
) -> np.ndarray | None:
    """Pixel counts per key ``gt_slot(gt id) + pred_slot(pred id)``, summed over the runs where neither map changes.

    Block by block: the two comparisons, their union, the run values, their keys and lengths
    touch cached memory, and no image- or run-sized temporary is allocated (fresh pages of
    those cost page faults on every call). None when the mean run is shorter than
    MIN_MEAN_RUN pixels (then the caller counts pixels).
    """
    n = gt_flat.size
    bufs = _run_buffers
    if bufs.change is None:
        bufs.change, bufs.other = np.empty(RUN_BLOCK, dtype=bool), np.empty(RUN_BLOCK, dtype=bool)
    max_runs = n // MIN_MEAN_RUN
    counts = np.zeros(n_keys, dtype=np.int64)
    # The open run: where it starts and its key; it ends at the next run start.
    run_start = 0
    run_key = int(gt_slot(gt_flat[:1])[0] + pred_slot(pred_flat[:1])[0])
    n_runs = 1
    gt_next, gt_prev, pred_next, pred_prev = gt_flat[1:], gt_flat[:-1], pred_flat[1:], pred_flat[:-1]
    for a in range(0, n - 1, RUN_BLOCK):
        b = min(a + RUN_BLOCK, n - 1)
        gt_block, pred_block = gt_next[a:b], pred_next[a:b]
        change, other = bufs.change[: b - a], bufs.other[: b - a]
        np.not_equal(gt_block, gt_prev[a:b], out=change)
        np.not_equal(pred_block, pred_prev[a:b], out=other)
        change |= other
        starts = change.nonzero()[0]  # run starts, as positions in the block (a + 1 in the map)
        if not len(starts):
            continue
        n_runs += len(starts)
        if n_runs > max_runs:
            return None
        keys = gt_slot(gt_block.take(starts))  # still cached
        keys += pred_slot(pred_block.take(starts))
        # lengths[i]: the run that ends at starts[i] (the open run, then the block's runs).
        lengths = np.empty_like(starts)
        lengths[0] = int(starts[0]) + a + 1 - run_start
        np.subtract(starts[1:], starts[:-1], out=lengths[1:])
        counts[run_key] += lengths[0]
        np.add.at(counts, keys[:-1], lengths[1:])
        run_start, run_key = int(starts[-1]) + a + 1, int(keys[-1])
    counts[run_key] += n - run_start
    return counts


def confusion_numpy(
    gt_ids: np.ndarray,
    gt_seg_ids: np.ndarray,
    pred_ids: np.ndarray,
    pred_seg_ids: np.ndarray,
    void_id: int | None,
    id_mask: int | None = None,
) -> np.ndarray:
    """Counts of (GT slot, prediction slot) pixel pairs.

    Args:
        gt_ids (ndarray[H, W] integer, non-negative): GT id map.
        gt_seg_ids (ndarray[G] int64): the listed GT segment ids.
        pred_ids (ndarray[H, W] integer, non-negative): predicted id map.
        pred_seg_ids (ndarray[P] int64): the listed predicted segment ids.
        void_id: the id that means VOID in both maps (None: no void id).
        id_mask: if given, the id of a pixel is ``value & id_mask`` (maps from
            :func:`~panoptic_eval.formats.read_packed_png`).

    Returns:
        ndarray[G + 2, P + 2] int64 (layout in the module docstring).
    """
    n_cols = len(pred_seg_ids) + FIRST_SEGMENT
    n_rows = len(gt_seg_ids) + FIRST_SEGMENT
    gt_flat, pred_flat = gt_ids.reshape(-1), pred_ids.reshape(-1)
    with (
        _slot_lookup("gt", gt_seg_ids, void_id, n_cols, id_mask, gt_flat.dtype) as gt_slot,
        _slot_lookup("pred", pred_seg_ids, void_id, 1, id_mask, pred_flat.dtype) as pred_slot,
    ):
        counts = _run_counts(gt_flat, pred_flat, gt_slot, pred_slot, n_rows * n_cols) if gt_flat.size > 1 else None
        if counts is None:
            key = gt_slot(gt_flat)
            key += pred_slot(pred_flat)
            counts = np.bincount(key, minlength=n_rows * n_cols).astype(np.int64)
    return counts.reshape(n_rows, n_cols)


class _TorchTables(threading.local):
    def __init__(self) -> None:
        self.by_device: dict[Any, Any] = {}


_torch_tables = _TorchTables()


def _slot_map_torch(ids, seg_ids: np.ndarray, void_id: int | None, scale: int, max_id: int):
    import torch

    keys, values = _table_slots(seg_ids, void_id, scale)
    if max_id < TABLE_LIMIT:
        table = _torch_tables.by_device.get(ids.device)
        if table is None or table.numel() <= max_id:
            table = torch.zeros(max(max_id + 1, 1 << 16), dtype=torch.int32, device=ids.device)
            _torch_tables.by_device[ids.device] = table
        inside = (keys >= 0) & (keys <= max_id)
        keys_t = torch.from_numpy(keys[inside]).to(ids.device)
        table[keys_t] = torch.from_numpy(values[inside].astype(np.int32)).to(ids.device)
        index = ids if ids.dtype in (torch.int32, torch.int64) else ids.to(torch.int32)
        out = torch.index_select(table, 0, index)
        table[keys_t] = 0
        return out
    uniq, inverse = torch.unique(ids, return_inverse=True)
    lut = dict(zip(keys.tolist(), values.tolist()))
    uniq_slots = torch.tensor([lut.get(u, UNLISTED) for u in uniq.tolist()], dtype=torch.int64, device=ids.device)
    return uniq_slots[inverse]


def confusion_torch(gt_ids, gt_seg_ids, pred_ids, pred_seg_ids, void_id):
    """:func:`confusion_numpy` for torch tensors, computed on their device."""
    import torch

    n_cols = len(pred_seg_ids) + FIRST_SEGMENT
    n_rows = len(gt_seg_ids) + FIRST_SEGMENT
    gt_flat, pred_flat = gt_ids.reshape(-1), pred_ids.reshape(-1)
    lengths = None
    if gt_flat.numel() > 1:
        change = (gt_flat[1:] != gt_flat[:-1]) | (pred_flat[1:] != pred_flat[:-1])
        starts = torch.cat([change.new_zeros(1, dtype=torch.int64), torch.nonzero(change).reshape(-1) + 1])
        if starts.numel() * MIN_MEAN_RUN <= gt_flat.numel():
            ends = torch.cat([starts[1:], starts.new_full((1,), gt_flat.numel())])
            lengths = (ends - starts).to(torch.float64)
            gt_flat, pred_flat = gt_flat[starts], pred_flat[starts]
    if gt_flat.numel():
        extrema = torch.stack([gt_flat.max().long(), pred_flat.max().long()]).tolist()
    else:
        extrema = [0, 0]
    key = _slot_map_torch(gt_flat, gt_seg_ids, void_id, n_cols, extrema[0])
    key = key + _slot_map_torch(pred_flat, pred_seg_ids, void_id, 1, extrema[1])
    counts = torch.bincount(key, weights=lengths, minlength=n_rows * n_cols)
    return counts.cpu().numpy().astype(np.int64).reshape(n_rows, n_cols)


def is_torch_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "device") and hasattr(x, "dtype")


def check_id_map(ids: Any, *, name: str, allow_negative: bool = False):
    """Validate a 2-D integer id map (numpy array or torch tensor); return it unchanged."""
    if is_torch_tensor(ids):
        import torch

        if ids.dtype in (torch.bool,) or ids.is_floating_point() or ids.is_complex():
            raise PanopticEvalError(f"{name}: expected an integer id map, got dtype {ids.dtype}")
        if ids.dim() != 2:
            raise PanopticEvalError(f"{name}: expected an id map of shape [H, W], got {tuple(ids.shape)}")
        if not allow_negative and ids.numel() and ids.dtype != torch.uint8 and bool((ids.min() < 0).item()):
            raise PanopticEvalError(f"{name}: segment ids must be non-negative")
        return ids
    arr = np.asarray(ids)
    if not np.issubdtype(arr.dtype, np.integer):
        raise PanopticEvalError(f"{name}: expected an integer id map, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise PanopticEvalError(
            f"{name}: expected an id map of shape [H, W], got {arr.shape} (decode RGB PNGs with rgb2id)"
        )
    if not allow_negative and arr.size and np.issubdtype(arr.dtype, np.signedinteger) and arr.min() < 0:
        raise PanopticEvalError(f"{name}: segment ids must be non-negative")
    return arr


def confusion(gt_ids, gt_seg_ids, pred_ids, pred_seg_ids, void_id, id_mask=None):
    """Dispatch to the numpy or torch counting path (both maps must be of one kind)."""
    if is_torch_tensor(gt_ids) != is_torch_tensor(pred_ids):
        raise PanopticEvalError("gt_ids and pred_ids must both be numpy arrays or both torch tensors")
    if tuple(gt_ids.shape) != tuple(pred_ids.shape):
        raise PanopticEvalError(
            f"prediction id map has shape {tuple(pred_ids.shape)}, GT has {tuple(gt_ids.shape)}"
        )
    if is_torch_tensor(gt_ids):
        if gt_ids.device != pred_ids.device:
            raise PanopticEvalError(f"gt_ids on {gt_ids.device} but pred_ids on {pred_ids.device}")
        return confusion_torch(gt_ids, gt_seg_ids, pred_ids, pred_seg_ids, void_id)
    return confusion_numpy(gt_ids, gt_seg_ids, pred_ids, pred_seg_ids, void_id, id_mask)
