"""Losses as pure functions. Each docstring gives the formula and where it comes from."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "bootstrapped_cross_entropy",
    "centerness_loss",
    "dice_loss",
    "iou_loss",
    "reduce",
    "sigmoid_focal_loss",
    "weighted_dice_loss",
    "weighted_l1_loss",
    "weighted_mse_loss",
]


def reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    """Apply ``reduction`` ("none", "mean" or "sum")."""
    if reduction == "none":
        return loss
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")


def bootstrapped_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor | None = None,
    ignore_index: int = 255,
    top_k_percent_pixels: float = 0.2,
) -> torch.Tensor:
    """Bootstrapped (hard-pixel) cross entropy of DeepLab / Panoptic-DeepLab (detectron2 ``DeepLabCE``).

    ``l_i = w_i * CE(logits_i, y_i)`` (0 on ignored pixels), then the mean of the
    ``K = int(top_k_percent_pixels * N)`` largest ``l_i`` over all N pixels of the batch
    (ignored pixels included in N, as detectron2 does); ``top_k_percent_pixels == 1`` is the
    plain mean. Panoptic-DeepLab uses 0.2 with weight 3 on small instances. K is at least 1
    (detectron2 averages an empty top-k, NaN, on maps under 1 / top_k_percent_pixels pixels).

    Args:
        logits (Tensor[B, C, H, W]), labels (Tensor[B, H, W] int64), weights (Tensor[B, H, W]).
    """
    if not 0 < top_k_percent_pixels <= 1:
        raise ValueError(f"top_k_percent_pixels must be in (0, 1], got {top_k_percent_pixels}")
    pixel = F.cross_entropy(logits, labels, ignore_index=ignore_index, reduction="none").reshape(-1)
    if weights is not None:
        pixel = pixel * weights.reshape(-1)
    if top_k_percent_pixels == 1.0:
        return pixel.mean()
    k = max(1, int(top_k_percent_pixels * pixel.numel()))
    return torch.topk(pixel, min(k, pixel.numel())).values.mean()


def _weighted_mean(loss: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    total = weights.sum()
    if total > 0:
        return (loss * weights).sum() / total
    return (loss * weights).sum() * 0


def weighted_mse_loss(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum(w * (p - t)^2) / sum(w)`` (0 when no weight): Panoptic-DeepLab's center loss.

    Args:
        pred, target (Tensor[B, 1, H, W]); weights broadcastable to them (Tensor[B, 1, H, W]).
    """
    return _weighted_mean(F.mse_loss(pred, target, reduction="none"), weights)


