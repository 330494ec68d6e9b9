"""ASPP and the DeepLabV3+ decoder (as detectron2's ``ASPP`` and ``DeepLabV3PlusHead`` without predictor)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.base import ShapeSpec
from ..layers import Conv2dNormAct, SeparableConv2d, c2_xavier_fill
from ._features import select_features

__all__ = ["ASPP", "DeepLabV3PlusDecoder"]


class ASPP(nn.Module):
    """Atrous Spatial Pyramid Pooling (Chen et al., DeepLabV3).

    Five parallel branches: a 1x1 conv, three 3x3 convs with ``dilations`` (depthwise separable
    when ``depthwise_separable``), and image pooling (average pool, 1x1 conv with bias and
    activation, no norm, upsampled bilinearly); concatenated, projected by a 1x1 conv, dropout.

    Args:
        in_channels, out_channels: channels in and out.
        dilations: the three atrous rates (6, 12, 18 at output stride 16).
        norm: normalisation of every conv but the pooling branch (see ``layers.get_norm``).
        pool_kernel_size: (h, w) average-pool window of the image-pooling branch in feature
            pixels, stride 1, as detectron2 sets it from the training crop (crop size / the
            feature's stride); ``None`` pools the whole map. The window is clamped, axis by axis,
            to smaller maps.
        dropout: dropout on the output (training only).
        depthwise_separable: separable atrous convs (Panoptic-DeepLab's choice).

    Shapes: Tensor[B, in_channels, h, w] -> Tensor[B, out_channels, h, w].
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        dilations: Sequence[int] = (6, 12, 18),
        *,
        norm: str = "BN",
        pool_kernel_size: tuple[int, int] | None = None,
        dropout: float = 0.1,
        depthwise_separable: bool = False,
    ) -> None:
        super().__init__()
        if len(dilations) != 3:
            raise ValueError(f"ASPP: dilations must have 3 rates, got {list(dilations)}")
        self.pool_kernel_size = (
            None if pool_kernel_size is None else (int(pool_kernel_size[0]), int(pool_kernel_size[1]))
        )
        self.dropout = float(dropout)
        branches: list[nn.Module] = [Conv2dNormAct(in_channels, out_channels, 1, norm=norm)]
        for d in dilations:
            if depthwise_separable:
                branches.append(SeparableConv2d(in_channels, out_channels, 3, dilation=d, norm=norm))
            else:
                branches.append(Conv2dNormAct(in_channels, out_channels, 3, dilation=d, norm=norm))
        self.branches = nn.ModuleList(branches)
        self.pool_conv = Conv2dNormAct(in_channels, out_channels, 1, norm="")
        self.project = Conv2dNormAct(5 * out_channels, out_channels, 1, norm=norm)
        c2_xavier_fill(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        outs = [branch(x) for branch in self.branches]
        k = self.pool_kernel_size
        if k is None:
            pooled = x.mean(dim=(2, 3), keepdim=True)
        else:
            pooled = F.avg_pool2d(x, (min(k[0], size[0]), min(k[1], size[1])), stride=1)
        outs.append(F.interpolate(self.pool_conv(pooled), size=size, mode="bilinear", align_corners=False))
        y = self.project(torch.cat(outs, dim=1))
        return F.dropout(y, self.dropout, training=self.training) if self.dropout > 0 else y


class DeepLabV3PlusDecoder(nn.Module):
    """DeepLabV3+ decoder over several backbone levels (detectron2's ``DeepLabV3PlusHead``, decoder only).

    The coarsest feature goes through :class:`ASPP` (``aspp_channels`` out); then, from coarse
    to fine, the running output is upsampled bilinearly to the next feature's size,
    concatenated with that feature projected by a 1x1 conv (``project_channels``) and fused by
    two 3x3 convs (one 5x5 depthwise-separable conv when ``depthwise_separable``) to
    ``decoder_channels``.

    Args:
        input_shape: ``{name: ShapeSpec}`` of the backbone.
        in_features: names of the features used, any order (sorted by stride), e.g.
            ``("res2", "res3", "res5")``.
        project_channels: 1x1 projection width of each feature but the coarsest, fine to coarse.
        aspp_channels, aspp_dilations, aspp_dropout, pool_kernel_size: see :class:`ASPP`.
        decoder_channels: width of each fused output.
        norm: normalisation of every conv.
        depthwise_separable: separable convs in the ASPP and the fusion.

    Shapes: features ``{name: Tensor[B, C_name, H/s, W/s]}`` -> Tensor[B, decoder_channels,
    H/s0, W/s0] at the finest feature's stride ``s0`` (:attr:`output_stride`).
    """

    def __init__(
        self,
        input_shape: Mapping[str, ShapeSpec],
        in_features: Sequence[str] = ("res2", "res3", "res5"),
        *,
        project_channels: Sequence[int] = (32, 64),
        aspp_channels: int = 256,
        aspp_dilations: Sequence[int] = (6, 12, 18),
        aspp_dropout: float = 0.1,
        pool_kernel_size: tuple[int, int] | None = None,
        decoder_channels: int = 256,
        norm: str = "BN",
        depthwise_separable: bool = False,
    ) -> None:
        super().__init__()
        select_features(input_shape, in_features, "DeepLabV3PlusDecoder")
        ordered = sorted(in_features, key=lambda f: input_shape[f].stride)
        strides = [input_shape[f].stride for f in ordered]
        if len(set(strides)) != len(strides):
            raise ValueError(
                f"in_features: {list(in_features)} has features of equal stride {strides}; the decoder needs one "
                "feature per stride (with dilation res4 and res5 share stride 16: use one of them)"
            )
        if len(project_channels) != len(ordered) - 1:
            raise ValueError(
                f"project_channels: expected {len(ordered) - 1} values (one per feature but the coarsest), "
                f"got {list(project_channels)}"
            )
        self.in_features = tuple(ordered)
        self.output_stride = input_shape[ordered[0]].stride
        self.out_channels = decoder_channels if len(ordered) > 1 else aspp_channels
        self.aspp = ASPP(
            input_shape[ordered[-1]].channels, aspp_channels, aspp_dilations, norm=norm,
            pool_kernel_size=pool_kernel_size, dropout=aspp_dropout, depthwise_separable=depthwise_separable,
        )  # fmt: skip
        self.project = nn.ModuleList()
        self.fuse = nn.ModuleList()
        above = aspp_channels
        for name, width in zip(reversed(ordered[:-1]), reversed(tuple(project_channels)), strict=True):
            self.project.append(Conv2dNormAct(input_shape[name].channels, width, 1, norm=norm))
            if depthwise_separable:
                self.fuse.append(SeparableConv2d(width + above, decoder_channels, 5, norm=norm))
            else:
                self.fuse.append(
                    nn.Sequential(
                        Conv2dNormAct(width + above, decoder_channels, 3, norm=norm),
                        Conv2dNormAct(decoder_channels, decoder_channels, 3, norm=norm),
                    )
                )
            above = decoder_channels
        c2_xavier_fill(self.project)
        c2_xavier_fill(self.fuse)

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        y = self.aspp(features[self.in_features[-1]])
        for name, project, fuse in zip(reversed(self.in_features[:-1]), self.project, self.fuse, strict=True):
            low = project(features[name])
            y = F.interpolate(y, size=low.shape[-2:], mode="bilinear", align_corners=False)
            y = fuse(torch.cat([low, y], dim=1))
        return y
