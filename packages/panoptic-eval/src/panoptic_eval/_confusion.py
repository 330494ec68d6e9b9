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
after each; ids too large for a table fall back to a sort (``unique``). The numpy path and the
torch path (any device; only the small matrix leaves the device) compute the same counts.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from .errors import PanopticEvalError

# Ids below this use the lookup table (64 MiB of int32 at most); larger ids are sorted.
TABLE_LIMIT = 1 << 24
# Run-length step only when it shrinks the work at least this much.
MIN_MEAN_RUN = 4
UNLISTED, VOID, FIRST_SEGMENT = 0, 1, 2


class _NumpyTables(threading.local):
    table: np.ndarray | None = None


_numpy_tables = _NumpyTables()


def _table_slots(seg_ids: np.ndarray, void_id: int | None, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """The (ids, slot values) to write into a table; listed ids override the void id."""
    ids = [seg_ids]
    slots = [(np.arange(len(seg_ids), dtype=np.int64) + FIRST_SEGMENT) * scale]
    if void_id is not None:
        ids.insert(0, np.array([void_id], dtype=np.int64))
        slots.insert(0, np.array([VOID * scale], dtype=np.int64))
    return np.concatenate(ids), np.concatenate(slots)


def _slot_map_numpy(ids: np.ndarray, seg_ids: np.ndarray, void_id: int | None, scale: int, max_id: int) -> np.ndarray:
    """Per-pixel slot (times ``scale``) of a flat id map."""
    keys, values = _table_slots(seg_ids, void_id, scale)
    if max_id < TABLE_LIMIT:
        table = _numpy_tables.table
        if table is None or len(table) <= max_id:
            # np.zeros is calloc: untouched pages of a big table cost nothing.
            table = _numpy_tables.table = np.zeros(max(max_id + 1, 1 << 16), dtype=np.int32)
        inside = (keys >= 0) & (keys <= max_id)
        keys, values = keys[inside], values[inside]
        table[keys] = values
        try:
            return table[ids]
        finally:
            table[keys] = 0
    uniq, inverse = np.unique(ids, return_inverse=True)
    lut = dict(zip(keys.tolist(), values.tolist()))
    uniq_slots = np.array([lut.get(u, UNLISTED) for u in uniq.tolist()], dtype=np.int64)
    return uniq_slots[inverse.reshape(-1)]


# Pixels per block of the run-length step: its comparison results stay in the CPU cache.
RUN_BLOCK = 1 << 17


class _RunBuffers(threading.local):
    change: np.ndarray | None = None
    other: np.ndarray | None = None


_run_buffers = _RunBuffers()


def _runs_numpy(gt_flat: np.ndarray, pred_flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Starts of the runs where neither flat map changes, and both maps' values there.

    Block by block, so that the two comparisons, their union and the gather of the values
    touch cached memory instead of image-sized temporaries. None when the mean run is
    shorter than MIN_MEAN_RUN pixels (then the caller counts pixels).
    """
    n = gt_flat.size
    bufs = _run_buffers
    if bufs.change is None:
        bufs.change, bufs.other = np.empty(RUN_BLOCK, dtype=bool), np.empty(RUN_BLOCK, dtype=bool)
    max_runs = n // MIN_MEAN_RUN
    starts, gt_values, pred_values = [np.zeros(1, dtype=np.intp)], [gt_flat[:1]], [pred_flat[:1]]
    n_runs = 1
    for a in range(0, n - 1, RUN_BLOCK):
        m = min(RUN_BLOCK, n - 1 - a)
        change, other = bufs.change[:m], bufs.other[:m]
        np.not_equal(gt_flat[a + 1 : a + 1 + m], gt_flat[a : a + m], out=change)
        np.not_equal(pred_flat[a + 1 : a + 1 + m], pred_flat[a : a + m], out=other)
        change |= other
        block = np.flatnonzero(change)
        block += a + 1
        n_runs += len(block)
        if n_runs > max_runs:
            return None
        starts.append(block)
        gt_values.append(gt_flat[block])  # still cached
        pred_values.append(pred_flat[block])
    return np.concatenate(starts), np.concatenate(gt_values), np.concatenate(pred_values)


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
    lengths = None
    runs = _runs_numpy(gt_flat, pred_flat) if gt_flat.size > 1 else None
    if runs is not None:
        starts, gt_flat, pred_flat = runs
        # Float64 run lengths: what bincount's weights take, without a conversion copy.
        lengths = np.empty(len(starts), dtype=np.float64)
        np.subtract(starts[1:], starts[:-1], out=lengths[:-1], casting="unsafe")
        lengths[-1] = gt_ids.size - starts[-1]
    if id_mask is not None:
        gt_flat, pred_flat = gt_flat & id_mask, pred_flat & id_mask
    gt_max = int(gt_flat.max()) if gt_flat.size else 0
    pred_max = int(pred_flat.max()) if pred_flat.size else 0
    key = _slot_map_numpy(gt_flat, gt_seg_ids, void_id, n_cols, gt_max)
    key += _slot_map_numpy(pred_flat, pred_seg_ids, void_id, 1, pred_max)
    counts = np.bincount(key, weights=lengths, minlength=n_rows * n_cols)
    return counts.astype(np.int64).reshape(n_rows, n_cols)


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
