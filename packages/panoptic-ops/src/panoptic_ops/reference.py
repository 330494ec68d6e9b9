"""Readable pure-torch references of every panoptic-ops op (slow; for tests and benchmarks).

Each function follows the original it names step by step; where the compiled op pins down a
detail the original leaves to the backend (distance rounding, ties of ``torch.mode``, sort
stability), the reference does the same and says so. ``nms`` here is also the "vectorised
pure-torch greedy NMS" peer of the benchmarks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import torch
import torch.nn.functional as F

from panoptic_ops.box_similarity import box_mask

# ---------------------------------------------------------------------------------------------
# Panoptic-DeepLab (detectron2 projects/Panoptic-DeepLab/panoptic_deeplab/post_processing.py)


def find_instance_center(center_heatmap, threshold=0.1, nms_kernel=3, top_k=None):
    """Tensor[1, H, W] -> Tensor[K, 2] (y, x); ``top_k`` > H*W behaves like None."""
    heatmap = F.threshold(center_heatmap, threshold, -1)
    pad = (nms_kernel - 1) // 2
    pooled = F.max_pool2d(heatmap, kernel_size=nms_kernel, stride=1, padding=pad)
    heatmap = heatmap.clone()
    heatmap[heatmap != pooled] = -1
    heatmap = heatmap.squeeze(0)
    if top_k is None or top_k > heatmap.numel():
        return torch.nonzero(heatmap > 0)
    kth = torch.topk(heatmap.flatten(), top_k).values[-1].clamp(min=0)
    return torch.nonzero(heatmap > kth)


def center_distances(center_points, offsets):
    """Tensor[K, H*W]: sqrt(dy*dy + dx*dx) with every operation rounded in the offsets' dtype."""
    height, width = offsets.shape[1:]
    ys = torch.arange(height, dtype=offsets.dtype, device=offsets.device)
    xs = torch.arange(width, dtype=offsets.dtype, device=offsets.device)
    loc_y = (ys[:, None] + offsets[0]).flatten()
    loc_x = (xs[None, :] + offsets[1]).flatten()
    dy = center_points[:, 0:1].to(offsets.dtype) - loc_y[None]
    dx = center_points[:, 1:2].to(offsets.dtype) - loc_x[None]
    return torch.sqrt(dy * dy + dx * dx)


def group_pixels(center_points, offsets):
    """Tensor[K, 2], Tensor[2, H, W] -> Tensor[1, H, W] in [1, K] (0 everywhere when K = 0)."""
    height, width = offsets.shape[1:]
    if center_points.shape[0] == 0:
        return torch.zeros((1, height, width), dtype=torch.int64, device=offsets.device)
    distance = center_distances(center_points, offsets)
    return torch.argmin(distance, dim=0).reshape(1, height, width) + 1


def majority_label(values):
    """The most frequent value, ties to the smallest (what torch.mode does on CPU)."""
    labels, counts = torch.unique(values, return_counts=True)
    return labels[torch.argmax(counts)]


def merge_semantic_and_instance(sem_seg, ins_seg, semantic_thing_seg, label_divisor, thing_ids, stuff_area,
                                void_label):  # fmt: skip
    """detectron2's merge loop (output int64)."""
    sem_seg = sem_seg.to(torch.int64)
    ins_seg = ins_seg.to(torch.int64)
    thing_ids = set(thing_ids)
    pan_seg = torch.zeros_like(sem_seg) + void_label
    is_thing = (ins_seg > 0) & (semantic_thing_seg > 0)
    per_class = Counter()
    for ins_id in torch.unique(ins_seg):
        if ins_id == 0:
            continue
        thing_mask = (ins_seg == ins_id) & is_thing
        if not thing_mask.any():
            continue
        class_id = majority_label(sem_seg[thing_mask])
        per_class[class_id.item()] += 1
        pan_seg[thing_mask] = class_id * label_divisor + per_class[class_id.item()]
    for class_id in torch.unique(sem_seg):
        if class_id.item() in thing_ids:
            continue
        stuff_mask = (sem_seg == class_id) & (ins_seg == 0)
        if stuff_mask.sum().item() >= stuff_area:
            pan_seg[stuff_mask] = class_id * label_divisor
    return pan_seg


