"""Panoptic FCN's configuration."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from panoptic_core.data import Categories
from panoptic_core.targets import PanopticFCNTargets

from .base import BackboneConfig, from_dict

__all__ = ["PanopticFCNConfig"]


def _detectron2_r50() -> BackboneConfig:
    # detectron2's ResNet defaults, which upstream keeps: frozen BN, stem and res2 frozen (FREEZE_AT 2).
    return BackboneConfig("resnet50", norm="FrozenBN", freeze_at=2)


@dataclass(frozen=True)
class PanopticFCNConfig:
    """Panoptic FCN (Li et al., CVPR 2021) as dvlab-research/PanopticFCN (``config.py``, R50-FPN 1x).

    Defaults are upstream's COCO model (``PanopticFCN-R50-1x``), whose values are also :meth:`coco`;
    :meth:`cityscapes` and :meth:`synthetic` change what differs.

    Attributes:
        backbone: see :class:`BackboneConfig` (R50, FrozenBN, freeze_at 2 as detectron2).
        fpn_in_features, fpn_channels, fpn_norm: the FPN (res2..res5 -> P2..P5, 256 channels, no
            norm) with P6 / P7 from P5 (``LastLevelP6P7(256, 256, "p5")``).
        in_features: the levels of the kernel generator (P3..P7); their strides (:attr:`strides`)
            are the target generator's.
        instance_scales: sqrt(box area) range of each level (inclusive, overlapping).
        test_scales: upstream's ``TEST_SCALES``, defined but unused upstream (kept for reference).
        min_overlap, sigma_factor: CenterNet radius IoU and sigma = (2r + 1) / sigma_factor.
        common_stride: stride of the feature encoder (4).
        with_thing: channel 0 of the stuff head is the union of all things.
        semantic_fpn_features, semantic_fpn_channels, semantic_fpn_norm: the Semantic FPN feeding
            the encoder (P2..P5, 256, GN).
        position_convs, position_channels, position_norm: position head tower (3 x 256, GN).
            Upstream's position head uses modulated deformable convs (Table 1: +0.7 PQ); not built.
        kernel_convs, kernel_channels, kernel_norm, kernel_coord: kernel head (3 x 256, GN, coord_w).
        encoder_convs, encoder_channels, encoder_norm, encoder_coord: feature encoder (3 x C_e = 64,
            no norm, coord_f).
        prior_bias: initial bias of the position logits (-2.19, prior 0.1).
        weighted_num: k guided positions per instance in the weighted dice (7).
        position_loss_weight, segment_loss_weight: 1 and 3.
        focal_alpha, focal_gamma: focal loss (0.25, 2).
        center_threshold: thing peak threshold (> 0.05); stuff_threshold: stuff score (> 0.05).
        top_num: candidates over all levels (each level keeps top_num // 2 peaks) and instances kept.
        center_pool_sizes: average-pool window smoothing each level's heatmap (3, 3, 3, 5, 5).
        similarity_threshold, class_specific: kernel fusion (cosine >= 0.9, same class only).
        mask_threshold: mask binarisation (0.4); score_threshold: rescored-score filter (>= 0.05).
        overlap_threshold, stuff_area, instance_threshold: the panoptic combine (0.5, 4096, 0.2).
        size_divisibility: pad batches to a multiple of this; 0 uses the backbone's (32).
        pixel_mean, pixel_std: the normalisation of the images (torchvision's; upstream uses
            MSRA weights with std 1).
    """

    backbone: BackboneConfig = field(default_factory=_detectron2_r50)
    fpn_in_features: tuple[str, ...] = ("res2", "res3", "res4", "res5")
    fpn_channels: int = 256
    fpn_norm: str = ""
    in_features: tuple[str, ...] = ("p3", "p4", "p5", "p6", "p7")
    instance_scales: tuple[tuple[float, float], ...] = ((1, 64), (32, 128), (64, 256), (128, 512), (256, 2048))
    test_scales: tuple[tuple[float, float], ...] = ((1, 64), (64, 128), (128, 256), (256, 512), (512, 2048))
    min_overlap: float = 0.7
    sigma_factor: float = 3.0
    common_stride: int = 4
    with_thing: bool = True
    semantic_fpn_features: tuple[str, ...] = ("p2", "p3", "p4", "p5")
    semantic_fpn_channels: int = 256
    semantic_fpn_norm: str = "GN"
    position_convs: int = 3
    position_channels: int = 256
    position_norm: str = "GN"
    kernel_convs: int = 3
    kernel_channels: int = 256
    kernel_norm: str = "GN"
    kernel_coord: bool = True
    encoder_convs: int = 3
    encoder_channels: int = 64
    encoder_norm: str = ""
    encoder_coord: bool = True
    prior_bias: float = -2.19
    weighted_num: int = 7
    position_loss_weight: float = 1.0
    segment_loss_weight: float = 3.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    center_threshold: float = 0.05
    stuff_threshold: float = 0.05
    top_num: int = 100
    center_pool_sizes: tuple[int, ...] = (3, 3, 3, 5, 5)
    similarity_threshold: float = 0.9
    class_specific: bool = True
    mask_threshold: float = 0.4
    score_threshold: float = 0.05
    overlap_threshold: float = 0.5
    stuff_area: int = 4096
    instance_threshold: float = 0.2
    size_divisibility: int = 0
    pixel_mean: tuple[float, ...] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, ...] = (58.395, 57.12, 57.375)

    method: ClassVar[str] = "panoptic_fcn"

    def __post_init__(self) -> None:
        n = len(self.in_features)
        for name in ("instance_scales", "center_pool_sizes"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name}: {len(getattr(self, name))} values for {n} in_features {self.in_features}")
        for name in self.in_features:
            if not (name.startswith("p") and name[1:].isdigit()):
                raise ValueError(f"in_features: {name!r} is not an FPN level name p<k>")
        if any(k % 2 == 0 or k < 1 for k in self.center_pool_sizes):
            raise ValueError(f"center_pool_sizes: windows must be odd and positive, got {self.center_pool_sizes}")
        if self.weighted_num < 1 or self.top_num < 2:
            raise ValueError(f"weighted_num must be >= 1 and top_num >= 2, got {self.weighted_num}, {self.top_num}")

    @property
    def strides(self) -> tuple[int, ...]:
        """Stride of each of ``in_features`` (``p<k>``: 2**k)."""
        return tuple(2 ** int(name[1:]) for name in self.in_features)

    @classmethod
    def coco(cls) -> PanopticFCNConfig:
        """Upstream's ``PanopticFCN-R50-1x`` on COCO (the defaults)."""
        return cls()

    @classmethod
    def cityscapes(cls) -> PanopticFCNConfig:
        """Cityscapes: upstream publishes no Cityscapes config; the COCO model with stuff area 2048
        (Panoptic-DeepLab's Cityscapes value, as 1024 x 2048 images have 2.5x COCO's pixels)."""
        return cls(stuff_area=2048)

    @classmethod
    def synthetic(cls) -> PanopticFCNConfig:
        """A small model for the synthetic dataset (128 x 160 images) that trains on a CPU in minutes,
        with the feature encoder and the masks at 1/2 (``common_stride=2``; upstream's 1/4 stays for
        COCO and Cityscapes): the synthetic objects start at 4 px, and a third of those under 61 px
        do not survive a 1/4 round trip (oracle PQ 84.7 at 1/4, 94.8 at 1/2 on synthetic val)."""
        return cls(
            backbone=BackboneConfig("resnet18"),
            common_stride=2,
            fpn_channels=64,
            semantic_fpn_channels=64,
            position_channels=64,
            kernel_channels=64,
            encoder_channels=32,
            stuff_area=64,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PanopticFCNConfig:
        return from_dict(cls, data)

    def target_generator(self, categories: Categories) -> PanopticFCNTargets:
        """The target generator with this config's strides, scales, Gaussian and stuff layout."""
        return PanopticFCNTargets(
            categories,
            strides=self.strides,
            instance_scales=self.instance_scales,
            min_overlap=self.min_overlap,
            sigma_factor=self.sigma_factor,
            common_stride=self.common_stride,
            with_thing=self.with_thing,
        )
