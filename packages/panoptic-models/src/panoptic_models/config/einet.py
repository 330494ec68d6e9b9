"""EINet's configuration."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from panoptic_core.data import Categories
from panoptic_core.targets import EINetTargets

from .base import BackboneConfig, from_dict

__all__ = ["EINetConfig"]


def _resnet50_os16() -> BackboneConfig:
    # The README's ResNet-50; output stride 16 (features at 1/4, 1/8, 1/16, 1/16 as the encoder figure draws).
    return BackboneConfig("resnet50", options={"res5_dilation": 2})


@dataclass(frozen=True)
class EINetConfig:
    """EINet (embedding-interaction panoptic segmentation), read from its README and figures.

    No paper text or code is public; the defaults are the figures' numbers where they give one
    (ASPP rates 6/12/18, 256-channel decoders, 64 / 32 projections, the 256 -> 128 instance
    path, the 32-channel heatmap tower) and our choices elsewhere, listed in panoptic-models'
    README ("EINet as implemented"). :meth:`cityscapes`, :meth:`coco` and :meth:`synthetic`
    give the presets.

    Attributes:
        backbone: see :class:`BackboneConfig` (ResNet-50, output stride 16).
        in_features: backbone features of both decoders, fine to coarse; the coarsest feeds the
            semantic decoder's ASPP and the instance decoder's 1x1 conv.
        project_channels: semantic decoder's 1x1 projections of the 1/4 and 1/8 features (32, 64).
        aspp_channels, aspp_dilations, aspp_dropout, aspp_pool_kernel_size: the semantic ASPP.
        semantic_decoder_channels: width of the semantic decoder (256).
        instance_project_channels: width of the instance decoder's 1/16 and 1/8 paths (256).
        instance_decoder_channels: width of each of the two concatenated 1/4 branches (128).
        norm: normalisation of the decoders and heads.
        depthwise_separable: the decoders' 5x5 convs (and ASPP's atrous convs) depthwise separable,
            as Panoptic-DeepLab's.
        embedding_dim: D of both embeddings, E, V and the dictionary Q.
        heatmap_head_channels: the heatmap tower's width (32).
        common_stride: the decoders' output stride (4); the stride of the heatmap and segment targets.
        interaction: the embedding interaction (attention, ESM, dictionary Q, re-calibration,
            R_ins); False gives plain semantic and instance embeddings (the README's A.4 ablation).
        dictionary_momentum: m of the dictionary's moving average.
        recalibration_temperature: tau of the re-calibration's softmax over the dictionary.
        triplet_margin: margin of R_ins.
        grouping_temperature: tau of the grouping loss.
        ignore_label: semantic label of VOID pixels.
        semantic_loss_top_k: fraction of hardest pixels in the bootstrapped CE (0.2; COCO 1.0).
        semantic_loss_weight, heatmap_loss_weight, triplet_loss_weight, centroid_loss_weight,
            grouping_loss_weight: weights of L_sem, L_hm, R_ins, L_cen and the grouping loss.
        small_instance_area, small_instance_weight, ignore_crowd_in_semantic, min_overlap:
            target generation (see ``EINetTargets``).
        size_divisibility: pad every batch to a multiple of this; 0 uses the backbone's.
        stuff_area: stuff segments smaller than this (output pixels) become VOID.
        center_threshold, nms_kernel, top_k: heatmap peaks (values strictly above the threshold,
            max-pool NMS window in heatmap pixels, at most top_k over all classes; CenterNet's 3 and 100).
        pixel_mean, pixel_std: the normalisation the images were given.
    """

    backbone: BackboneConfig = field(default_factory=_resnet50_os16)
    in_features: tuple[str, ...] = ("res2", "res3", "res5")
    project_channels: tuple[int, ...] = (32, 64)
    aspp_channels: int = 256
    aspp_dilations: tuple[int, ...] = (6, 12, 18)
    aspp_dropout: float = 0.1
    aspp_pool_kernel_size: tuple[int, int] | None = None
    semantic_decoder_channels: int = 256
    instance_project_channels: int = 256
    instance_decoder_channels: int = 128
    norm: str = "BN"
    depthwise_separable: bool = True
    embedding_dim: int = 64
    heatmap_head_channels: int = 32
    common_stride: int = 4
    interaction: bool = True
    dictionary_momentum: float = 0.1
    recalibration_temperature: float = 0.1
    triplet_margin: float = 0.3
    grouping_temperature: float = 0.1
    ignore_label: int = 255
    semantic_loss_top_k: float = 0.2
    semantic_loss_weight: float = 1.0
    heatmap_loss_weight: float = 1.0
    triplet_loss_weight: float = 1.0
    centroid_loss_weight: float = 1.0
    grouping_loss_weight: float = 1.0
    small_instance_area: int = 4096
    small_instance_weight: float = 3.0
    ignore_crowd_in_semantic: bool = False
    min_overlap: float = 0.7
    size_divisibility: int = 0
    stuff_area: int = 2048
    center_threshold: float = 0.1
    nms_kernel: int = 3
    top_k: int | None = 100
    pixel_mean: tuple[float, ...] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, ...] = (58.395, 57.12, 57.375)

    method: ClassVar[str] = "einet"

    def __post_init__(self) -> None:
        if not 0 < self.dictionary_momentum <= 1:
            raise ValueError(f"dictionary_momentum: must be in (0, 1], got {self.dictionary_momentum}")
        for name in ("recalibration_temperature", "grouping_temperature"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be positive, got {getattr(self, name)}")
        if self.embedding_dim < 1:
            raise ValueError(f"embedding_dim: must be positive, got {self.embedding_dim}")
        if self.center_threshold < 0:
            raise ValueError(f"center_threshold: must be >= 0, got {self.center_threshold}")
        if self.nms_kernel < 1 or self.nms_kernel % 2 == 0:
            raise ValueError(f"nms_kernel: must be a positive odd number, got {self.nms_kernel}")

    @classmethod
    def cityscapes(cls) -> EINetConfig:
        """Cityscapes (crops of 512 x 1024: image pooling over 32 x 64 feature pixels, as Panoptic-DeepLab)."""
        return cls(aspp_pool_kernel_size=(32, 64))

    @classmethod
    def coco(cls) -> EINetConfig:
        """COCO (as Panoptic-DeepLab's recipe): CE over all pixels, stuff area 4096, 640 x 640 crops
        padded to 640."""
        return cls(semantic_loss_top_k=1.0, stuff_area=4096, aspp_pool_kernel_size=(40, 40), size_divisibility=640)

    @classmethod
    def synthetic(cls) -> EINetConfig:
        """A small model for the synthetic dataset (128 x 160 images) that trains on a CPU in minutes."""
        return cls(
            backbone=BackboneConfig("resnet18", options={"res5_dilation": 2}),
            project_channels=(16, 16),
            aspp_channels=32,
            semantic_decoder_channels=32,
            instance_project_channels=32,
            instance_decoder_channels=16,
            embedding_dim=16,
            heatmap_head_channels=16,
            aspp_dropout=0.0,
            small_instance_area=256,
            stuff_area=64,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EINetConfig:
        return from_dict(cls, data)

    def target_generator(self, categories: Categories) -> EINetTargets:
        """The target generator with this config's values (maps at ``common_stride``)."""
        if categories is None:
            raise ValueError("EINetConfig.target_generator: categories are required (class-wise heatmaps)")
        return EINetTargets(
            categories,
            stride=self.common_stride,
            min_overlap=self.min_overlap,
            ignore_label=self.ignore_label,
            small_instance_area=self.small_instance_area,
            small_instance_weight=self.small_instance_weight,
            ignore_crowd_in_semantic=self.ignore_crowd_in_semantic,
        )