def get_panoptic_segmentation(sem_seg, center_heatmap, offsets, thing_ids, label_divisor, stuff_area, void_label,
                              threshold=0.1, nms_kernel=7, top_k=200, foreground_mask=None):  # fmt: skip
    """detectron2's composition: thing mask, centers, grouping, merge."""
    sem_seg = sem_seg.to(torch.int64)
    if foreground_mask is not None:
        thing_seg = (foreground_mask > 0).to(torch.int64)
    else:
        thing_seg = torch.zeros_like(sem_seg)
        for thing_class in thing_ids:
            thing_seg[sem_seg == thing_class] = 1
    centers = find_instance_center(center_heatmap, threshold=threshold, nms_kernel=nms_kernel, top_k=top_k)
    if centers.shape[0] == 0:
        instance = torch.zeros_like(sem_seg)
    else:
        instance = thing_seg * group_pixels(centers, offsets)
    panoptic = merge_semantic_and_instance(sem_seg, instance, thing_seg, label_divisor, thing_ids, stuff_area,
                                           void_label)  # fmt: skip
    return panoptic, centers.unsqueeze(0)


# ---------------------------------------------------------------------------------------------
# NMS (torchvision.ops.nms CPU kernel; batched_nms' per-class form)


def _overlaps(box, others, area, other_areas, iou_threshold):
    """torchvision's CPU IoU of one box against others in the box dtype, > threshold in double."""
    xx1 = torch.where(box[0] < others[:, 0], others[:, 0], box[0])  # std::max(a, b)
    yy1 = torch.where(box[1] < others[:, 1], others[:, 1], box[1])
    xx2 = torch.where(others[:, 2] < box[2], others[:, 2], box[2])  # std::min(a, b)
    yy2 = torch.where(others[:, 3] < box[3], others[:, 3], box[3])
    zero = torch.zeros((), dtype=box.dtype, device=box.device)
    w = torch.where(zero < xx2 - xx1, xx2 - xx1, zero)
    h = torch.where(zero < yy2 - yy1, yy2 - yy1, zero)
    inter = w * h
    ovr = inter / (area + other_areas - inter)
    return ovr.double() > iou_threshold


def nms(boxes, scores, iou_threshold):
    """Greedy NMS, one vectorised IoU row per kept box."""
    if boxes.shape[0] == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores, stable=True, descending=True).indices
    sorted_boxes = boxes[order]
    areas = (sorted_boxes[:, 2] - sorted_boxes[:, 0]) * (sorted_boxes[:, 3] - sorted_boxes[:, 1])
    suppressed = torch.zeros(boxes.shape[0], dtype=torch.bool, device=boxes.device)
    keep = []
    for i in range(boxes.shape[0]):
        if suppressed[i]:
            continue
        keep.append(i)
        rest = slice(i + 1, None)
        suppressed[rest] |= _overlaps(sorted_boxes[i], sorted_boxes[rest], areas[i], areas[rest], iou_threshold)
    return order[torch.tensor(keep, dtype=torch.int64, device=boxes.device)]


def batched_nms(boxes, scores, idxs, iou_threshold):
    """NMS per category; survivors in decreasing score order, equal scores in index order."""
    keep_mask = torch.zeros_like(scores, dtype=torch.bool)
    for class_id in torch.unique(idxs):
        members = torch.where(idxs == class_id)[0]
        keep_mask[members[nms(boxes[members], scores[members], iou_threshold)]] = True
    kept = torch.where(keep_mask)[0]
    return kept[torch.sort(scores[kept], stable=True, descending=True).indices]


# ---------------------------------------------------------------------------------------------
# Matrix NMS (mmdetection mask_matrix_nms) and Panoptic FCN kernel fusion


