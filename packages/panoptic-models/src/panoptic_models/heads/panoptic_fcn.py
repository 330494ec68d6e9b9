"""Panoptic FCN's kernel generator heads (dvlab-research/PanopticFCN ``head.py``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .towers import ConvTower, normal_init_

__all__ = ["KernelHead", "PositionHead"]


class PositionHead(nn.Module):
    """Thing-center and stuff-region logits from one pyramid level (shared by all levels).

    A tower of ``num_convs`` 3x3 conv + norm + ReLU (PyTorch's default conv init, as upstream's
    ``SingleHead``), then two 3x3 convs: ``num_things`` center logits and ``num_stuff`` region
    logits, both with weights N(0, 0.01) and bias ``prior_bias`` (-2.19).

    Shapes: Tensor[B, in_channels, h, w] -> (Tensor[B, num_things, h, w], Tensor[B, num_stuff, h, w]).
    """

    def __init__(
        self, in_channels: int, channels: int, num_convs: int, num_things: int, num_stuff: int, norm: str,
        prior_bias: float,
    ) -> None:  # fmt: skip
        super().__init__()
        self.tower = ConvTower(in_channels, channels, num_convs, norm=norm, init_std=None)
        width = self.tower.out_channels
        self.center = nn.Conv2d(width, num_things, 3, padding=1)
        self.region = nn.Conv2d(width, num_stuff, 3, padding=1)
        for layer in (self.center, self.region):
            nn.init.normal_(layer.weight, mean=0.0, std=0.01)
            nn.init.constant_(layer.bias, prior_bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.tower(x)
        return self.center(x), self.region(x)


class KernelHead(nn.Module):
    """Dense kernel maps from one pyramid level (shared by all levels), already embedded.

    Upstream's ``KernelHead`` (tower on ``[x, coords]`` when ``coord``, then a 3x3 conv with
    N(0, 0.01) weights and zero bias) followed by the 1x1 ``embed_extractor`` convs of its
    ``ThingGenerator`` and ``StuffGenerator`` (``kernel_channels -> encoder_channels``,
    N(0, 0.01), bias 0). Upstream applies those 1x1 convs to the features it gathers (things) or
    averages (stuff); a 1x1 conv commutes with both, so applying it densely gives the same
    kernels. The stuff embedding is returned without its bias (``stuff_bias``), which is added
    after the masked average, as upstream adds it after ``adaptive_avg_pool2d``.

    Shapes: Tensor[B, in_channels, h, w] -> (things Tensor[B, E, h, w], stuff Tensor[B, E, h, w]).
    """

    def __init__(
        self, in_channels: int, channels: int, num_convs: int, embed_channels: int, norm: str, coord: bool
    ) -> None:
        super().__init__()
        self.tower = ConvTower(in_channels, channels, num_convs, norm=norm, coord=coord, init_std=None)
        self.out_conv = nn.Conv2d(self.tower.out_channels, channels, 3, padding=1)
        self.thing_embed = nn.Conv2d(channels, embed_channels, 1)
        self.stuff_embed = nn.Conv2d(channels, embed_channels, 1)
        normal_init_(self.out_conv, 0.01)
        normal_init_(self.thing_embed, 0.01)
        normal_init_(self.stuff_embed, 0.01)

    @property
    def stuff_bias(self) -> torch.Tensor:
        """Tensor[E]: the stuff embedding's bias, added to each averaged stuff kernel."""
        return self.stuff_embed.bias

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.out_conv(self.tower(x))
        return self.thing_embed(w), F.conv2d(w, self.stuff_embed.weight)
