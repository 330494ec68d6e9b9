"""DeepLab prediction heads: a small conv tower and a 1x1 predictor (Panoptic-DeepLab's semantic, center, offset)."""

from __future__ import annotations

import torch
from torch import nn

from ..layers import Conv2dNormAct, SeparableConv2d, c2_xavier_fill

__all__ = ["DeepLabPredictionHead"]


class DeepLabPredictionHead(nn.Module):
    """detectron2's Panoptic-DeepLab head: two 3x3 convs (``in -> in -> head_channels``, XavierFill;
    one 5x5 depthwise-separable conv, MSRAFill, when ``depthwise_separable``) with norm and ReLU,
    then a 1x1 conv to ``out_channels`` initialised N(0, 0.001), bias 0.

    Shapes: Tensor[B, in_channels, h, w] -> Tensor[B, out_channels, h, w].
    """

    def __init__(
        self,
        in_channels: int,
        head_channels: int,
        out_channels: int,
        *,
        norm: str = "BN",
        depthwise_separable: bool = False,
    ) -> None:
        super().__init__()
        if depthwise_separable:
            self.tower = SeparableConv2d(in_channels, head_channels, 5, norm=norm)
        else:
            self.tower = nn.Sequential(
                Conv2dNormAct(in_channels, in_channels, 3, norm=norm),
                Conv2dNormAct(in_channels, head_channels, 3, norm=norm),
            )
        c2_xavier_fill(self.tower)
        self.predictor = nn.Conv2d(head_channels, out_channels, 1)
        nn.init.normal_(self.predictor.weight, 0, 0.001)
        nn.init.zeros_(self.predictor.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.predictor(self.tower(x))