def matrix_nms(masks, labels, scores, kernel="gaussian", sigma=2.0, filter_thr=-1.0, nms_pre=-1, max_num=-1,
               mask_area=None):  # fmt: skip
    """mmdetection's mask_matrix_nms with stable sorts; returns (scores, labels, masks, keep_inds)."""
    if len(labels) == 0:
        return (
            scores.new_zeros(0),
            labels.new_zeros(0),
            masks.new_zeros(0, *masks.shape[-2:]),
            labels.new_zeros(0, dtype=torch.int64),
        )
    if mask_area is None:
        mask_area = masks.sum((1, 2)).float()
    scores, sort_inds = torch.sort(scores, descending=True, stable=True)
    keep_inds = sort_inds
    if 0 < nms_pre < len(sort_inds):
        sort_inds, keep_inds, scores = sort_inds[:nms_pre], keep_inds[:nms_pre], scores[:nms_pre]
    masks, mask_area, labels = masks[sort_inds], mask_area[sort_inds], labels[sort_inds]
    n = len(labels)
    flat = masks.reshape(n, -1).float()
    inter = torch.mm(flat, flat.transpose(1, 0))
    expanded_area = mask_area.expand(n, n)
    iou = (inter / (expanded_area + expanded_area.transpose(1, 0) - inter)).triu(diagonal=1)
    expanded_labels = labels.expand(n, n)
    same_label = (expanded_labels == expanded_labels.transpose(1, 0)).triu(diagonal=1)
    compensate, _ = (iou * same_label).max(0)
    compensate = compensate.expand(n, n).transpose(1, 0)
    decay_iou = iou * same_label
    if kernel == "gaussian":
        decay = torch.exp(-1 * sigma * (decay_iou**2))
        compensation = torch.exp(-1 * sigma * (compensate**2))
        coefficient, _ = (decay / compensation).min(0)
    elif kernel == "linear":
        coefficient, _ = ((1 - decay_iou) / (1 - compensate)).min(0)
    else:
        raise ValueError(f"kernel must be 'gaussian' or 'linear', got {kernel!r}")
    scores = scores * coefficient
    if filter_thr > 0:
        keep = scores >= filter_thr
        keep_inds, masks, scores, labels = keep_inds[keep], masks[keep], scores[keep], labels[keep]
    scores, sort_inds = torch.sort(scores, descending=True, stable=True)
    keep_inds = keep_inds[sort_inds]
    if 0 < max_num < len(sort_inds):
        sort_inds, keep_inds, scores = sort_inds[:max_num], keep_inds[:max_num], scores[:max_num]
    return scores, labels[sort_inds], masks[sort_inds], keep_inds


def kernel_fusion(kernels, scores, labels, threshold=0.9):
    """Panoptic FCN's thing_kernel_fusion after a stable score sort; memberless groups keep
    their own kernel (Panoptic FCN: NaN). Returns (kernels, scores, labels, keep)."""
    order = torch.sort(scores, descending=True, stable=True).indices
    weight, sorted_labels = kernels[order], labels[order]
    norms = weight.norm(dim=1).unsqueeze(-1)
    normalized = weight / norms.clamp(min=1e-8)
    similarity = torch.mm(normalized, normalized.transpose(0, 1))
    same = (similarity.triu(diagonal=0) >= threshold) & (sorted_labels.unsqueeze(-1) == sorted_labels.unsqueeze(0))
    first_claim = torch.cumsum(same.to(weight.dtype), dim=0) < 2
    kept = first_claim.diagonal(0)
    members = (same[kept] & first_claim[kept]).to(weight.dtype)
    count = members.sum(dim=1, keepdim=True)
    fused = torch.mm(members, weight) / count
    fused = torch.where(count > 0, fused, weight[kept])
    return fused, scores[order][kept], sorted_labels[kept], order[kept]


# ---------------------------------------------------------------------------------------------
# CIAE box-filtered similarity


def box_filtered_similarity(embeddings, queries, boxes, stride):
    """Tensor[B, N, H, W]: channels accumulated in order, zero outside each box."""
    batch, dim, height, width = embeddings.shape
    acc = torch.zeros((batch, queries.shape[1], height, width), dtype=embeddings.dtype, device=embeddings.device)
    for d in range(dim):
        acc = acc + embeddings[:, None, d] * queries[:, :, d, None, None]
    return torch.where(box_mask(boxes, height, width, stride), acc, torch.zeros((), dtype=acc.dtype))


def box_filtered_assign(embeddings, queries, boxes, stride):
    """(argmax over queries, its similarity) of :func:`box_filtered_similarity`."""
    similarity = box_filtered_similarity(embeddings, queries, boxes, stride)
    ids = torch.argmax(similarity, dim=1)
    return ids, torch.gather(similarity, 1, ids.unsqueeze(1)).squeeze(1)


def thing_ids_set(thing_ids: Iterable[int]) -> set[int]:
    return {int(t) for t in thing_ids}
