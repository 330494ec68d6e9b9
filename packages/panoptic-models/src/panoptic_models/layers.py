"""Layers shared by backbones, necks and heads: normalisation choice, conv + norm + activation."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = [
    "NORMS",
    "Conv2dNormAct",
    "FrozenBatchNorm2d",
    "GroupNorm",
    "SeparableConv2d",
    "c2_msra_fill",
    "c2_xavier_fill",
    "convert_frozen_batchnorm",
    "get_norm",
]

NORMS = ("BN", "FrozenBN", "SyncBN", "GN", "")


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d with fixed statistics and affine parameters (buffers, never trained).

    Same state_dict keys as ``nn.BatchNorm2d`` (``weight``, ``bias``, ``running_mean``,
    ``running_var``) so torchvision weights load into it; computes
    ``x * weight / sqrt(var + eps) + (bias - mean * weight / sqrt(var + eps))``.
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        state_dict.pop(prefix + "num_batches_tracked", None)  # BatchNorm2d checkpoints carry it
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.view(1, -1, 1, 1).to(x.dtype) + shift.view(1, -1, 1, 1).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


class GroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` that also takes a single image whose groups hold one value each.

    torch refuses the one input where every group of the batch holds a single value (one image,
    ``channels == groups``, a 1 x 1 map, e.g. P7 of a small image with a narrow FPN), although
    the formula is defined there: ``x - mean = 0``, so the output is ``bias`` and the gradients
    are 0 for ``x`` and ``weight``, 1 for ``bias``. Every other input goes to ``nn.GroupNorm``;
    same parameters and state_dict keys.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() >= 2 and x.shape[0] * (x.shape[1] // self.num_groups) * x[0, 0].numel() == 1:
            if not self.affine:
                return x * 0
            shape = (1, -1) + (1,) * (x.dim() - 2)
            return x * 0 * self.weight.view(shape) + self.bias.view(shape)
        return super().forward(x)


def get_norm(norm: str, channels: int, *, eps: float = 1e-5, momentum: float = 0.1, gn_groups: int = 32) -> nn.Module:
    """A normalisation layer by name.

    Args:
        norm: ``"BN"``, ``"FrozenBN"``, ``"SyncBN"`` (BatchNorm synchronised across processes),
            ``"GN"`` (GroupNorm with ``min(gn_groups, channels)`` groups dividing ``channels``),
            or ``""`` for none (identity).
        channels: number of channels.
    """
    if norm == "BN":
        return nn.BatchNorm2d(channels, eps=eps, momentum=momentum)
    if norm == "SyncBN":
        return nn.SyncBatchNorm(channels, eps=eps, momentum=momentum)
    if norm == "FrozenBN":
        return FrozenBatchNorm2d(channels, eps=eps)
    if norm == "GN":
        groups = min(gn_groups, channels)
        while channels % groups:
            groups -= 1
        return GroupNorm(groups, channels, eps=eps)
    if norm == "":
        return nn.Identity()
    raise ValueError(f"norm: unknown normalisation {norm!r}; expected one of {', '.join(map(repr, NORMS))}")


def convert_frozen_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d / SyncBatchNorm in ``module`` by a :class:`FrozenBatchNorm2d` with its values."""
    if isinstance(module, (nn.BatchNorm2d, nn.SyncBatchNorm)):
        frozen = FrozenBatchNorm2d(module.num_features, module.eps)
        if module.affine:
            frozen.weight.copy_(module.weight.detach())
            frozen.bias.copy_(module.bias.detach())
        if module.track_running_stats:
            frozen.running_mean.copy_(module.running_mean)
            frozen.running_var.copy_(module.running_var)
        return frozen
    for name, child in module.named_children():
        new = convert_frozen_batchnorm(child)
        if new is not child:
            setattr(module, name, new)
    return module


class Conv2dNormAct(nn.Sequential):
    """Conv2d (no bias when normalised) -> norm -> activation, 'same' padding for odd kernels.

    Args:
        norm: see :func:`get_norm`; ``""`` keeps the conv's bias.
        activation: a module factory (default ReLU), or None.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        norm: str = "BN",
        activation: Callable[[], nn.Module] | None = nn.ReLU,
    ) -> None:
        padding = dilation * (kernel_size - 1) // 2
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias=norm == "")
        ]
        if norm:
            layers.append(get_norm(norm, out_channels))
        if activation is not None:
            layers.append(activation())
        super().__init__(*layers)


class SeparableConv2d(nn.Sequential):
    """Depthwise k x k conv + norm + act, then pointwise 1x1 conv + norm + act (detectron2's
    ``DepthwiseSeparableConv2d``, both convs initialised with :func:`c2_msra_fill` as there).

    Args:
        in_channels, out_channels: channels in and out.
        kernel_size, dilation: of the depthwise conv ('same' padding).
        norm: see :func:`get_norm`; activation: a module factory or None.

    Shapes: Tensor[B, in_channels, H, W] -> Tensor[B, out_channels, H, W].
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 5,
        *,
        dilation: int = 1,
        norm: str = "BN",
        activation: Callable[[], nn.Module] | None = nn.ReLU,
    ) -> None:
        super().__init__(
            Conv2dNormAct(in_channels, in_channels, kernel_size, dilation=dilation, groups=in_channels,
                          norm=norm, activation=activation),
            Conv2dNormAct(in_channels, out_channels, 1, norm=norm, activation=activation),
        )  # fmt: skip
        c2_msra_fill(self)


def c2_xavier_fill(module: nn.Module) -> None:
    """Caffe2's XavierFill (``kaiming_uniform_(a=1)``, bias 0, as detectron2) on every plain conv of ``module``.

    Convs inside a :class:`SeparableConv2d` keep their MSRA fill, as detectron2's
    ``DepthwiseSeparableConv2d`` does wherever it is used.
    """
    stack = [module]
    while stack:
        m = stack.pop()
        if isinstance(m, SeparableConv2d):
            continue
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_uniform_(m.weight, a=1)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        stack.extend(m.children())


def c2_msra_fill(module: nn.Module) -> None:
    """Caffe2's MSRAFill on every conv of ``module``: ``kaiming_normal_(fan_out, relu)``, bias 0 (detectron2)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
