"""The backbone contract (as detectron2's): named feature maps and their shapes."""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["Backbone", "ShapeSpec"]


@dataclass(frozen=True)
class ShapeSpec:
    """Channels and stride (input pixels per feature pixel) of a feature map."""

    channels: int
    stride: int


class Backbone(nn.Module, metaclass=ABCMeta):
    """A network returning named feature maps.

    Subclasses implement ``forward(x) -> {name: Tensor[B, C, H / stride, W / stride]}`` and
    :meth:`output_shape`. Feature names follow detectron2: ``res2``..``res5`` for strides
    4..32 (with dilation the later ones keep stride 16 or 8), so necks and heads are built
    from :meth:`output_shape` alone.
    """

    @abstractmethod
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Args: x (Tensor[B, 3, H, W]). Returns: ``{name: Tensor[B, C, h, w]}``."""

    @abstractmethod
    def output_shape(self) -> dict[str, ShapeSpec]:
        """``{name: ShapeSpec(channels, stride)}`` of every feature :meth:`forward` returns."""

    @property
    def size_divisibility(self) -> int:
        """Input sizes should be multiples of this (the largest stride) for aligned features."""
        return max(s.stride for s in self.output_shape().values())

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError when ``x`` is not a batch of 3-channel images at least one output stride in size."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"{type(self).__name__}: expected images of shape (B, 3, H, W), got {tuple(x.shape)}")
        need = self.size_divisibility
        if x.shape[-2] < need or x.shape[-1] < need:
            raise ValueError(
                f"{type(self).__name__}: image of {x.shape[-2]}x{x.shape[-1]} is smaller than the network's "
                f"stride {need}; inputs must be at least {need}x{need}"
            )
