"""SOLOv2's instance head (Wang et al., NeurIPS 2020) as mmdetection's ``SOLOV2Head``.

Facts from mmdetection (``mmdet/models/dense_heads/solov2_head.py``, ``solov2_r50_fpn_1x_coco.py``):

- Five input levels (strides 4..64 there: FPN P2-P6); the finest is first resized by 0.5 and the
  coarsest to the size of the one before it (bilinear), as ``resize_feats``.
- Per level, the two coordinate channels (x then y in [-1, 1]) are concatenated to the level's
  features *before* it is resized bilinearly (``align_corners=False``) to the S x S grid; the
  kernel branch reads all ``C + 2`` channels, the category branch the first ``C``.
- Each branch: ``num_convs`` (4) 3x3 conv + GN(32) + ReLU with ``channels`` (512); then a 3x3 conv
  to the E kernel weights (dynamic 1x1 convs) or to the class logits (bias from ``prior_prob``
  0.01); all convs initialised N(0, 0.01).
- The unified mask-feature branch (``MaskFeatModule``): the semantic-FPN aggregation of levels
  0..3 to stride 4 (one 3x3 conv + GN + ReLU per 2x bilinear step, coordinates on the coarsest
  level's input) with ``feature_channels`` (128), then a 1x1 conv + GN + ReLU to E (256);
  N(0, 0.01) init.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.base import ShapeSpec
from ..layers import Conv2dNormAct
from ..necks._features import require_features, select_features
from ..necks.coord_conv import add_coords
from ..necks.semantic_fpn import SemanticFPN
from .towers import ConvTower, normal_init_

__all__ = ["SOLOv2Head", "SOLOv2MaskFeatures", "dynamic_masks"]


def dynamic_masks(kernels: torch.Tensor, mask_features: torch.Tensor) -> torch.Tensor:
    """SOLOv2's dynamic 1x1 convolution: mask logits ``M_k = sum_e kernels[k, e] * F[e]``.

    Args:
        kernels (Tensor[K, E]): one kernel per candidate.
        mask_features (Tensor[E, h, w]): the mask-feature map of the image.

    Returns:
        Tensor[K, h, w] mask logits.
    """
    e, h, w = mask_features.shape
    if kernels.dim() != 2 or kernels.shape[1] != e:
        raise ValueError(f"kernels: expected Tensor[K, {e}], got shape {tuple(kernels.shape)}")
    return (kernels @ mask_features.reshape(e, h * w)).reshape(-1, h, w)


class SOLOv2Head(nn.Module):
    """SOLOv2's category and kernel branches over the grids (see the module docstring).

    Args:
        in_channels: channels of every input level (the FPN's).
        num_classes: thing classes (sigmoid logits; background is all-negative).
        num_grids: grid size S of each level.
        kernel_channels: E, the length of each dynamic 1x1 kernel (the mask features' channels).
        channels, num_convs, norm: branch towers (512, 4, ``"GN"``).
        prior_prob: initial foreground probability of the category logits (0.01).

    Shapes: ``forward([Tensor[B, in_channels, h_l, w_l]] * L)`` -> ``{"category": [Tensor[B,
    num_classes, S_l, S_l]], "kernel": [Tensor[B, kernel_channels, S_l, S_l]]}``.

    Raises:
        ValueError: bad sizes, or a number of levels other than ``len(num_grids)`` in ``forward``.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        num_grids: Sequence[int] = (40, 36, 24, 16, 12),
        kernel_channels: int = 256,
        channels: int = 512,
        num_convs: int = 4,
        norm: str = "GN",
        prior_prob: float = 0.01,
    ) -> None:
        super().__init__()
        if num_classes <= 0 or kernel_channels <= 0:
            raise ValueError(f"SOLOv2Head: num_classes and kernel_channels must be positive, got "
                             f"{num_classes}, {kernel_channels}")  # fmt: skip
        if not 0.0 < prior_prob < 1.0:
            raise ValueError(f"SOLOv2Head: prior_prob must be in (0, 1), got {prior_prob}")
        self.num_grids = tuple(int(s) for s in num_grids)
        if len(self.num_grids) < 2 or min(self.num_grids) <= 0:
            raise ValueError(f"SOLOv2Head: num_grids needs at least two positive sizes, got {tuple(num_grids)}")
        self.num_classes = num_classes
        self.kernel_tower = ConvTower(in_channels + 2, channels, num_convs, norm=norm)
        self.category_tower = ConvTower(in_channels, channels, num_convs, norm=norm)
        tower_out = self.kernel_tower.out_channels
        self.kernel_pred = nn.Conv2d(tower_out, kernel_channels, 3, padding=1)
        self.category_pred = nn.Conv2d(self.category_tower.out_channels, num_classes, 3, padding=1)
        normal_init_(self.kernel_pred, 0.01)
        normal_init_(self.category_pred, 0.01)
        nn.init.constant_(self.category_pred.bias, -math.log((1 - prior_prob) / prior_prob))

    def forward(self, features: Sequence[torch.Tensor]) -> dict[str, list[torch.Tensor]]:
        if len(features) != len(self.num_grids):
            raise ValueError(f"SOLOv2Head: {len(features)} levels, expected {len(self.num_grids)} (one per grid)")
        feats = list(features)
        feats[0] = F.interpolate(feats[0], scale_factor=0.5, mode="bilinear", align_corners=False)
        feats[-1] = F.interpolate(feats[-1], size=feats[-2].shape[-2:], mode="bilinear", align_corners=False)
        category, kernel = [], []
        for x, grid in zip(feats, self.num_grids, strict=True):
            x = F.interpolate(add_coords(x), size=(grid, grid), mode="bilinear", align_corners=False)
            kernel.append(self.kernel_pred(self.kernel_tower(x)))
            category.append(self.category_pred(self.category_tower(x[:, :-2])))
        return {"category": category, "kernel": kernel}


class SOLOv2MaskFeatures(nn.Module):
    """SOLOv2's unified mask-feature branch: :class:`SemanticFPN` with coordinates on the coarsest
    level, then a 1x1 conv + norm + ReLU to ``out_channels``.

    Args:
        input_shape: ``{name: ShapeSpec}`` of the FPN.
        in_features: levels aggregated (``p2``..``p5``).
        feature_channels: channels of the towers (128).
        out_channels: E (256).
        norm: ``"GN"``.

    Shapes: ``forward({name: Tensor})`` -> Tensor[B, out_channels, h_4, w_4] at the finest level's size.
    """

    def __init__(
        self,
        input_shape: Mapping[str, ShapeSpec],
        in_features: Sequence[str],
        feature_channels: int = 128,
        out_channels: int = 256,
        norm: str = "GN",
    ) -> None:
        super().__init__()
        specs = select_features(input_shape, in_features, "SOLOv2MaskFeatures")
        self.in_features = tuple(in_features)
        stride = min(s.stride for s in specs)
        self.aggregate = SemanticFPN(input_shape, in_features, feature_channels, stride, norm=norm, coord_conv=True)
        self.predictor = Conv2dNormAct(feature_channels, out_channels, 1, norm=norm)
        normal_init_(self, 0.01)
        self._shape = ShapeSpec(out_channels, stride)

    def output_shape(self) -> ShapeSpec:
        return self._shape

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        require_features(features, self.in_features, "SOLOv2MaskFeatures")
        return self.predictor(self.aggregate(features))
