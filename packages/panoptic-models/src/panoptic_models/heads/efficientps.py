"""EfficientPS's semantic head (Mohan & Valada, IJCV 2021, Sec. 3.3): DPC, LSFE and MC modules.

Facts from the paper and the authors' ``EfficientPSSemanticHead`` (DeepSceneSeg/EfficientPS):

- Every conv is a 3x3 depthwise-separable conv (depthwise + norm + act, pointwise + norm + act)
  except DPC's 1x1 fusion conv (conv + norm + act) and the final 1x1 classifier (conv with bias,
  Kaiming init). The paper's norm + act is iABN sync with LeakyReLU(0.01); here ``norm`` (BN or
  SyncBN) followed by LeakyReLU(0.01), which computes the same function (iABN only saves memory).
- DPC (Chen et al., 2018): a 3x3 separable conv with dilation (1, 6), then four branches on its
  output with dilations (1, 1), (6, 21), (18, 15) and (6, 3), the last one applied to the
  (18, 15) branch's output; the five maps (all ``in_channels`` wide) are concatenated and fused
  by a 1x1 conv to ``channels``.
- LSFE: two 3x3 separable convs (``channels``). MC: two 3x3 separable convs, then a 2x bilinear
  upsampling.
- Wiring (inputs P4, P8, P16, P32 of the 2-way FPN): D32 = DPC(P32), D16 = DPC(P16);
  M16 = MC(D16 + up(D32)); L8 = LSFE(P8) + up(M16); M8 = MC(L8); L4 = LSFE(P4) + up(M8);
  logits = Conv1x1(concat(L4, up(L8), up(D16), up(D32))) at 1/4, upsampled bilinearly to the
  input. Every ``up`` is bilinear (``align_corners=False``) to the exact size of the map it joins.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.base import ShapeSpec
from ..layers import c2_msra_fill, get_norm
from ..necks._features import check_log2_contiguous, require_features, select_features

__all__ = ["DPC", "LSFE", "MC", "EfficientPSSemanticHead"]

leaky_relu_001: Callable[[], nn.Module] = functools.partial(nn.LeakyReLU, 0.01)


def _norm_act(norm: str, channels: int) -> list[nn.Module]:
    return [get_norm(norm, channels), leaky_relu_001()] if norm else [leaky_relu_001()]


class SeparableConvNormAct(nn.Sequential):
    """3x3 depthwise conv (dilation (dh, dw), 'same' padding) + norm + LeakyReLU(0.01), then a 1x1
    pointwise conv + norm + LeakyReLU(0.01): mmcv's ``DepthwiseSeparableConvModule`` with iABN.

    Shapes: Tensor[B, in_channels, H, W] -> Tensor[B, out_channels, H, W].
    """

    def __init__(self, in_channels: int, out_channels: int, dilation: tuple[int, int] = (1, 1), norm: str = "BN"):
        dh, dw = (int(d) for d in dilation)
        bias = norm == ""
        super().__init__(
            nn.Conv2d(in_channels, in_channels, 3, padding=(dh, dw), dilation=(dh, dw), groups=in_channels, bias=bias),
            *_norm_act(norm, in_channels),
            nn.Conv2d(in_channels, out_channels, 1, bias=bias),
            *_norm_act(norm, out_channels),
        )


class DPC(nn.Module):
    """Dense prediction cell as EfficientPS uses it (see the module docstring).

    Args:
        in_channels: channels of the input and of the five separable convs (256).
        channels: output channels (128).
        dilations: the five (dh, dw) dilations, in the order (first conv, branch 1, 2, 3, branch 3's follower).
        norm: see :func:`panoptic_models.layers.get_norm`.

    Shapes: Tensor[B, in_channels, H, W] -> Tensor[B, channels, H, W].
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        dilations: Sequence[tuple[int, int]] = ((1, 6), (1, 1), (6, 21), (18, 15), (6, 3)),
        norm: str = "BN",
    ) -> None:
        super().__init__()
        if len(dilations) != 5:
            raise ValueError(f"DPC: dilations needs five (dh, dw) pairs, got {tuple(dilations)}")
        self.convs = nn.ModuleList(SeparableConvNormAct(in_channels, in_channels, d, norm) for d in dilations)
        self.fuse = nn.Sequential(nn.Conv2d(5 * in_channels, channels, 1, bias=norm == ""), *_norm_act(norm, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs[0](x)
        b1, b2, b3 = self.convs[1](x), self.convs[2](x), self.convs[3](x)
        b4 = self.convs[4](b3)
        return self.fuse(torch.cat([x, b1, b2, b3, b4], dim=1))


class LSFE(nn.Sequential):
    """Large-scale feature extractor: two 3x3 separable convs. Tensor[B, C_in, H, W] -> Tensor[B, channels, H, W]."""

    def __init__(self, in_channels: int, channels: int, norm: str = "BN") -> None:
        super().__init__(SeparableConvNormAct(in_channels, channels, norm=norm),
                         SeparableConvNormAct(channels, channels, norm=norm))  # fmt: skip


class MC(nn.Module):
    """Mismatch correction: two 3x3 separable convs, then bilinear 2x upsampling (``align_corners=False``).

    Shapes: Tensor[B, C_in, H, W] -> Tensor[B, channels, 2H, 2W].
    """

    def __init__(self, in_channels: int, channels: int, norm: str = "BN") -> None:
        super().__init__()
        self.convs = LSFE(in_channels, channels, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs(x)
        return F.interpolate(x, size=(2 * x.shape[-2], 2 * x.shape[-1]), mode="bilinear", align_corners=False)


def _resize(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if x.shape[-2:] == like.shape[-2:]:
        return x
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


class EfficientPSSemanticHead(nn.Module):
    """EfficientPS's semantic head on the four 2-way FPN levels (see the module docstring).

    Args:
        input_shape: ``{name: ShapeSpec}`` of the 2-way FPN.
        in_features: the four levels, fine to coarse (``p2``..``p5``: strides 4..32).
        num_classes: number of semantic classes (things and stuff).
        channels: DPC / LSFE / MC output channels (128).
        dilations: DPC's dilations.
        norm: normalisation (BN / SyncBN for iABN sync).

    Shapes: ``forward({name: Tensor[B, C, h_s, w_s]}, output_size)`` -> Tensor[B, num_classes, *output_size]
    (logits at 1/4 upsampled bilinearly; EfficientPS upsamples by exactly 4, the same for inputs
    padded to a multiple of 4).

    Raises:
        ValueError: not four log2-contiguous input levels, or a non-positive ``num_classes``.
    """

    def __init__(
        self,
        input_shape: Mapping[str, ShapeSpec],
        in_features: Sequence[str],
        num_classes: int,
        channels: int = 128,
        dilations: Sequence[tuple[int, int]] = ((1, 6), (1, 1), (6, 21), (18, 15), (6, 3)),
        norm: str = "BN",
    ) -> None:
        super().__init__()
        specs = select_features(input_shape, in_features, "EfficientPSSemanticHead")
        if len(specs) != 4:
            raise ValueError(f"EfficientPSSemanticHead: needs four levels (P4..P32), got {tuple(in_features)}")
        check_log2_contiguous([s.stride for s in specs], "EfficientPSSemanticHead")
        if num_classes <= 0:
            raise ValueError(f"EfficientPSSemanticHead: num_classes must be positive, got {num_classes}")
        self.in_features = tuple(in_features)
        c4, c8, c16, c32 = (s.channels for s in specs)
        self.dpc32 = DPC(c32, channels, dilations, norm)
        self.dpc16 = DPC(c16, channels, dilations, norm)
        self.mc16 = MC(channels, channels, norm)
        self.lsfe8 = LSFE(c8, channels, norm)
        self.mc8 = MC(channels, channels, norm)
        self.lsfe4 = LSFE(c4, channels, norm)
        self.predictor = nn.Conv2d(4 * channels, num_classes, 1)
        c2_msra_fill(self)  # mmcv's kaiming_init (fan_out, relu, normal; bias 0) of every ConvModule and the classifier

    def forward(self, features: Mapping[str, torch.Tensor], output_size: tuple[int, int]) -> torch.Tensor:
        require_features(features, self.in_features, "EfficientPSSemanticHead")
        p4, p8, p16, p32 = (features[f] for f in self.in_features)
        d32, d16 = self.dpc32(p32), self.dpc16(p16)
        m16 = self.mc16(d16 + _resize(d32, d16))
        l8 = self.lsfe8(p8)
        l8 = l8 + _resize(m16, l8)
        m8 = self.mc8(l8)
        l4 = self.lsfe4(p4)
        l4 = l4 + _resize(m8, l4)
        x = torch.cat([l4, _resize(l8, l4), _resize(d16, l4), _resize(d32, l4)], dim=1)
        logits = self.predictor(x)
        return F.interpolate(logits, size=tuple(output_size), mode="bilinear", align_corners=False)
