"""EfficientPS's 2-way FPN (Mohan & Valada, "EfficientPS: Efficient Panoptic Segmentation", IJCV 2021).

What this follows, source by source:

- Seed (``001_...txt``, the "Improved Efficient Panoptic Segmentation" README): EfficientPS has a
  shared EfficientNet backbone, a "2 way FPN" for semantically rich multi-scale features,
  depthwise-separable convs and Leaky ReLU (its instance head is SOLOv2). It gives no layer-level
  detail and no P64.
- The authors' mmdetection config (``configs/efficientPS_*_sample.py`` in DeepSceneSeg/EfficientPS):
  ``TWOWAYFPN`` with ``out_channels=256``, ``num_outs=4`` (outputs at strides 4, 8, 16, 32 only;
  RPN anchors at those strides) and ``norm_cfg=InPlaceABN(leaky_relu, 0.01)``, ``act_cfg=None``.
  In-place ABN is BatchNorm followed by the activation, computed in place; here that is
  ``norm`` (BN by default, ``"SyncBN"`` for iABN sync) followed by ``LeakyReLU(0.01)``.
- The same group's ``TWOWAYFPN`` neck (robot-learning-freiburg/EfficientLPS) for the wiring: two
  independent sets of 1x1 lateral convs (conv + norm + activation); the top-down branch adds the
  coarser running map resized by nearest neighbour, the bottom-up branch adds the finer running
  map resized (downsampled) by nearest neighbour to the next level's size; the two branches are
  summed per level and passed through the output conv; every conv weight is Xavier-uniform, bias 0.
  That neck's output conv is a plain 3x3 conv; EfficientPS's (paper and seed: depthwise-separable
  convs) is a 3x3 depthwise separable conv, used here: depthwise 3x3 + norm + act, then pointwise
  1x1 + norm + act (mmcv's ``DepthwiseSeparableConvModule`` with an activated norm).
- P64 is not part of EfficientPS; ``extra_level`` adds one for heads that want five levels
  (``"maxpool"``: mmdetection's default for ``num_outs=5``, a stride-2 subsampling of P32;
  ``"conv"``: a 3x3 stride-2 conv + norm + activation on P32).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.base import ShapeSpec
from ..layers import Conv2dNormAct, SeparableConv2d
from ._features import check_log2_contiguous, require_features, select_features

__all__ = ["TwoWayFPN"]

EXTRA_LEVELS = ("maxpool", "conv")

leaky_relu_001: Callable[[], nn.Module] = functools.partial(nn.LeakyReLU, 0.01)


class TwoWayFPN(nn.Module):
    """2-way FPN: a top-down and a bottom-up pathway over the backbone levels, summed per level.

    With ``L_i^td`` and ``L_i^bu`` the two 1x1 laterals (conv + norm + act) of input level ``i``
    (fine to coarse, strides ``s_i``)::

        TD_n = L_n^td,  TD_i = L_i^td + resize(TD_{i+1})     (coarse to fine, upsampling)
        BU_1 = L_1^bu,  BU_i = L_i^bu + resize(BU_{i-1})     (fine to coarse, downsampling)
        P_i  = SepConv3x3(TD_i + BU_i)                        named "p<log2 s_i>"

    where ``resize`` is nearest-neighbour interpolation to the exact size of the level it is
    added to (so any input size works). See the module docstring for the sources.

    Args:
        input_shape: ``{name: ShapeSpec}`` of the backbone.
        in_features: names of the inputs, fine to coarse, log2-contiguous strides
            (``res2``..``res5``: 4..32; EfficientNet-B5 channels 40, 64, 176, 2048).
        out_channels: channels of every lateral and output (256 in the paper).
        norm: normalisation after every conv (``"BN"`` default; ``"SyncBN"`` for the paper's
            iABN sync; ``"GN"``, ``"FrozenBN"``, ``""``).
        activation: factory of the activation after every norm (default ``LeakyReLU(0.01)``),
            or None.
        extra_level: None (EfficientPS: four outputs), ``"maxpool"`` or ``"conv"`` for one more
            level ``p<k+1>`` at twice the coarsest stride (see the module docstring).

    Shapes: ``forward({name: Tensor[B, C_name, h_s, w_s]})`` ->
    ``{"p<k>": Tensor[B, out_channels, h_{2^k}, w_{2^k}]}`` fine to coarse, each output at its
    input level's size; the extra level at ``ceil(h / 2)``.

    Raises:
        ValueError: unknown ``in_features`` / ``extra_level`` / ``norm``, strides not
            log2-contiguous, fewer than two levels, or non-positive ``out_channels``.
    """

    def __init__(
        self,
        input_shape: Mapping[str, ShapeSpec],
        in_features: Sequence[str] = ("res2", "res3", "res4", "res5"),
        out_channels: int = 256,
        norm: str = "BN",
        activation: Callable[[], nn.Module] | None = leaky_relu_001,
        extra_level: str | None = None,
    ) -> None:
        super().__init__()
        specs = select_features(input_shape, in_features, "TwoWayFPN")
        if len(specs) < 2:
            raise ValueError(f"TwoWayFPN: in_features needs at least two levels, got {tuple(in_features)}")
        strides = [s.stride for s in specs]
        check_log2_contiguous(strides, "TwoWayFPN")
        if out_channels <= 0:
            raise ValueError(f"TwoWayFPN: out_channels must be positive, got {out_channels}")
        if extra_level is not None and extra_level not in EXTRA_LEVELS:
            raise ValueError(f"TwoWayFPN: unknown extra_level {extra_level!r}; expected None or one of {EXTRA_LEVELS}")

        self.in_features = tuple(in_features)
        self.out_channels = out_channels
        self.extra_level = extra_level

        def lateral(c: int) -> nn.Module:
            return Conv2dNormAct(c, out_channels, 1, norm=norm, activation=activation)

        self.top_down_laterals = nn.ModuleList(lateral(s.channels) for s in specs)
        self.bottom_up_laterals = nn.ModuleList(lateral(s.channels) for s in specs)
        self.output_convs = nn.ModuleList(
            SeparableConv2d(out_channels, out_channels, 3, norm=norm, activation=activation) for _ in specs
        )
        self._out_shapes = {f"p{int(math.log2(s))}": ShapeSpec(out_channels, s) for s in strides}
        self._extra_name: str | None = None
        self.extra_conv = None
        if extra_level is not None:
            stage = int(math.log2(strides[-1])) + 1
            self._extra_name = f"p{stage}"
            self._out_shapes[self._extra_name] = ShapeSpec(out_channels, 2**stage)
            if extra_level == "conv":
                self.extra_conv = Conv2dNormAct(
                    out_channels, out_channels, 3, stride=2, norm=norm, activation=activation
                )
        self._size_divisibility = strides[-1]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    @property
    def size_divisibility(self) -> int:
        """The largest input stride (32 for ``res2``..``res5``)."""
        return self._size_divisibility

    def output_shape(self) -> dict[str, ShapeSpec]:
        """``{"p<k>": ShapeSpec(out_channels, 2**k)}`` for every output, fine to coarse."""
        return dict(self._out_shapes)

    def forward(self, features: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Fuse the backbone levels both ways.

        Args:
            features: ``{name: Tensor[B, C_name, h, w]}`` holding every name of ``in_features``.

        Returns:
            ``{"p<k>": Tensor[B, out_channels, h_k, w_k]}``, fine to coarse (see the class docstring).
        """
        require_features(features, self.in_features, "TwoWayFPN")
        xs = [features[f] for f in self.in_features]
        n = len(xs)
        top_down = [conv(x) for conv, x in zip(self.top_down_laterals, xs)]
        bottom_up = [conv(x) for conv, x in zip(self.bottom_up_laterals, xs)]
        for i in range(n - 2, -1, -1):
            top_down[i] = top_down[i] + F.interpolate(top_down[i + 1], size=top_down[i].shape[-2:], mode="nearest")
        for i in range(1, n):
            bottom_up[i] = bottom_up[i] + F.interpolate(bottom_up[i - 1], size=bottom_up[i].shape[-2:], mode="nearest")
        outs = [conv(td + bu) for conv, td, bu in zip(self.output_convs, top_down, bottom_up)]
        if self._extra_name is not None:
            if self.extra_conv is not None:
                outs.append(self.extra_conv(outs[-1]))
            else:
                outs.append(F.max_pool2d(outs[-1], kernel_size=1, stride=2))
        return dict(zip(self._out_shapes, outs))
