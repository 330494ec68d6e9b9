"""Feature Pyramid Network (Lin et al., CVPR 2017) as detectron2 builds it, with its top blocks.

The neck takes the backbone's named feature maps (``res2``..``res5``) and returns ``p2``..``p5``
(named by log2 of the stride), plus ``p6`` (and ``p7``) from a top block. It differs from
detectron2's ``FPN`` only in what it wraps: it is built from an ``output_shape()`` dict and called
on the backbone's output dict (it does not own the backbone), and the top-down path upsamples to
the lateral map's exact size, so inputs need not be multiples of :attr:`FPN.size_divisibility`
(for sizes that are, this equals detectron2's nearest 2x upsampling bit for bit).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.base import ShapeSpec
from ..layers import Conv2dNormAct, c2_xavier_fill
from ._features import check_log2_contiguous, require_features, select_features

__all__ = ["FPN", "LastLevelMaxPool", "LastLevelP6P7"]

FUSE_TYPES = ("sum", "avg")


class LastLevelMaxPool(nn.Module):
    """Original FPN's P6: ``max_pool2d(p5, kernel_size=1, stride=2)``, i.e. a stride-2 subsampling.

    Top-block protocol (shared with :class:`LastLevelP6P7`): ``num_levels`` maps, each of stride
    twice the one before, computed from the feature named ``in_feature`` (an FPN output such as
    ``"p5"``, or an input such as ``"res5"``).

    Shapes: Tensor[B, C, h, w] -> [Tensor[B, C, ceil(h / 2), ceil(w / 2)]].
    """

    num_levels = 1

    def __init__(self, in_feature: str = "p5") -> None:
        super().__init__()
        self.in_feature = in_feature

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Args: x (Tensor[B, C, h, w]). Returns: ``[p6]``, Tensor[B, C, ceil(h/2), ceil(w/2)]."""
        return [F.max_pool2d(x, kernel_size=1, stride=2, padding=0)]


