"""EfficientNet-B0..B5 backbones built exactly as ``torchvision.models.efficientnet`` (same module names).

The network is torchvision's ``features`` (``features.0`` the stem conv, ``features.1``..``features.7`` the
MBConv stages, ``features.8`` the final 1x1 conv), with its width / depth multipliers, ``_make_divisible``
channel rounding, stochastic-depth probabilities and BatchNorm settings (eps 1e-5 and momentum 0.1 for B0-B4;
eps 1e-3 and momentum 0.01 for B5, as torchvision), so a torchvision state dict loads with the same keys
(the classifier ``classifier.*`` is not built).

Features, named like ResNet's for a uniform contract (as EfficientPS uses them):

======  ======  ==============================================  ===================
name    stride  module                                          channels (B0)
======  ======  ==============================================  ===================
res2    4       ``features.2`` (last block of stride 4)         24
res3    8       ``features.3`` (last block of stride 8)         40
res4    16      ``features.5`` (last block of stride 16)        112
res5    32      ``features.8`` (the final 1x1 conv + BN + SiLU)  1280
======  ======  ==============================================  ===================

``se=False`` builds EfficientPS's variant without squeeze-and-excitation: the SE module of every block is
an ``nn.Identity`` at the same index (``block.2``), so every other key still matches torchvision's; when
loading torchvision weights into it, the SE keys (``...block.2.fc1/fc2.*``) are ignored (see
:meth:`EfficientNet.is_ignored_weight_key`), i.e. an ImageNet checkpoint initialises the SE-free network.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..layers import get_norm
from .base import Backbone, ShapeSpec
from .resnet import check_freeze_at, check_norm, check_out_features, freeze_module

__all__ = ["EFFICIENTNET_VARIANTS", "EfficientNet", "MBConv", "SqueezeExcitation", "StochasticDepth"]

#: (width multiplier, depth multiplier, BN eps, BN momentum) of each variant, as torchvision.
EFFICIENTNET_VARIANTS: dict[str, tuple[float, float, float, float]] = {
    "b0": (1.0, 1.0, 1e-5, 0.1),
    "b1": (1.0, 1.1, 1e-5, 0.1),
    "b2": (1.1, 1.2, 1e-5, 0.1),
    "b3": (1.2, 1.4, 1e-5, 0.1),
    "b4": (1.4, 1.8, 1e-5, 0.1),
    "b5": (1.6, 2.2, 1e-3, 0.01),
}

#: B0's stages (Table 1 of the EfficientNet paper): expand ratio, kernel, stride, in, out, layers.
_B0_STAGES = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)

#: Index in ``features`` of each returned feature, and the ``features`` indices of each freeze stage.
_FEATURE_INDEX = {"res2": 2, "res3": 3, "res4": 5, "res5": 8}
_FREEZE_GROUPS = ((0,), (1, 2), (3,), (4, 5), (6, 7, 8))  # stem, res2, res3, res4, res5


def _make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``v`` to a multiple of ``divisor`` without going down by more than 10% (torchvision / TF)."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


@dataclass
class _MBConvConfig:
    expand_ratio: float
    kernel: int
    stride: int
    input_channels: int
    out_channels: int
    num_layers: int


def _stage_configs(width_mult: float, depth_mult: float) -> list[_MBConvConfig]:
    return [
        _MBConvConfig(
            e, k, s, _make_divisible(cin * width_mult), _make_divisible(cout * width_mult), math.ceil(n * depth_mult)
        )
        for e, k, s, cin, cout, n in _B0_STAGES
    ]


class _ConvNormAct(nn.Sequential):
    """torchvision's ``Conv2dNormActivation``: conv (no bias) -> norm -> optional in-place activation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        norm_layer: Callable[[int], nn.Module],
        *,
        stride: int = 1,
        groups: int = 1,
        activation: bool = True,
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False
            ),
            norm_layer(out_channels),
        ]
        if activation:
            layers.append(nn.SiLU(inplace=True))
        super().__init__(*layers)


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation (torchvision's, SiLU inside): ``x * sigmoid(fc2(silu(fc1(avgpool(x)))))``.

    ``forward``: Tensor[B, C, H, W] -> Tensor[B, C, H, W].
    """

    def __init__(self, input_channels: int, squeeze_channels: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(input_channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, input_channels, 1)
        self.activation = nn.SiLU(inplace=True)
        self.scale_activation = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return scale * x


class StochasticDepth(nn.Module):
    """Drop the whole residual branch of each sample with probability ``p`` in training ("row" mode).

    Kept samples are scaled by ``1 / (1 - p)``; identity in eval mode or when ``p == 0``.
    ``forward``: Tensor[B, ...] -> Tensor[B, ...].
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"StochasticDepth: drop probability must be in [0, 1]; got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        noise = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device)
        noise.bernoulli_(survival)
        if survival > 0.0:
            noise.div_(survival)
        return x * noise

    def extra_repr(self) -> str:
        return f"p={self.p}"


class MBConv(nn.Module):
    """Inverted residual block: [1x1 expand] -> kxk depthwise -> SE -> 1x1 project (+ stochastic-depth residual).

    ``block`` holds the layers at torchvision's indices (the SE module, or ``nn.Identity`` when ``se=False``,
    at index 2 or 1 depending on whether there is an expansion conv). ``forward``: Tensor[B, C_in, H, W] ->
    Tensor[B, C_out, H / stride, W / stride].
    """

    def __init__(
        self,
        cnf: _MBConvConfig,
        stochastic_depth_prob: float,
        norm_layer: Callable[[int], nn.Module],
        *,
        se: bool = True,
    ) -> None:
        super().__init__()
        self.use_res_connect = cnf.stride == 1 and cnf.input_channels == cnf.out_channels
        expanded = _make_divisible(cnf.input_channels * cnf.expand_ratio)
        layers: list[nn.Module] = []
        if expanded != cnf.input_channels:
            layers.append(_ConvNormAct(cnf.input_channels, expanded, 1, norm_layer))
        layers.append(_ConvNormAct(expanded, expanded, cnf.kernel, norm_layer, stride=cnf.stride, groups=expanded))
        layers.append(SqueezeExcitation(expanded, max(1, cnf.input_channels // 4)) if se else nn.Identity())
        layers.append(_ConvNormAct(expanded, cnf.out_channels, 1, norm_layer, activation=False))
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob)
        self.out_channels = cnf.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        if self.use_res_connect:
            out = self.stochastic_depth(out) + x
        return out


class EfficientNet(Backbone):
    """EfficientNet-B0..B5 backbone returning ``res2``..``res5`` (see the module docstring for the mapping).

    Args:
        variant: ``"b0"`` .. ``"b5"``.
        norm: ``"BN"``, ``"FrozenBN"``, ``"SyncBN"`` or ``"GN"`` for every normalisation layer (with the
            variant's eps; BN / SyncBN with its momentum).
        freeze_at: detectron2's semantics over the groups stem (``features.0``), res2 (``features.1-2``),
            res3 (``features.3``), res4 (``features.4-5``), res5 (``features.6-8``): 0 nothing frozen, 1 the
            stem, 2 the stem and res2, ..., 5 everything. Frozen parameters get ``requires_grad=False`` and their
            BatchNorms become FrozenBatchNorm2d.
        out_features: subset of ``res2``..``res5`` (default all); ``features`` entries after the last requested
            one are not built.
        se: keep squeeze-and-excitation (torchvision's network). ``False``: EfficientPS's variant without it.
        stochastic_depth_prob: the largest drop probability; block ``i`` of ``n`` uses
            ``stochastic_depth_prob * i / n`` (torchvision: 0.2). Only active in training mode.

    ``forward(x)``: x Tensor[B, 3, H, W] -> ``{name: Tensor[B, C, ceil(H / s), ceil(W / s)]}`` with ``C, s`` from
    :meth:`output_shape` (B0: res2 (24, 4), res3 (40, 8), res4 (112, 16), res5 (1280, 32)).
    """

    def __init__(
        self,
        variant: str = "b0",
        *,
        norm: str = "BN",
        freeze_at: int = 0,
        out_features: Sequence[str] | None = None,
        se: bool = True,
        stochastic_depth_prob: float = 0.2,
    ) -> None:
        super().__init__()
        if variant not in EFFICIENTNET_VARIANTS:
            raise ValueError(
                f"EfficientNet: unknown variant {variant!r}; expected one of {', '.join(EFFICIENTNET_VARIANTS)}"
            )
        owner = f"EfficientNet-{variant.upper()}"
        check_norm(norm, owner)
        check_freeze_at(freeze_at, owner)
        self._out_features = check_out_features(out_features, owner)
        if not 0.0 <= stochastic_depth_prob <= 1.0:
            raise ValueError(f"{owner}: stochastic_depth_prob must be in [0, 1]; got {stochastic_depth_prob}")
        self.variant = variant
        self.norm = norm
        self.se = bool(se)
        width_mult, depth_mult, eps, momentum = EFFICIENTNET_VARIANTS[variant]

        def norm_layer(channels: int) -> nn.Module:
            return get_norm(norm, channels, eps=eps, momentum=momentum)

        configs = _stage_configs(width_mult, depth_mult)
        layers: list[nn.Module] = [_ConvNormAct(3, configs[0].input_channels, 3, norm_layer, stride=2)]
        total_blocks = sum(c.num_layers for c in configs)
        block_id = 0
        for cnf in configs:
            stage: list[nn.Module] = []
            for j in range(cnf.num_layers):
                block_cnf = copy.copy(cnf)
                if j > 0:
                    block_cnf.input_channels, block_cnf.stride = block_cnf.out_channels, 1
                sd_prob = stochastic_depth_prob * float(block_id) / total_blocks
                stage.append(MBConv(block_cnf, sd_prob, norm_layer, se=self.se))
                block_id += 1
            layers.append(nn.Sequential(*stage))
        last_in = configs[-1].out_channels
        layers.append(_ConvNormAct(last_in, 4 * last_in, 1, norm_layer))

        channels = {
            "res2": configs[1].out_channels,
            "res3": configs[2].out_channels,
            "res4": configs[4].out_channels,
            "res5": 4 * last_in,
        }
        strides = {"res2": 4, "res3": 8, "res4": 16, "res5": 32}
        self._shapes = {f: ShapeSpec(channels[f], strides[f]) for f in self._out_features}
        self._num_built = _FEATURE_INDEX[self._out_features[-1]] + 1
        self.features = nn.Sequential(*layers[: self._num_built])

        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        self.freeze(freeze_at)

    def freeze(self, freeze_at: int = 0) -> EfficientNet:
        """Freeze the first ``freeze_at`` groups (stem, res2, res3, res4, res5); see the class docstring.

        Returns ``self``.
        """
        check_freeze_at(freeze_at, f"EfficientNet-{self.variant.upper()}")
        for group in _FREEZE_GROUPS[:freeze_at]:
            for index in group:
                if index < self._num_built:
                    freeze_module(self.features, str(index))
        return self

    def is_ignored_weight_key(self, key: str) -> bool:
        """Whether a key of a torchvision state dict has no counterpart here by design.

        True for the classifier (``classifier.*``), for ``features`` entries not built because of
        ``out_features``, and, with ``se=False``, for the squeeze-and-excitation parameters.
        """
        if key.startswith("classifier."):
            return True
        parts = key.split(".")
        if len(parts) > 1 and parts[0] == "features" and parts[1].isdigit() and int(parts[1]) >= self._num_built:
            return True
        if not self.se and len(parts) >= 6 and parts[3] == "block" and parts[5] in ("fc1", "fc2"):
            return True
        return False

    def output_shape(self) -> dict[str, ShapeSpec]:
        """``{name: ShapeSpec(channels, stride)}`` of the returned features, in stride order."""
        return dict(self._shapes)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Args: x (Tensor[B, 3, H, W]), H and W at least :attr:`size_divisibility`.

        Returns: ``{name: Tensor[B, C, ceil(H / stride), ceil(W / stride)]}`` for each of ``out_features``.
        """
        self.check_input(x)
        wanted = {_FEATURE_INDEX[f]: f for f in self._out_features}
        outputs: dict[str, torch.Tensor] = {}
        for index, module in enumerate(self.features):
            x = module(x)
            if index in wanted:
                outputs[wanted[index]] = x
        return outputs

    def extra_repr(self) -> str:
        return f"variant={self.variant!r}, norm={self.norm!r}, se={self.se}, out_features={self._out_features}"
