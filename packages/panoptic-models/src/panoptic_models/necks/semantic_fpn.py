"""Semantic-FPN aggregation (Kirillov et al., Panoptic FPN, CVPR 2019) without its predictor.

detectron2's ``SemSegFPNHead.layers``: each pyramid level goes through ``max(1, log2(s / common_stride))``
blocks of 3x3 conv + norm + ReLU, each block (on levels coarser than ``common_stride``) followed by a
2x bilinear upsampling (``align_corners=False``); the per-level maps are summed. The 1x1 predictor is
left to the heads. Panoptic FCN feeds this sum (256 channels, GN) to its feature encoder, and SOLOv2's
mask-feature branch is the same block with coordinates concatenated to the coarsest level's input
(``coord_conv=True`` here, as SOLOv2's ``MaskFeatHead``; Panoptic FCN instead puts its coordinates in
the encoder, a ``ConvTower(coord=True)`` on this output).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.base import ShapeSpec
from ..layers import Conv2dNormAct, c2_msra_fill
from ._features import require_features, select_features
from .coord_conv import add_coords

__all__ = ["SemanticFPN"]


class SemanticFPN(nn.Module):
    """Sum of per-level conv + upsample towers to a common stride (Panoptic FPN's semantic branch).

    Level ``name`` at stride ``s >= common_stride`` gets ``n = max(1, log2(s / common_stride))``
    blocks ``Conv3x3(+norm)+ReLU``, each followed (when ``s > common_stride``) by a bilinear 2x
    upsampling (``align_corners=False``). Every upsampling step targets the exact size of the input
    level at the stride it reaches when that level is among the inputs (e.g. ``p2`` for the last
    step to stride 4), else twice the current size, so odd image sizes work; for sizes that are
    multiples of the coarsest stride this equals detectron2's ``scale_factor=2``. Weight init as
    detectron2 (:func:`c2_msra_fill`).

    The output is a single map, not a dict: what heads read (Panoptic FPN's predictor, Panoptic
    FCN's feature encoder, SOLOv2's mask-feature predictor), described by :meth:`output_shape`.

    Args:
        input_shape: ``{name: ShapeSpec}`` of the FPN (``FPN.output_shape()``).
        in_features: levels to aggregate (``p2``..``p5``); any order, strides powers of two
            ``>= common_stride``.
        conv_dims: channels of every block and of the output (128 in Panoptic FPN, 256 in
            Panoptic FCN).
        common_stride: output stride (4).
        norm: normalisation in each block (``"GN"``: ``GroupNorm(32, conv_dims)``; any of
            :func:`panoptic_models.layers.get_norm`).
        coord_conv: concatenate the two coordinate channels of :func:`add_coords` to the coarsest
            level's input before its first conv (SOLOv2's mask-feature branch).

    Shapes: ``forward({name: Tensor[B, C_name, h_s, w_s]})`` -> Tensor[B, conv_dims, h_c, w_c] with
    ``(h_c, w_c)`` the size of the input at ``common_stride`` (``ceil(H / 4)`` for an ``H x W`` image).

    Raises:
        ValueError: unknown ``in_features`` or ``norm``, a stride below ``common_stride`` or not
            a power of two, or non-positive ``conv_dims``.
    """

    def __init__(
        self,
        input_shape: Mapping[str, ShapeSpec],
        in_features: Sequence[str] = ("p2", "p3", "p4", "p5"),
        conv_dims: int = 128,
        common_stride: int = 4,
        norm: str = "GN",
        coord_conv: bool = False,
    ) -> None:
        super().__init__()
        specs = select_features(input_shape, in_features, "SemanticFPN")
        if conv_dims <= 0:
            raise ValueError(f"SemanticFPN: conv_dims must be positive, got {conv_dims}")
        if common_stride < 1 or common_stride & (common_stride - 1):
            raise ValueError(f"SemanticFPN: common_stride must be a power of two, got {common_stride}")
        for name, spec in zip(in_features, specs):
            s = spec.stride
            if s < common_stride or s & (s - 1):
                raise ValueError(
                    f"SemanticFPN: in_features {name!r} has stride {s}; strides must be powers of two "
                    f">= common_stride={common_stride}"
                )
        self.in_features = tuple(in_features)
        self.conv_dims = conv_dims
        self.common_stride = common_stride
        self.coord_conv = coord_conv
        self._strides = tuple(s.stride for s in specs)
        coarsest = max(range(len(specs)), key=lambda i: specs[i].stride)
        self._coord_level = coarsest if coord_conv else -1

        self.scale_heads = nn.ModuleList()
        for i, spec in enumerate(specs):
            n = max(1, int(math.log2(spec.stride) - math.log2(common_stride)))
            first_in = spec.channels + (2 if i == self._coord_level else 0)
            self.scale_heads.append(
                nn.ModuleList(
                    Conv2dNormAct(first_in if k == 0 else conv_dims, conv_dims, 3, norm=norm) for k in range(n)
                )
            )
        c2_msra_fill(self.scale_heads)

    def output_shape(self) -> ShapeSpec:
        """``ShapeSpec(conv_dims, common_stride)`` of the returned map."""
        return ShapeSpec(self.conv_dims, self.common_stride)

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Aggregate the levels.

        Args:
            features: ``{name: Tensor[B, C_name, h_s, w_s]}`` holding every name of ``in_features``.

        Returns:
            Tensor[B, conv_dims, h_c, w_c] at ``common_stride`` (see the class docstring).
        """
        require_features(features, self.in_features, "SemanticFPN")
        sizes = {s: features[f].shape[-2:] for f, s in zip(self.in_features, self._strides)}
        maps = []
        for i, (name, stride, head) in enumerate(zip(self.in_features, self._strides, self.scale_heads)):
            x = features[name]
            if i == self._coord_level:
                x = add_coords(x)
            s = stride
            for conv in head:
                x = conv(x)
                if s > self.common_stride:
                    s //= 2
                    size = sizes[s] if s in sizes else (2 * x.shape[-2], 2 * x.shape[-1])
                    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            maps.append(x)
        out = maps[0]
        for x in maps[1:]:
            out = out + x
        return out