class LastLevelP6P7(nn.Module):
    """RetinaNet / FCOS extra levels: ``p6 = conv3x3_s2(x)``, ``p7 = conv3x3_s2(relu(p6))``.

    Both convs have bias and no norm, initialised as detectron2 (:func:`c2_xavier_fill`).

    Args:
        in_channels: channels of the source map (2048 for ResNet-50 ``res5``; the FPN's
            ``out_channels`` for ``"p5"``).
        out_channels: channels of ``p6`` and ``p7`` (must equal the FPN's ``out_channels``).
        in_feature: ``"res5"`` (RetinaNet, C5) or ``"p5"`` (FCOS / AdelaiDet, P5).

    Shapes: Tensor[B, in_channels, h, w] -> [p6 Tensor[B, out_channels, ceil(h/2), ceil(w/2)],
    p7 Tensor[B, out_channels, ceil(h/4), ceil(w/4)]] (3x3 convs with padding 1).
    """

    num_levels = 2

    def __init__(self, in_channels: int, out_channels: int, in_feature: str = "res5") -> None:
        super().__init__()
        if in_channels <= 0 or out_channels <= 0:
            raise ValueError(
                f"LastLevelP6P7: in_channels and out_channels must be positive, got {in_channels}, {out_channels}"
            )
        self.in_feature = in_feature
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.p6 = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1)
        self.p7 = nn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1)
        c2_xavier_fill(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Args: x (Tensor[B, in_channels, h, w]). Returns: ``[p6, p7]`` (see the class docstring)."""
        p6 = self.p6(x)
        p7 = self.p7(F.relu(p6))
        return [p6, p7]


class FPN(nn.Module):
    """detectron2's Feature Pyramid Network as a neck over a backbone's feature dict.

    For the ``in_features`` (fine to coarse, log2-contiguous strides ``s_i``): a lateral 1x1 conv
    (+ norm) maps each ``C_i`` to ``out_channels``; from the coarsest level down, the running map is
    upsampled by nearest neighbour to the next lateral's exact size and added to it (``fuse_type``
    ``"avg"`` halves the sum); a 3x3 output conv (+ norm) on each running map gives
    ``P_i``, named ``"p<log2 s_i>"``. Convs have bias only when ``norm == ""``; no activation
    anywhere. The ``top_block`` (:class:`LastLevelMaxPool`, :class:`LastLevelP6P7`, or any module
    with ``num_levels``, ``in_feature`` and ``forward(x) -> list[Tensor]``) adds the next
    ``num_levels`` levels from its ``in_feature``: an input feature if ``input_shape`` has it,
    otherwise an FPN output (detectron2's lookup order).

    Weight init as detectron2: :func:`c2_xavier_fill` on every conv, norms at their defaults.

    Args:
        input_shape: ``{name: ShapeSpec}`` of the backbone (``Backbone.output_shape()``).
        in_features: names of the inputs, fine to coarse (``res2``..``res5``: strides 4..32).
        out_channels: channels of every output.
        norm: normalisation after each conv (``"BN"``, ``"FrozenBN"``, ``"SyncBN"``, ``"GN"``,
            or ``""`` for none), see :func:`panoptic_models.layers.get_norm`.
        top_block: optional extra-level module (see above), e.g. ``LastLevelMaxPool()`` for
            Mask R-CNN's P6 or ``LastLevelP6P7(C, C, "p5")`` for FCOS's P6/P7.
        fuse_type: ``"sum"`` or ``"avg"`` of the lateral and the upsampled coarser map.

    Shapes: ``forward({name: Tensor[B, C_name, h_s, w_s]})`` with ``h_s = ceil(H / s)`` for an
    ``H x W`` image (any sizes a conv net gives work; each upsampling step targets the finer
    lateral's size) -> ``{"p<k>": Tensor[B, out_channels, h_{2^k}, w_{2^k}]}`` for each input,
    then ``p<k+1>``.. from the top block at ``ceil(h / 2)`` per level. Outputs are ordered fine to
    coarse, as :meth:`output_shape`.

    Raises:
        ValueError: unknown ``in_features`` or ``fuse_type``, strides not log2-contiguous, bad
            ``out_channels`` or ``norm``, or a ``top_block`` whose ``in_feature`` is neither an
            input nor an output, or whose channels do not match.
    """

    def __init__(
        self,
        input_shape: Mapping[str, ShapeSpec],
        in_features: Sequence[str] = ("res2", "res3", "res4", "res5"),
        out_channels: int = 256,
        norm: str = "",
        top_block: nn.Module | None = None,
        fuse_type: str = "sum",
    ) -> None:
        super().__init__()
        specs = select_features(input_shape, in_features, "FPN")
        strides = [s.stride for s in specs]
        check_log2_contiguous(strides, "FPN")
        if out_channels <= 0:
            raise ValueError(f"FPN: out_channels must be positive, got {out_channels}")
        if fuse_type not in FUSE_TYPES:
            raise ValueError(f"FPN: unknown fuse_type {fuse_type!r}; expected one of {FUSE_TYPES}")

        self.in_features = tuple(in_features)
        self.out_channels = out_channels
        self.fuse_type = fuse_type
        # Fine to coarse, like in_features; forward walks them coarse to fine.
        self.lateral_convs = nn.ModuleList(
            Conv2dNormAct(s.channels, out_channels, 1, norm=norm, activation=None) for s in specs
        )
        self.output_convs = nn.ModuleList(
            Conv2dNormAct(out_channels, out_channels, 3, norm=norm, activation=None) for _ in specs
        )
        c2_xavier_fill(self.lateral_convs)
        c2_xavier_fill(self.output_convs)

        self._out_shapes: dict[str, ShapeSpec] = {f"p{int(math.log2(s))}": ShapeSpec(out_channels, s) for s in strides}
        self._fpn_names = tuple(self._out_shapes)
        self._size_divisibility = strides[-1]

        self.top_block = top_block
        self._top_from_input = False
        self._top_names: tuple[str, ...] = ()
        if top_block is not None:
            self._setup_top_block(top_block, input_shape, int(math.log2(strides[-1])))

    def _setup_top_block(self, top_block: nn.Module, input_shape: Mapping[str, ShapeSpec], last_stage: int) -> None:
        for attr in ("num_levels", "in_feature"):
            if not hasattr(top_block, attr):
                raise ValueError(f"FPN: top_block {type(top_block).__name__} has no attribute {attr!r}")
        num_levels = int(top_block.num_levels)
        if num_levels < 1:
            raise ValueError(f"FPN: top_block.num_levels must be >= 1, got {num_levels}")
        source = top_block.in_feature
        if source in input_shape:
            self._top_from_input = True
            source_channels = input_shape[source].channels
        elif source in self._out_shapes:
            source_channels = self.out_channels
        else:
            raise ValueError(
                f"FPN: top_block.in_feature {source!r} is neither in input_shape ({sorted(input_shape)}) "
                f"nor an FPN output ({list(self._out_shapes)})"
            )
        want_in = getattr(top_block, "in_channels", None)
        if want_in is not None and want_in != source_channels:
            raise ValueError(
                f"FPN: top_block.in_channels={want_in} but its in_feature {source!r} has {source_channels} channels"
            )
        want_out = getattr(top_block, "out_channels", None)
        if want_out is not None and want_out != self.out_channels:
            raise ValueError(f"FPN: top_block.out_channels={want_out} must equal out_channels={self.out_channels}")
        names = []
        for stage in range(last_stage + 1, last_stage + 1 + num_levels):
            name = f"p{stage}"
            self._out_shapes[name] = ShapeSpec(self.out_channels, 2**stage)
            names.append(name)
        self._top_names = tuple(names)

    @property
    def size_divisibility(self) -> int:
        """The largest input stride (32 for ``res2``..``res5``), as detectron2's FPN."""
        return self._size_divisibility

    @property
    def out_features(self) -> list[str]:
        """Output names, fine to coarse (``["p2", ..., "p6"]``)."""
        return list(self._out_shapes)

    def output_shape(self) -> dict[str, ShapeSpec]:
        """``{"p<k>": ShapeSpec(out_channels, 2**k)}`` for every output, fine to coarse."""
        return dict(self._out_shapes)

    def forward(self, features: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Build the pyramid.

        Args:
            features: ``{name: Tensor[B, C_name, h, w]}`` holding every name of ``in_features``
                (and the top block's ``in_feature`` when that is an input); others are ignored.

        Returns:
            ``{"p<k>": Tensor[B, out_channels, h_k, w_k]}``, fine to coarse; ``p<k>`` has the
            spatial size of its input level, top-block levels ``ceil`` half the one before.
        """
        needed = list(self.in_features)
        if self._top_from_input:
            needed.append(self.top_block.in_feature)
        require_features(features, needed, "FPN")

        n = len(self.in_features)
        prev = self.lateral_convs[n - 1](features[self.in_features[n - 1]])
        results = [self.output_convs[n - 1](prev)]  # coarse to fine, reversed below
        for i in range(n - 2, -1, -1):
            lateral = self.lateral_convs[i](features[self.in_features[i]])
            top_down = F.interpolate(prev, size=lateral.shape[-2:], mode="nearest")
            prev = lateral + top_down
            if self.fuse_type == "avg":
                prev = prev / 2
            results.append(self.output_convs[i](prev))
        out = dict(zip(self._fpn_names, reversed(results)))
        if self.top_block is not None:
            source = self.top_block.in_feature
            x = features[source] if self._top_from_input else out[source]
            extra = self.top_block(x)
            if len(extra) != len(self._top_names):
                raise ValueError(
                    f"FPN: top_block returned {len(extra)} maps, expected num_levels={len(self._top_names)}"
                )
            out.update(zip(self._top_names, extra))
        return out
