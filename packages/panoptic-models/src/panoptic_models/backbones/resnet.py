"""ResNet-18/34/50/101 backbones with torchvision's module names ("v1.5": stride on the 3x3 conv).

The modules and parameters are named exactly as in ``torchvision.models.resnet`` (``conv1``, ``bn1``,
``layer1``..``layer4``, ``layerN.M.downsample.0/.1``, ...), so a torchvision state dict loads with the same
keys (the classifier ``fc.*`` is not built). Features ``res2``..``res5`` are the outputs of
``layer1``..``layer4``.

On top of torchvision's network: any normalisation of :func:`panoptic_models.layers.get_norm`, detectron2's
``freeze_at``, dilation of res4 / res5 (torchvision's ``replace_stride_with_dilation``), DeepLab's res5
multi-grid, and the deep "DeepLab" stem of Panoptic-DeepLab's ResNet-50-Beta ("R52").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..layers import convert_frozen_batchnorm, get_norm
from .base import Backbone, ShapeSpec

__all__ = ["RESNET_DEPTHS", "BasicBlock", "Bottleneck", "ResNet"]

#: Blocks per stage (layer1..layer4) and block type of each supported depth, as torchvision.
RESNET_DEPTHS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
}

#: Normalisations a backbone accepts (see :func:`panoptic_models.layers.get_norm`).
BACKBONE_NORMS = ("BN", "FrozenBN", "SyncBN", "GN")

_STAGES = ("res2", "res3", "res4", "res5")


def conv3x3(in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    """3x3 conv, no bias, 'same' padding for its dilation (torchvision's ``conv3x3``)."""
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """1x1 conv, no bias (torchvision's ``conv1x1``)."""
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection (ResNet-18/34).

    Unlike torchvision's, it accepts ``dilation > 1`` (both 3x3 convs dilated), so ResNet-18/34 can be
    used at output stride 16 or 8. ``forward``: Tensor[B, C_in, H, W] -> Tensor[B, planes, H / stride, W / stride].
    """

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        dilation: int = 1,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride, dilation)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes, 1, dilation)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided, dilated) -> 1x1 convs with a residual connection (ResNet-50/101, "v1.5").

    ``forward``: Tensor[B, C_in, H, W] -> Tensor[B, 4 * planes, H / stride, W / stride].
    """

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        dilation: int = 1,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = norm_layer(planes)
        self.conv2 = conv3x3(planes, planes, stride, dilation)
        self.bn2 = norm_layer(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def check_norm(norm: str, owner: str) -> None:
    """Raise ValueError unless ``norm`` is one of :data:`BACKBONE_NORMS`."""
    if norm not in BACKBONE_NORMS:
        raise ValueError(f"{owner}: unknown norm {norm!r}; expected one of {', '.join(map(repr, BACKBONE_NORMS))}")


def check_out_features(out_features: Sequence[str] | None, owner: str) -> tuple[str, ...]:
    """Validate ``out_features`` (a non-empty subset of ``res2``..``res5``); returned in stride order."""
    if out_features is None:
        return _STAGES
    if isinstance(out_features, str):
        out_features = [out_features]
    unknown = [f for f in out_features if f not in _STAGES]
    if unknown or not out_features:
        raise ValueError(
            f"{owner}: out_features must be a non-empty subset of {', '.join(_STAGES)}; got {list(out_features)}"
        )
    return tuple(f for f in _STAGES if f in out_features)


def check_freeze_at(freeze_at: int, owner: str) -> None:
    """Raise ValueError unless ``0 <= freeze_at <= 5``."""
    if isinstance(freeze_at, bool) or not isinstance(freeze_at, int) or not 0 <= freeze_at <= 5:
        raise ValueError(
            f"{owner}: freeze_at must be an int in 0..5 (0: nothing, 1: stem, 2: stem + res2, ..., 5: all); "
            f"got {freeze_at!r}"
        )


def freeze_module(parent: nn.Module, name: str) -> None:
    """Freeze ``parent.<name>``: parameters get ``requires_grad=False``, BatchNorms become FrozenBatchNorm2d."""
    module = getattr(parent, name)
    for p in module.parameters():
        p.requires_grad_(False)
    setattr(parent, name, convert_frozen_batchnorm(module))


class ResNet(Backbone):
    """ResNet backbone returning ``res2``..``res5`` (outputs of ``layer1``..``layer4``).

    Args:
        depth: 18, 34, 50 or 101.
        norm: ``"BN"``, ``"FrozenBN"``, ``"SyncBN"`` or ``"GN"`` for every normalisation layer.
        freeze_at: detectron2's semantics: 0 nothing frozen, 1 the stem, 2 the stem and res2, ..., 5 everything.
            Frozen parameters get ``requires_grad=False`` and the BatchNorms of frozen stages become
            :class:`~panoptic_models.layers.FrozenBatchNorm2d` (same state-dict keys).
        out_features: the features :meth:`forward` returns, a subset of ``res2``..``res5`` (default all).
            Stages after the last requested one are not built (as detectron2), so no parameter is unused.
        stem: ``"basic"`` (torchvision: 7x7 conv stride 2, 64 channels, 3x3 max-pool stride 2) or
            ``"deeplab"`` (Panoptic-DeepLab's R52: three 3x3 convs 3->64 (stride 2), 64->64, 64->128, each
            followed by norm + ReLU, then the max-pool; named ``conv1/bn1``, ``conv2/bn2``, ``conv3/bn3``;
            ``layer1`` then takes 128 channels).
        res4_dilation: 1 or 2. 2 replaces res4's stride by dilation (torchvision's
            ``replace_stride_with_dilation[1]``): res4 and res5 keep stride 8.
        res5_dilation: dilation of res5: ``res4_dilation`` (res5 strided) or ``2 * res4_dilation`` (res5's
            stride replaced by dilation). Output stride 16: ``res5_dilation=2``; output stride 8:
            ``res4_dilation=2, res5_dilation=4``. As torchvision, the first block of a dilated stage keeps the
            previous stage's dilation and the others use the stage's.
        res5_multi_grid: DeepLab's multi-grid, e.g. ``(1, 2, 4)``: block ``i`` of res5 uses dilation
            ``res5_dilation * res5_multi_grid[i]`` (the first block included, as DeepLab / detectron2).
            One entry per res5 block (3 for every supported depth).

    ``forward(x)``: x Tensor[B, 3, H, W] (any memory format) -> ``{name: Tensor[B, C, ceil(H / s), ceil(W / s)]}``
    with ``C, s`` from :meth:`output_shape`: res2 (64 or 256, 4), res3 (128 or 512, 8), res4 (256 or 1024, 16),
    res5 (512 or 2048, 32) for basic / bottleneck blocks, strides lowered by dilation.
    """

    def __init__(
        self,
        depth: int = 50,
        *,
        norm: str = "BN",
        freeze_at: int = 0,
        out_features: Sequence[str] | None = None,
        stem: str = "basic",
        res4_dilation: int = 1,
        res5_dilation: int = 1,
        res5_multi_grid: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        owner = f"ResNet-{depth}"
        if depth not in RESNET_DEPTHS:
            raise ValueError(f"ResNet: unsupported depth {depth!r}; expected one of {sorted(RESNET_DEPTHS)}")
        check_norm(norm, owner)
        check_freeze_at(freeze_at, owner)
        self._out_features = check_out_features(out_features, owner)
        if stem not in ("basic", "deeplab"):
            raise ValueError(f"{owner}: stem must be 'basic' or 'deeplab'; got {stem!r}")
        if res4_dilation not in (1, 2):
            raise ValueError(f"{owner}: res4_dilation must be 1 or 2; got {res4_dilation!r}")
        if res5_dilation not in (res4_dilation, 2 * res4_dilation):
            raise ValueError(
                f"{owner}: with res4_dilation={res4_dilation}, res5_dilation must be {res4_dilation} (res5 strided) "
                f"or {2 * res4_dilation} (res5's stride replaced by dilation); got {res5_dilation!r}"
            )
        kind, blocks = RESNET_DEPTHS[depth]
        block: type[BasicBlock | Bottleneck] = BasicBlock if kind == "basic" else Bottleneck
        if res5_multi_grid is not None:
            res5_multi_grid = tuple(res5_multi_grid)
            if len(res5_multi_grid) != blocks[3] or not all(isinstance(g, int) and g >= 1 for g in res5_multi_grid):
                raise ValueError(
                    f"{owner}: res5_multi_grid needs {blocks[3]} positive ints (one per res5 block); "
                    f"got {res5_multi_grid!r}"
                )
        self.depth = depth
        self.norm = norm
        self.stem_type = stem

        def norm_layer(channels: int) -> nn.Module:
            return get_norm(norm, channels)

        # Stem: names as torchvision's (conv1, bn1, relu, maxpool); the deep stem adds conv2/bn2, conv3/bn3.
        if stem == "basic":
            self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
            self.bn1 = norm_layer(64)
            stem_channels = 64
        else:
            self.conv1 = conv3x3(3, 64, stride=2)
            self.bn1 = norm_layer(64)
            self.conv2 = conv3x3(64, 64)
            self.bn2 = norm_layer(64)
            self.conv3 = conv3x3(64, 128)
            self.bn3 = norm_layer(128)
            stem_channels = 128
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        # Stages, built as torchvision's _make_layer; only up to the last requested feature.
        num_stages = _STAGES.index(self._out_features[-1]) + 1
        inplanes, dilation, stride_total = stem_channels, 1, 4
        shapes: dict[str, ShapeSpec] = {}
        for i in range(num_stages):
            planes = 64 * 2**i
            stride = 1 if i == 0 else 2
            target_dilation = {2: res4_dilation, 3: res5_dilation}.get(i, 1)
            previous_dilation = dilation
            if target_dilation != dilation:  # this stage's stride is replaced by dilation
                dilation, stride = target_dilation, 1
            stride_total *= stride
            if res5_multi_grid is not None and i == 3:
                dilations = [res5_dilation * g for g in res5_multi_grid]
            else:
                dilations = [previous_dilation] + [dilation] * (blocks[i] - 1)
            downsample = None
            if stride != 1 or inplanes != planes * block.expansion:
                downsample = nn.Sequential(
                    conv1x1(inplanes, planes * block.expansion, stride), norm_layer(planes * block.expansion)
                )
            layers = [block(inplanes, planes, stride, downsample, dilations[0], norm_layer)]
            inplanes = planes * block.expansion
            layers += [block(inplanes, planes, 1, None, d, norm_layer) for d in dilations[1:]]
            self.add_module(f"layer{i + 1}", nn.Sequential(*layers))
            shapes[_STAGES[i]] = ShapeSpec(inplanes, stride_total)
        self._stage_names = _STAGES[:num_stages]
        self._shapes = {name: shapes[name] for name in self._out_features}

        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        self.freeze(freeze_at)

    def _stem_module_names(self) -> tuple[str, ...]:
        if self.stem_type == "basic":
            return ("conv1", "bn1")
        return ("conv1", "bn1", "conv2", "bn2", "conv3", "bn3")

    def freeze(self, freeze_at: int = 0) -> ResNet:
        """Freeze the stem (``freeze_at >= 1``) and stages res2 .. res``freeze_at`` (detectron2's semantics).

        Frozen parameters get ``requires_grad=False``; frozen BatchNorms become FrozenBatchNorm2d with their
        statistics. Stages that are not built (after the last ``out_features``) are skipped. Returns ``self``.
        """
        check_freeze_at(freeze_at, f"ResNet-{self.depth}")
        if freeze_at >= 1:
            for name in self._stem_module_names():
                freeze_module(self, name)
        for i, _ in enumerate(self._stage_names[: max(freeze_at - 1, 0)]):
            freeze_module(self, f"layer{i + 1}")
        return self

    def is_ignored_weight_key(self, key: str) -> bool:
        """Whether a key of a torchvision state dict has no counterpart here by design.

        True for the classifier (``fc.*``) and for the stages not built because of ``out_features``.
        """
        if key.startswith("fc."):
            return True
        return any(key.startswith(f"layer{i + 1}.") for i in range(len(self._stage_names), 4))

    def output_shape(self) -> dict[str, ShapeSpec]:
        """``{name: ShapeSpec(channels, stride)}`` of the returned features, in stride order."""
        return dict(self._shapes)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Args: x (Tensor[B, 3, H, W]), H and W at least :attr:`size_divisibility`.

        Returns: ``{name: Tensor[B, C, ceil(H / stride), ceil(W / stride)]}`` for each of ``out_features``.
        """
        self.check_input(x)
        x = self.relu(self.bn1(self.conv1(x)))
        if self.stem_type == "deeplab":
            x = self.relu(self.bn2(self.conv2(x)))
            x = self.relu(self.bn3(self.conv3(x)))
        x = self.maxpool(x)
        outputs: dict[str, torch.Tensor] = {}
        for i, name in enumerate(self._stage_names):
            x = getattr(self, f"layer{i + 1}")(x)
            if name in self._shapes:
                outputs[name] = x
        return outputs

    def extra_repr(self) -> str:
        return f"depth={self.depth}, norm={self.norm!r}, stem={self.stem_type!r}, out_features={self._out_features}"
