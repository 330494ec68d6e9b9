"""Thin ``nn.Module`` wrappers of the loss functions (hyper-parameters at construction)."""

from __future__ import annotations

import torch
from torch import nn

from . import functional as L

__all__ = [
    "BootstrappedCrossEntropy",
    "CenternessLoss",
    "DiceLoss",
    "IoULoss",
    "SigmoidFocalLoss",
    "WeightedDiceLoss",
    "WeightedL1Loss",
    "WeightedMSELoss",
]


class BootstrappedCrossEntropy(nn.Module):
    """:func:`~panoptic_core.losses.bootstrapped_cross_entropy` (ignore 255, top 20% of pixels)."""

    def __init__(self, ignore_index: int = 255, top_k_percent_pixels: float = 0.2) -> None:
        super().__init__()
        self.ignore_index, self.top_k_percent_pixels = ignore_index, top_k_percent_pixels

    def forward(self, logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None):
        return L.bootstrapped_cross_entropy(logits, labels, weights, self.ignore_index, self.top_k_percent_pixels)


class WeightedMSELoss(nn.Module):
    """:func:`~panoptic_core.losses.weighted_mse_loss`."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return L.weighted_mse_loss(pred, target, weights)


class WeightedL1Loss(nn.Module):
    """:func:`~panoptic_core.losses.weighted_l1_loss`."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return L.weighted_l1_loss(pred, target, weights)


class SigmoidFocalLoss(nn.Module):
    """:func:`~panoptic_core.losses.sigmoid_focal_loss` (alpha 0.25, gamma 2)."""

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, reduction: str = "sum") -> None:
        super().__init__()
        self.alpha, self.gamma, self.reduction = alpha, gamma, reduction

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return L.sigmoid_focal_loss(logits, targets, self.alpha, self.gamma, self.reduction)


class DiceLoss(nn.Module):
    """:func:`~panoptic_core.losses.dice_loss` on ``sigmoid(logits)``, reduced."""

    def __init__(self, eps: float = 1e-3, reduction: str = "mean") -> None:
        super().__init__()
        self.eps, self.reduction = eps, reduction

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return L.reduce(L.dice_loss(logits.sigmoid(), targets, self.eps), self.reduction)


class WeightedDiceLoss(nn.Module):
    """:func:`~panoptic_core.losses.weighted_dice_loss` on ``sigmoid(logits)``, summed (divide by M + N)."""

    def __init__(self, eps: float = 1e-8, reduction: str = "sum") -> None:
        super().__init__()
        self.eps, self.reduction = eps, reduction

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return L.reduce(L.weighted_dice_loss(logits.sigmoid(), targets, weights, self.eps), self.reduction)


class IoULoss(nn.Module):
    """:func:`~panoptic_core.losses.iou_loss` ("iou", "linear_iou" or "giou")."""

    def __init__(self, loss_type: str = "iou", reduction: str = "sum") -> None:
        super().__init__()
        self.loss_type, self.reduction = loss_type, reduction

    def forward(self, pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None):
        return L.iou_loss(pred, target, weights, self.loss_type, self.reduction)


class CenternessLoss(nn.Module):
    """:func:`~panoptic_core.losses.centerness_loss`."""

    def __init__(self, reduction: str = "sum") -> None:
        super().__init__()
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return L.centerness_loss(logits, targets, self.reduction)
