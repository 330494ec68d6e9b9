"""CIAE's configuration."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from panoptic_core.data import Categories
from panoptic_core.targets import CIAETargets

from .base import BackboneConfig, from_dict

__all__ = ["CIAEConfig"]

INF = math.inf


def _r50_frozen() -> BackboneConfig:
    # RetinaNet / FCOS recipe (the paper uses "the same hyper-parameters with RetinaNet"): ImageNet
    # weights with frozen BN and the stem + res2 frozen (detectron2's FREEZE_AT=2).
    return BackboneConfig("resnet50", norm="FrozenBN", freeze_at=2)


@dataclass(frozen=True)
class CIAEConfig:
    """CIAE (Gao et al., "Learning Category- and Instance-Aware Pixel Embedding for Fast Panoptic
    Segmentation", IEEE TIP 2021): R50-FPN, an FCOS proposal head on P3-P7 with box embeddings, a
    Panoptic-FPN style embedding branch on P2-P5, the CIAE loss and box-filtered pixel assignment.

    Defaults are the paper's (Sec. IV-V): 32-d embeddings, margin 0.15, K = 5, alpha = 2, thing
    pixels weighted 5, boxes expanded 1.5x, merged thing category, memory momentum of eq. 13 over
    ``total_steps`` iterations, stuff regions under 4096 px removed. FCOS values are AdelaiDet's
    (pre-NMS threshold 0.05, 1000 candidates per level, NMS 0.6, 100 detections).
    :meth:`coco`, :meth:`cityscapes` and :meth:`synthetic` give the presets.

    Attributes:
        backbone: see :class:`BackboneConfig` (ResNet-50, frozen BN, stem and res2 frozen).
        fpn_channels: FPN width (256); fpn_norm: FPN normalisation ("" as detectron2 / FCOS).
        strides, size_ranges: FCOS levels P3-P7 and their regression ranges (max of l, t, r, b).
        head_convs, head_norm, prior_prob: FCOS towers (4 convs, GN) and logit prior (0.01).
        focal_alpha, focal_gamma: sigmoid focal loss (0.25, 2).
        iou_loss_type: "iou" (-log IoU, UnitBox, the paper's [48]), "linear_iou" or "giou".
        embedding_dim: D of the pixel embeddings (32).
        embedding_channels, embedding_norm, coord_conv: the P2-P5 aggregation (Panoptic FPN's
            128 channels, GN, CoordConv on P5's first conv).
        box_embedding: fuse the up-sampled box embeddings into the map (P = P' + P''; Table III).
        embedding_stride: stride of the map the CIAE loss is computed on (4: the predicted map
            before its 4x up-sampling; see the README).
        margin, top_k, alpha, thing_weight: CIAE loss (eq. 7-12): 0.15, 5, 2, 5.
        box_expand: training box filter scale (1.5, Table VI).
        merge_things: one category for all thing classes in the CAE part (Table II's default).
        total_steps: T of eq. 13, the number of training iterations (``examples/train.py`` sets it
            to ``solver.max_iter`` unless given).
        pre_nms_threshold, pre_nms_top_n, nms_threshold, max_detections: FCOS inference.
        instance_score_threshold: proposals below this score (sqrt(cls * centerness)) do not
            become queries (0.5, detectron2's Panoptic FPN combination threshold
            ``instances_confidence_threshold``; the paper leaves it open).
        stuff_area: stuff segments with fewer pixels are removed (4096), counted on the image resized
            to a shorter side of ``stuff_area_short_edge`` (800, the paper's test scale), so the rule
            removes the same fraction of an image at any resolution; 0 counts at the network input size.
        size_divisibility: pad batches to a multiple of this; 0 uses the backbone's (32).
        pixel_mean, pixel_std: the normalisation the images were given.
    """

    backbone: BackboneConfig = field(default_factory=_r50_frozen)
    fpn_channels: int = 256
    fpn_norm: str = ""
    strides: tuple[int, ...] = (8, 16, 32, 64, 128)
    size_ranges: tuple[tuple[float, float], ...] = ((-1.0, 64.0), (64.0, 128.0), (128.0, 256.0), (256.0, 512.0),
                                                    (512.0, INF))  # fmt: skip
    head_convs: int = 4
    head_norm: str = "GN"
    prior_prob: float = 0.01
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    iou_loss_type: str = "iou"
    embedding_dim: int = 32
    embedding_channels: int = 128
    embedding_norm: str = "GN"
    coord_conv: bool = True
    box_embedding: bool = True
    embedding_stride: int = 4
    margin: float = 0.15
    top_k: int = 5
    alpha: float = 2.0
    thing_weight: float = 5.0
    box_expand: float = 1.5
    merge_things: bool = True
    total_steps: int = 90000
    pre_nms_threshold: float = 0.05
    pre_nms_top_n: int = 1000
    nms_threshold: float = 0.6
    max_detections: int = 100
    instance_score_threshold: float = 0.5
    stuff_area: int = 4096
    stuff_area_short_edge: int = 800
    size_divisibility: int = 0
    pixel_mean: tuple[float, ...] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, ...] = (58.395, 57.12, 57.375)

    method: ClassVar[str] = "ciae"

    def __post_init__(self) -> None:
        if len(self.strides) != len(self.size_ranges):
            raise ValueError(f"CIAEConfig: {len(self.strides)} strides but {len(self.size_ranges)} size_ranges")
        if self.embedding_dim <= 0:
            raise ValueError(f"CIAEConfig: embedding_dim must be positive, got {self.embedding_dim}")
        if self.embedding_stride not in (1, 2, 4):
            raise ValueError(f"CIAEConfig: embedding_stride must be 1, 2 or 4, got {self.embedding_stride}")
        if self.total_steps <= 0:
            raise ValueError(f"CIAEConfig: total_steps must be positive, got {self.total_steps}")
        if self.iou_loss_type not in ("iou", "linear_iou", "giou"):
            raise ValueError(f"CIAEConfig: iou_loss_type must be iou, linear_iou or giou, got {self.iou_loss_type!r}")

    @classmethod
    def coco(cls) -> CIAEConfig:
        """The paper's COCO model (Table IX, ResNet-50-FPN, 180k iterations with 640-800 jitter)."""
        return cls(total_steps=180000)

    @classmethod
    def cityscapes(cls) -> CIAEConfig:
        """Cityscapes (not in the paper): the COCO model; stuff area 2048 at 1024 x 2048, as
        Panoptic-DeepLab's Cityscapes recipe, and a 90k schedule."""
        return cls(stuff_area=2048, total_steps=90000)

    @classmethod
    def synthetic(cls) -> CIAEConfig:
        """A small model for the synthetic dataset (128 x 160 images) that trains on a CPU in minutes:
        ResNet-18 with BN from scratch, 32-channel FPN and towers of one conv, 16-d embeddings, and the
        CIAE loss on the full-resolution P (``embedding_stride=1``: affordable at this size, and the
        objects of a few pixels need it, see the README)."""
        return cls(
            backbone=BackboneConfig("resnet18"),
            fpn_channels=32,
            head_convs=1,
            embedding_dim=16,
            embedding_channels=32,
            embedding_stride=1,
            total_steps=600,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CIAEConfig:
        return from_dict(cls, data)

    def target_generator(self, categories: Categories) -> CIAETargets:
        """The target generator with this config's strides, ranges, embedding stride, box expansion."""
        if categories is None:
            raise ValueError("CIAEConfig.target_generator: categories are required (thing and stuff indices)")
        return CIAETargets(
            categories,
            strides=self.strides,
            size_ranges=self.size_ranges,
            embedding_stride=self.embedding_stride,
            box_expand=self.box_expand,
            merge_things=self.merge_things,
        )
