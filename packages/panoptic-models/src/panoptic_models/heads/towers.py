"""Head blocks shared by several methods: conv towers (FCOS, SOLOv2, Panoptic FCN), ``Scale`` and the FCOS head."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import Conv2dNormAct
from ..necks.coord_conv import add_coords

__all__ = ["ConvTower", "FCOSHead", "Scale"]


def normal_init_(module: nn.Module, std: float = 0.01) -> None:
    """Every conv of ``module``: weight ~ N(0, std), bias 0 (FCOS / SOLOv2 / Panoptic FCN heads)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, mean=0.0, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class ConvTower(nn.Module):
    """A stack of ``num_convs`` 3x3 ``Conv2dNormAct`` (conv, norm, ReLU), optionally on ``add_coords(x)``.

    The towers of FCOS (4 convs, GN), SOLOv2 (kernel and category branches, GN) and Panoptic FCN
    (position / kernel heads and feature encoder, 3 convs; ``coord=True`` for its kernel head and
    encoder). Convs have no bias when normalised (``Conv2dNormAct``); AdelaiDet's FCOS tower keeps a
    bias before its GroupNorm, so its checkpoints carry bias entries this tower does not have.

    Args:
        in_channels: channels of the input.
        channels: channels of every conv.
        num_convs: number of convs (0: identity, apart from the coordinates).
        norm: see :func:`panoptic_models.layers.get_norm` (``"GN"``: ``GroupNorm(32, channels)``).
        coord: concatenate the two coordinate channels of
            :func:`panoptic_models.necks.add_coords` (x then y, SOLOv2's order) to the input.
        activation: factory of the activation after each norm (ReLU), or None.
        init_std: std of the normal init of the conv weights (0.01 as FCOS / SOLOv2); None keeps
            PyTorch's default init.

    Shapes: Tensor[B, in_channels, H, W] -> Tensor[B, out_channels, H, W] with
    ``out_channels = channels`` (or ``in_channels (+ 2 with coord)`` when ``num_convs == 0``).
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        num_convs: int,
        norm: str = "GN",
        coord: bool = False,
        activation: Callable[[], nn.Module] | None = nn.ReLU,
        init_std: float | None = 0.01,
    ) -> None:
        super().__init__()
        if num_convs < 0:
            raise ValueError(f"ConvTower: num_convs must be >= 0, got {num_convs}")
        if in_channels <= 0 or channels <= 0:
            raise ValueError(f"ConvTower: in_channels and channels must be positive, got {in_channels}, {channels}")
        self.coord = coord
        first_in = in_channels + (2 if coord else 0)
        self.convs = nn.Sequential(
            *(
                Conv2dNormAct(first_in if k == 0 else channels, channels, 3, norm=norm, activation=activation)
                for k in range(num_convs)
            )
        )
        self.out_channels = channels if num_convs else first_in
        if init_std is not None:
            normal_init_(self.convs, init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x (Tensor[B, in_channels, H, W]). Returns: Tensor[B, out_channels, H, W]."""
        if self.coord:
            x = add_coords(x)
        return self.convs(x)