def weighted_l1_loss(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum_{c, i} w_i * |p_ci - t_ci| / sum_i w_i`` (0 when no weight): Panoptic-DeepLab's offset loss.

    The weights (Tensor[B, 1, H, W]) broadcast over the two offset channels and are summed
    once, as detectron2 does.
    """
    return _weighted_mean(F.l1_loss(pred, target, reduction="none"), weights)


def sigmoid_focal_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: str = "none",
) -> torch.Tensor:
    """Sigmoid focal loss (Lin et al., RetinaNet, eq. 5): ``-alpha_t (1 - p_t)^gamma log(p_t)``.

    ``p_t = p`` for positives and ``1 - p`` for negatives, ``alpha_t = alpha`` / ``1 - alpha``;
    ``alpha < 0`` disables the balancing. Same numbers as torchvision's ``sigmoid_focal_loss``.
    """
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return reduce(loss, reduction)


def _summable(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32 when it is half precision (autocast): sums over a whole mask in float16 or
    bfloat16 would lose most digits."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def dice_loss(probs: torch.Tensor, targets: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Dice loss of SOLO / SOLOv2 (Wang et al., eq. 3), one value per mask:
    ``1 - 2 sum(p q) / (sum(p^2) + eps + sum(q^2) + eps)``.

    Args:
        probs (Tensor[N, ...]): mask probabilities; targets (Tensor[N, ...]) in {0, 1}.

    Returns:
        Tensor[N], float32 for half-precision probabilities.
    """
    p = _summable(probs.reshape(len(probs), -1))
    q = targets.reshape(len(targets), -1).to(p.dtype)
    a = (p * q).sum(1)
    b = (p * p).sum(1) + eps
    c = (q * q).sum(1) + eps
    return 1 - 2 * a / (b + c)


def weighted_dice_loss(
    probs: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, eps: float = 1e-8
) -> torch.Tensor:
    """Panoptic FCN's weighted dice, one value per instance j:
    ``WDice_j = sum_k w_jk Dice(P_jk, Y_j)``, ``w_jk = s_jk / sum_k s_jk`` (the k sampled
    positions' scores, normalised), ``Dice(P, Y) = 1 - 2 sum(P Y) / max(sum(P^2) + sum(Y^2), eps)``.
    The slides write the segmentation loss as ``sum_j WDice_j / (M + N)`` over things and stuff;
    upstream (``panoptic_seg.py``) normalises them separately: ``loss_seg_th = 3 * sum_j WDice_j / M``
    over the M (instance, level) pairs and ``loss_seg_st = 3 * sum_j Dice_j / N`` over the N
    (image, level, stuff class) entries (k = 1, weight 1), each count clamped at 1; Panoptic FCN's
    model (``panoptic_models``) does that. Weights are used as given (not detached): upstream's
    dice gradient reaches the position head through them.

    Args:
        probs (Tensor[N, k, HW]): masks predicted by the kernels of the k positions.
        targets (Tensor[N, HW]): the instance's mask.
        weights (Tensor[N, k]): the positions' scores.

    Returns:
        Tensor[N], float32 for half-precision probabilities or weights.
    """
    probs, weights = _summable(probs), _summable(weights)
    q = targets.unsqueeze(1).to(probs.dtype)
    denom = ((probs * probs).sum(-1) + (q * q).sum(-1)).clamp(min=eps)
    dice = 1 - 2 * (probs * q).sum(-1) / denom
    w = weights / weights.sum(-1, keepdim=True).clamp(min=eps)
    return (dice * w).sum(-1)


def iou_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    weights: torch.Tensor | None = None,
    loss_type: str = "iou",
    reduction: str = "sum",
) -> torch.Tensor:
    """IoU losses on (l, t, r, b) distances from a location, as FCOS computes them.

    ``IoU = (I + 1) / (U + 1)`` with I, U the intersection and union of the two boxes around
    the location; ``iou``: ``-log IoU`` (UnitBox), ``linear_iou``: ``1 - IoU``, ``giou``:
    ``1 - (IoU - (C - U) / C)`` with C the smallest enclosing box (+1e-7).

    Args:
        pred, target (Tensor[N, 4]): non-negative distances; weights (Tensor[N]) optional.
    """
    pl, pt, pr, pb = pred.unbind(-1)
    tl, tt, tr, tb = target.unbind(-1)
    pred_area = (pl + pr) * (pt + pb)
    target_area = (tl + tr) * (tt + tb)
    w_inter = torch.minimum(pl, tl) + torch.minimum(pr, tr)
    h_inter = torch.minimum(pb, tb) + torch.minimum(pt, tt)
    inter = w_inter * h_inter
    union = target_area + pred_area - inter
    ious = (inter + 1.0) / (union + 1.0)
    if loss_type == "iou":
        loss = -torch.log(ious)
    elif loss_type == "linear_iou":
        loss = 1 - ious
    elif loss_type == "giou":
        enclose = (torch.maximum(pl, tl) + torch.maximum(pr, tr)) * (torch.maximum(pb, tb) + torch.maximum(pt, tt))
        enclose = enclose + 1e-7
        loss = 1 - (ious - (enclose - union) / enclose)
    else:
        raise ValueError(f"loss_type must be 'iou', 'linear_iou' or 'giou', got {loss_type!r}")
    if weights is not None:
        loss = loss * weights
    return reduce(loss, reduction)


def centerness_loss(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """FCOS center-ness loss: binary cross entropy between ``sigmoid(logits)`` and the center-ness
    targets ``sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))`` of the positive locations."""
    return reduce(F.binary_cross_entropy_with_logits(logits, targets, reduction="none"), reduction)