class Scale(nn.Module):
    """A learnable scalar multiplier (FCOS's per-level regression scale).

    The parameter has shape [1], as AdelaiDet's ``Scale`` (so its checkpoints load).

    Shapes: any Tensor -> the same shape.
    """

    def __init__(self, init_value: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([float(init_value)]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Returns ``x * scale``."""
        return x * self.scale


class FCOSHead(nn.Module):
    """FCOS head (Tian et al., ICCV 2019) as AdelaiDet's ``FCOSHead``, shared across levels.

    A classification tower and a box tower (``num_convs`` 3x3 conv + norm + ReLU each, shared by all
    levels), then 3x3 convs to ``num_classes`` logits, 4 ``(l, t, r, b)`` distances and 1 centerness
    logit, with one :class:`Scale` per level on the distances. Init as AdelaiDet: every conv
    N(0, 0.01) with bias 0, then the logits' bias ``-log((1 - prior_prob) / prior_prob)``.

    Regression output (the original FCOS repository's ``FCOSHead``, whose options these are):

    - ``norm_reg_targets=True`` (FCOS "improvements", AdelaiDet's only mode):
      ``relu(scale_l(conv(x)))``; in training these are distances divided by the level's stride
      (the targets are normalised the same way); in eval the head multiplies them by ``strides[l]``,
      giving pixels. AdelaiDet's head returns the normalised value in both modes and multiplies by
      the stride in its post-processing; the training outputs are identical and the eval outputs
      equal AdelaiDet's post-processed distances.
    - ``norm_reg_targets=False`` (original FCOS): ``exp(scale_l(conv(x)))`` in pixels, both modes.

    Centerness is predicted from the box tower when ``centerness_on_reg`` (AdelaiDet's only mode),
    else from the classification tower.

    With ``embedding_dim > 0`` a fourth 3x3 conv on the box tower predicts ``embedding_dim``
    box embeddings per location (CIAE's proposal head, Sec. IV-A: "center-ness, box regression,
    and embeddings are predicted from the regression branch"), initialised like the other
    predictors (N(0, 0.01), bias 0) and returned as ``"box_embedding"``.

    With ``norm="BN"`` / ``"SyncBN"`` the towers' norms are shared by all levels (AdelaiDet keeps
    one BatchNorm per level); GN (the default) has no statistics, so it is the same either way.
    Tower convs have no bias under a norm (see :class:`ConvTower`).

    Args:
        in_channels: channels of every input level (256 for an FPN).
        num_classes: number of foreground classes (sigmoid logits).
        num_convs: convs per tower (4).
        norm: tower normalisation (``"GN"``).
        prior_prob: initial foreground probability of the logits (0.01).
        centerness_on_reg: centerness from the box tower (True) or the classification tower.
        norm_reg_targets: see above.
        strides: stride of each level, fine to coarse (P3..P7: 8, 16, 32, 64, 128); sets the number
            of levels and of :class:`Scale` modules.
        embedding_dim: channels of the box-embedding output (0: none).

    Shapes: ``forward([Tensor[B, in_channels, h_l, w_l] for each level])`` -> ``{"cls_logits":
    [Tensor[B, num_classes, h_l, w_l]], "box_reg": [Tensor[B, 4, h_l, w_l]], "centerness":
    [Tensor[B, 1, h_l, w_l]]}`` (lists in level order), plus ``"box_embedding":
    [Tensor[B, embedding_dim, h_l, w_l]]`` when ``embedding_dim > 0``.

    Raises:
        ValueError: bad ``num_classes``, ``prior_prob`` outside (0, 1), empty or non-positive
            ``strides``; in ``forward``, a number of levels other than ``len(strides)``.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        num_convs: int = 4,
        norm: str = "GN",
        prior_prob: float = 0.01,
        centerness_on_reg: bool = True,
        norm_reg_targets: bool = True,
        strides: Sequence[int] = (8, 16, 32, 64, 128),
        embedding_dim: int = 0,
    ) -> None:
        super().__init__()
        if embedding_dim < 0:
            raise ValueError(f"FCOSHead: embedding_dim must be >= 0, got {embedding_dim}")
        if num_classes <= 0:
            raise ValueError(f"FCOSHead: num_classes must be positive, got {num_classes}")
        if not 0.0 < prior_prob < 1.0:
            raise ValueError(f"FCOSHead: prior_prob must be in (0, 1), got {prior_prob}")
        strides = tuple(int(s) for s in strides)
        if not strides or any(s <= 0 for s in strides):
            raise ValueError(f"FCOSHead: strides must be a non-empty sequence of positive ints, got {strides}")
        self.num_classes = num_classes
        self.strides = strides
        self.centerness_on_reg = centerness_on_reg
        self.norm_reg_targets = norm_reg_targets

        self.cls_tower = ConvTower(in_channels, in_channels, num_convs, norm=norm)
        self.bbox_tower = ConvTower(in_channels, in_channels, num_convs, norm=norm)
        self.cls_logits = nn.Conv2d(in_channels, num_classes, 3, padding=1)
        self.bbox_pred = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.centerness = nn.Conv2d(in_channels, 1, 3, padding=1)
        self.scales = nn.ModuleList(Scale(1.0) for _ in strides)
        self.box_embedding = nn.Conv2d(in_channels, embedding_dim, 3, padding=1) if embedding_dim else None
        predictors = (self.cls_logits, self.bbox_pred, self.centerness, self.box_embedding)
        for m in (self.cls_tower, self.bbox_tower, *predictors):
            if m is not None:
                normal_init_(m, 0.01)
        self.prior_bias = -math.log((1 - prior_prob) / prior_prob)
        nn.init.constant_(self.cls_logits.bias, self.prior_bias)

    def forward(self, features: Sequence[torch.Tensor]) -> dict[str, list[torch.Tensor]]:
        """Predict on every level.

        Args:
            features: one Tensor[B, in_channels, h_l, w_l] per level, in the order of ``strides``.

        Returns:
            ``{"cls_logits": [...], "box_reg": [...], "centerness": [...]}``, one entry per level
            (see the class docstring for the ``box_reg`` units in training and eval).
        """
        if len(features) != len(self.strides):
            raise ValueError(
                f"FCOSHead: features has {len(features)} levels, expected {len(self.strides)} "
                f"(one per stride {self.strides})"
            )
        cls_logits, box_reg, centerness, box_embedding = [], [], [], []
        for level, x in enumerate(features):
            cls_feat = self.cls_tower(x)
            box_feat = self.bbox_tower(x)
            cls_logits.append(self.cls_logits(cls_feat))
            centerness.append(self.centerness(box_feat if self.centerness_on_reg else cls_feat))
            reg = self.scales[level](self.bbox_pred(box_feat))
            if self.norm_reg_targets:
                reg = F.relu(reg)
                if not self.training:
                    reg = reg * self.strides[level]
            else:
                reg = torch.exp(reg)
            box_reg.append(reg)
            if self.box_embedding is not None:
                box_embedding.append(self.box_embedding(box_feat))
        out = {"cls_logits": cls_logits, "box_reg": box_reg, "centerness": centerness}
        if self.box_embedding is not None:
            out["box_embedding"] = box_embedding
        return out
